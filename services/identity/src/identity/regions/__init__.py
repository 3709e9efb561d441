"""Regions: groups of stores that a regional manager looks after."""
