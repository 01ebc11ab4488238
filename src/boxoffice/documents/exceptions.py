"""Document errors. A booking the caller may not see is booking's `not_found`; a booking
without tickets answers tickets' `tickets_not_issued`."""

from __future__ import annotations

from boxoffice.core.errors import Conflict


class InvoiceNotAvailable(Conflict):
    code = "invoice_not_available"
    title = "No invoice for this booking"
