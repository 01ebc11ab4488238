"""Venue errors: cities, theaters, screens and their seat layouts."""

from __future__ import annotations

from boxoffice.core.errors import Conflict, Unprocessable


class InvalidLayout(Unprocessable):
    code = "invalid_layout"
    title = "Invalid seat layout"


class InvalidTimezone(Unprocessable):
    code = "invalid_timezone"
    title = "Unknown time zone"


class InvalidCurrency(Unprocessable):
    code = "invalid_currency"
    title = "Invalid currency code"


class UnknownCity(Unprocessable):
    code = "unknown_city"
    title = "Unknown city"


class UnknownTheater(Unprocessable):
    code = "unknown_theater"
    title = "Unknown theater"


class CityExists(Conflict):
    code = "city_exists"
    title = "A city with this name exists"


class TheaterExists(Conflict):
    code = "theater_exists"
    title = "The city already has a theater with this name"


class ScreenNumberTaken(Conflict):
    code = "screen_number_taken"
    title = "The theater already has a screen with this number"


class LayoutLocked(Conflict):
    code = "layout_locked"
    title = "The layout cannot change: seats of this screen have been sold or held"


class CityInUse(Conflict):
    code = "city_in_use"
    title = "The city still has theaters"


class TheaterInUse(Conflict):
    code = "theater_in_use"
    title = "The theater still has screens"


class ScreenInUse(Conflict):
    code = "screen_in_use"
    title = "The screen has showtimes"
