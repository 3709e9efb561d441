"""Countertop members service."""
