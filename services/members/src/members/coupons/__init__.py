"""Coupons: templates, issuing to members, and each coupon's state as orders redeems it."""
