"""Roles and the permissions behind them.

The `role_permissions` table is the source of truth at run time (seeded by migrations);
this module names the permissions so code refers to them without typos. Each role includes
everything the role below it may do: customer < cashier < operator < admin.
"""

from __future__ import annotations

from enum import StrEnum


class Role(StrEnum):
    CUSTOMER = "customer"
    CASHIER = "cashier"
    OPERATOR = "operator"
    ADMIN = "admin"


class Permission(StrEnum):
    # cashier: the till and the door
    BOOKINGS_READ_ANY = "bookings.read_any"
    CHECKIN_SCAN = "checkin.scan"
    CONCESSIONS_PICKUP = "concessions.pickup"
    # operator: runs the day
    SEATS_BLOCK = "seats.block"
    REFUNDS_ISSUE = "refunds.issue"
    REVIEWS_MODERATE = "reviews.moderate"
    ANALYTICS_READ = "analytics.read"
    REPORTS_READ = "reports.read"
    # admin: runs the business
    VENUES_MANAGE = "venues.manage"
    CATALOG_MANAGE = "catalog.manage"
    SCHEDULE_MANAGE = "schedule.manage"
    USERS_MANAGE = "users.manage"
    PRICING_MANAGE = "pricing.manage"
    PROMOTIONS_MANAGE = "promotions.manage"
    CONCESSIONS_MANAGE = "concessions.manage"
    DISTRIBUTION_MANAGE = "distribution.manage"
    AUDIT_READ = "audit.read"


_CASHIER = {Permission.BOOKINGS_READ_ANY, Permission.CHECKIN_SCAN, Permission.CONCESSIONS_PICKUP}
_OPERATOR = _CASHIER | {
    Permission.SEATS_BLOCK,
    Permission.REFUNDS_ISSUE,
    Permission.REVIEWS_MODERATE,
    Permission.ANALYTICS_READ,
    Permission.REPORTS_READ,
}
_ADMIN = set(Permission)

# What the initial migration seeds; later changes to grants are new migrations.
DEFAULT_GRANTS: dict[Role, frozenset[Permission]] = {
    Role.CUSTOMER: frozenset(),
    Role.CASHIER: frozenset(_CASHIER),
    Role.OPERATOR: frozenset(_OPERATOR),
    Role.ADMIN: frozenset(_ADMIN),
}

STAFF_ROLES = frozenset({Role.CASHIER, Role.OPERATOR, Role.ADMIN})
