"""Countertop payments service."""
