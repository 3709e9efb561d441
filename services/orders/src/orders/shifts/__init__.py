"""Cashier shifts: a till's drawer from its opening float to its counted close."""
