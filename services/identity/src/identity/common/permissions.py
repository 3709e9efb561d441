"""Roles, permission scopes and the rules for granting them.

A role fixes how far a staff member reaches (the whole merchant, some regions, one store);
scopes name what they may do there. Each role has a default set of scopes and a ceiling: a
staff member never holds a scope above their role's ceiling, and nobody grants a role or a
scope above their own.
"""

from __future__ import annotations

from typing import Final

from contracts.permissions import ALL_SCOPES, SCOPES
from servicekit.auth import Role

__all__ = ["ALL_SCOPES", "ROLE_DEFAULT_SCOPES", "ROLE_MAX_SCOPES", "SCOPES"]


ROLE_RANK: Final[dict[Role, int]] = {
    Role.CASHIER: 1,
    Role.STORE_MANAGER: 2,
    Role.REGIONAL_MANAGER: 3,
    Role.HQ_ADMIN: 4,
}

_STORE_MANAGER_DEFAULT = frozenset(
    {
        "orders:write",
        "orders:discount",
        "promotions:write",
        "refunds:approve",
        "inventory:adjust",
        "members:register",
        "members:write",
        "coupons:manage",
        "stored_value:recharge",
        "staff:manage",
        "reports:read",
        "devices:manage",
        "devices:operate",
    }
)

#: Member data is the merchant's, not a store's: bulk import and export of it (every member's
#: phone) is HQ's by default, and a regional manager may be given it.
_MEMBER_BULK = frozenset({"members:import", "members:export"})

ROLE_DEFAULT_SCOPES: Final[dict[Role, frozenset[str]]] = {
    Role.HQ_ADMIN: ALL_SCOPES,
    Role.REGIONAL_MANAGER: _STORE_MANAGER_DEFAULT | {"stores:manage"},
    Role.STORE_MANAGER: _STORE_MANAGER_DEFAULT,
    # A cashier reprints a ticket, bumps the kitchen display, signs a customer up as a member
    # and takes a member's recharge at the till like any other payment, without asking anyone;
    # registering does not show them every member's full phone, which members:write would.
    Role.CASHIER: frozenset(
        {"orders:write", "devices:operate", "members:register", "stored_value:recharge"}
    ),
}

ROLE_MAX_SCOPES: Final[dict[Role, frozenset[str]]] = {
    Role.HQ_ADMIN: ALL_SCOPES,
    Role.REGIONAL_MANAGER: _STORE_MANAGER_DEFAULT
    | _MEMBER_BULK
    | {"stores:manage", "catalog:manage"},
    Role.STORE_MANAGER: _STORE_MANAGER_DEFAULT | {"catalog:manage"},
    # members:write stays within reach for a cashier a merchant trusts with member accounts.
    Role.CASHIER: frozenset(
        {
            "orders:write",
            "orders:discount",
            "refunds:approve",
            "members:register",
            "members:write",
            "devices:operate",
            "stored_value:recharge",
        }
    ),
}


def can_assign_role(granter: Role, role: Role) -> bool:
    """Roles strictly below one's own; an HQ admin may also appoint HQ admins."""
    if granter is Role.HQ_ADMIN:
        return True
    return ROLE_RANK[role] < ROLE_RANK[granter]


def can_manage(manager: Role, target: Role) -> bool:
    """Whether ``manager`` may change an account holding ``target``: only lower roles, except
    that HQ admins manage each other (super admins are further protected by the caller)."""
    if manager is Role.HQ_ADMIN:
        return True
    return ROLE_RANK[target] < ROLE_RANK[manager]
