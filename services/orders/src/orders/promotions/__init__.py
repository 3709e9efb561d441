"""Promotions and the pricing engine."""
