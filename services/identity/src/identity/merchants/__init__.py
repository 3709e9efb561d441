"""Merchants: the legal entities that own stores and staff."""
