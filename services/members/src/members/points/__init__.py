"""Loyalty points: the earning rule, the ledger, awards on paid orders and reversals on refunds."""
