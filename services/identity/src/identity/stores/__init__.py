"""Stores: where selling happens; each belongs to one merchant."""
