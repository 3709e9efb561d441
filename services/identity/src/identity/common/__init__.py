"""Building blocks shared by identity's domains: validation, passwords, permissions."""
