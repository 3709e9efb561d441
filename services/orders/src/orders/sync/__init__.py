"""Offline batch sync: orders a till took while it had no network."""
