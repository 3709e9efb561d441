"""Daily figures of the payments ledger and the filters of the payment list."""
