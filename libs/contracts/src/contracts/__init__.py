"""Countertop event and command schemas, topic registry and shared value types."""
