"""Countertop device-gateway service."""
