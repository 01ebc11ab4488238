"""What the one-go hold and release paths (`holds_postgres`, `holds_sqlite`) are asked and
what they found; `holds` turns a verdict into the same answers and errors as the generic
path."""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass

from boxoffice.accounts.permissions import Role

# A till sells for many customers: staff holds are not capped.
STAFF_ROLES: tuple[str, ...] = tuple(
    role.value for role in (Role.CASHIER, Role.OPERATOR, Role.ADMIN)
)


@dataclass(frozen=True)
class HoldRequest:
    hold_id: uuid.UUID
    user_id: uuid.UUID
    showtime_id: uuid.UUID
    labels: list[str]  # distinct, in the order asked
    now: dt.datetime
    expires: dt.datetime
    closes_after: dt.datetime  # sales are open while the start is later than this
    need_verified: bool  # BOXOFFICE_REQUIRE_VERIFIED_EMAIL
    max_held: int  # BOXOFFICE_MAX_HELD_SEATS_PER_CUSTOMER (0: no cap); staff are exempt
    token_issued_at: dt.datetime | None  # the caller's token (refused if older than the
    # account's last password change or "sign out everywhere"; None: no issue time)


@dataclass(frozen=True)
class HoldVerdict:
    """What the hold statement found; `done` when the hold was made."""

    customer_known: bool
    customer_verified: bool
    showtime_status: str | None
    starts: dt.datetime | None
    known_labels: list[str]
    taken_labels: list[str]
    done: bool
    # The cap applies (a customer, a cap is set) and the seats they hold on other showtimes.
    limited: bool = False
    held_elsewhere: int = 0
    # PostgreSQL: another write to the customer committed after the statement's snapshot, so
    # `held_elsewhere` may be stale; nothing was changed (`holds.lock_seats` retries locked).
    raced: bool = False


@dataclass(frozen=True)
class ReleaseVerdict:
    found: bool  # the hold exists and is the caller's
    customer_active: bool
    status: str | None  # the hold's status before the release
    released: bool
