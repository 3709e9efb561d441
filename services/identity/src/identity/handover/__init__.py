"""Super admin handover within one legal entity."""
