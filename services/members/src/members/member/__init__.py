"""Members of a merchant: registration, profile, lookup at the till."""
