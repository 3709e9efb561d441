"""Merchant settlement: fee rates and the merchant's own settlement account."""
