"""Notification errors."""

from __future__ import annotations

from boxoffice.core.errors import NotFound


class NotificationNotFound(NotFound):
    code = "notification_not_found"
    title = "No such notification"
