"""Payments of orders: taking them, provider notifications, reconciliation and refunds."""
