"""Staff accounts: who works for a merchant, with which role, where."""
