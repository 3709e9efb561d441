"""Countertop inventory service."""
