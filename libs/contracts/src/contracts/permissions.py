"""Permission scopes: the one list identity grants from and every service requires from.

A token carries its holder's scopes (``scp``); an endpoint names the scope it needs with
``servicekit.auth.require(...)``. ``tests/contract`` checks that every scope a service requires
is listed here, so a typo cannot lock everyone out of an endpoint.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Final

SCOPES: Final[Mapping[str, str]] = MappingProxyType(
    {
        "orders:write": "Take orders and payments at the till.",
        "orders:discount": "Apply manual discounts and price overrides.",
        "promotions:write": "Create and change promotions for the stores within one's scope.",
        "refunds:approve": "Approve refunds and voids.",
        "inventory:adjust": "Receive stock, count and adjust inventory.",
        "catalog:manage": "Edit products, prices and categories.",
        "members:register": "Register new members at the till.",
        "members:write": "Register members, change their accounts and see their full phones.",
        "members:import": "Import members in bulk and run the batch verification of member data.",
        "members:export": "Export the member list with phones, points, levels and tags.",
        "coupons:manage": "Define coupon templates within one's stores; issue and void coupons.",
        "stored_value:recharge": "Take stored-value recharges from members at the till.",
        "staff:manage": "Create and manage staff within one's own scope.",
        "stores:manage": "Open and change stores within one's own scope.",
        "reports:read": "Read sales and operating reports.",
        "settings:manage": "Change merchant-wide settings, regions and the merchant profile.",
        "audit:read": "Read the security audit log.",
        "devices:manage": "Bind, unbind and rebind devices (terminals, printers, displays).",
        "devices:operate": "Reprint, send commands to devices and bump kitchen display tickets.",
    }
)

ALL_SCOPES: Final[frozenset[str]] = frozenset(SCOPES)
