"""What the one-go hold and release paths (`holds_postgres`, `holds_sqlite`) are asked and
what they found; `holds` turns a verdict into the same answers and errors as the generic
path."""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass


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


@dataclass(frozen=True)
class ReleaseVerdict:
    found: bool  # the hold exists and is the caller's
    customer_active: bool
    status: str | None  # the hold's status before the release
    released: bool
