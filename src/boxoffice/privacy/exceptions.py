"""Privacy errors."""

from __future__ import annotations

from boxoffice.core.errors import Conflict


class LastAdmin(Conflict):
    code = "last_admin"
    title = "The last admin cannot be erased"
