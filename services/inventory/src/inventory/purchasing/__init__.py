"""Suppliers, purchase orders and receiving goods against them."""
