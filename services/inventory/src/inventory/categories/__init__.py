"""The merchant's category tree."""
