"""The personal data export (`GET /api/me/export`)."""

from __future__ import annotations

import datetime as dt
from typing import Any

from pydantic import Field

from boxoffice.core.schema import CamelModel

Row = dict[str, Any]


class LoyaltyExport(CamelModel):
    account: Row | None = Field(description="Balance and tier; null before the first points.")
    entries: list[Row] = Field(description="The points ledger, oldest first.")


class StaffActivity(CamelModel):
    """What a staff account did that names it (customers have none)."""

    refunds_requested: list[Row]
    tickets_checked_in: list[Row]
    reports_requested: list[Row]


class PersonalDataExport(CamelModel):
    """Everything stored about the caller. Rows keep their stored fields in camelCase; money
    is a decimal string. Credentials are left out: password and token hashes, the MFA
    secret, payment client secrets and approval links, pickup codes and stored API answers."""

    format_version: int = 1
    generated_at: dt.datetime
    profile: Row
    notification_preferences: Row
    sessions: list[Row] = Field(description="Refresh tokens (metadata only), newest first.")
    sign_in_records: list[Row] = Field(
        description="Failed sign-in counters and the addresses the account signed in from."
    )
    account_tokens: list[Row] = Field(description="Mailed verification and reset tokens.")
    holds: list[Row]
    bookings: list[Row] = Field(
        description="Seat bookings with seats, snacks, tickets, payments, refunds, invoice "
        "and promo code, newest first."
    )
    concession_preorders: list[Row] = Field(description="Snack orders without seats.")
    loyalty: LoyaltyExport
    promo_redemptions: list[Row]
    reviews: list[Row]
    helpful_votes: list[Row]
    notifications: list[Row]
    idempotency_keys: list[Row] = Field(description="Keys sent with requests (answers left out).")
    staff_activity: StaffActivity
    audit_log: list[Row] = Field(
        description="Entries where the caller is the actor, or about the account or its "
        "bookings, payments and reviews."
    )
