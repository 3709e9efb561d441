"""Stored value in payments: recharges that are not sales, and ``stored_value`` as a tender
members carries out."""
