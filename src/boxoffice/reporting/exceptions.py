"""Analytics and report errors."""

from __future__ import annotations

from boxoffice.core.errors import Conflict, NotFound, Unprocessable


class InvalidRange(Unprocessable):
    code = "invalid_range"
    title = "Invalid date range"


class TheaterRequired(Unprocessable):
    """The theaters in scope sell in several currencies: one total would add them up."""

    code = "theater_required"
    title = "Several currencies: choose a theater"


class ReportNotFound(NotFound):
    code = "report_not_found"
    title = "No such report"


class ReportNotReady(Conflict):
    code = "report_not_ready"
    title = "The report is not ready"
