"""Catalog errors."""

from __future__ import annotations

from boxoffice.core.errors import Conflict, NotFound


class MovieNotFound(NotFound):
    title = "Movie not found"


class MovieInUse(Conflict):
    code = "movie_in_use"
    title = "Movie has showtimes"
