"""Orders: placement, the state machine, tenders, refunds and kitchen tickets."""
