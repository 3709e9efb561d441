"""Countertop orders service."""
