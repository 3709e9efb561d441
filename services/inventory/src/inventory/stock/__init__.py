"""The stock ledger of every store: movements, balances, counts and low-stock alerts."""
