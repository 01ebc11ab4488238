"""The one place that reads the wall clock, so tests and rules agree on "now"."""

from __future__ import annotations

import datetime as dt


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)
