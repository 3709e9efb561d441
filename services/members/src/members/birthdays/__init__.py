"""Birthday benefits: a points multiplier in the birthday month, and the periodic sweep that
issues birthday coupons and re-evaluates levels and rule-based tags."""
