"""Payments and refunds a till took while offline, announced by orders after its sync."""
