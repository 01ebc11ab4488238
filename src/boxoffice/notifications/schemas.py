"""Notification bodies, and the preference fields `/api/me` shows and accepts."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Annotated, Any

from pydantic import AfterValidator, StrictBool

from boxoffice.core.schema import CamelModel, InputModel, Pagination
from boxoffice.notifications.models import Notification
from boxoffice.notifications.rendering import LOCALES


def _known_locale(value: str) -> str:
    locale = value.strip().lower()
    if locale not in LOCALES:
        raise ValueError(f"unknown locale {value!r}; use one of {', '.join(LOCALES)}")
    return locale


Locale = Annotated[str, AfterValidator(_known_locale)]


class NotificationChannels(CamelModel):
    """Where a customer's notifications go (account mails always go by email)."""

    email: bool
    sms: bool
    in_app: bool


class NotificationChannelsPatch(InputModel):
    """Only the channels named change."""

    email: StrictBool | None = None
    sms: StrictBool | None = None
    in_app: StrictBool | None = None


class NotificationOut(CamelModel):
    id: uuid.UUID
    type: str
    title: str
    body: str
    data: dict[str, Any]
    read: bool
    read_at: dt.datetime | None
    created_at: dt.datetime

    @classmethod
    def of(cls, row: Notification) -> NotificationOut:
        return cls(
            id=row.id,
            type=row.type,
            title=row.title,
            body=row.body,
            data=row.data or {},
            read=row.read_at is not None,
            read_at=row.read_at,
            created_at=row.created_at,
        )


class NotificationPage(CamelModel):
    notifications: list[NotificationOut]
    unread_count: int
    pagination: Pagination


class ReadAllOut(CamelModel):
    marked: int  # notifications that were unread until now
    unread_count: int
