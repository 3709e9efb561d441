"""The embedded local stack behind ``make up``."""
