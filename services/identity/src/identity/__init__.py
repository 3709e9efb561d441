"""Countertop identity service."""
