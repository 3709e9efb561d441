"""Transfers of goods between a merchant's stores, and stock across stores."""
