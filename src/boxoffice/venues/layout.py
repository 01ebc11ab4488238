"""Seat layouts: parse, validate and normalise a screen's layout (pure functions, no database).

A layout is either a grid (`{"grid": {"rows": 10, "seatsPerRow": 12}}`) or explicit rows
(`{"rows": [{"row": "A", "seats": [{"number": 1, "class": "standard"}, ...]}]}`). Both become
one list of seats and one normalised explicit-rows form (what `Screen.layout` stores), which
parses back to the same seats.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

from boxoffice.venues.exceptions import InvalidLayout
from boxoffice.venues.schemas import GridIn, LayoutIn, RowIn, SeatIn

SEAT_CLASSES = ("standard", "premium", "vip", "wheelchair", "couple")
MAX_ROWS = 100
MAX_SEATS_PER_ROW = 100
MAX_SEATS = 3000
MAX_NUMBER = 999  # seat numbers and positions; keeps labels short ("ABC999")
_ROW_NAME = re.compile(r"[A-Z0-9]{1,3}")


@dataclass(frozen=True, slots=True)
class SeatSpec:
    row_label: str
    number: int
    label: str  # row + number, e.g. "F7"
    seat_class: str
    row_index: int  # 0 = the first row given = the row nearest the screen
    position: int  # column; a gap between positions is an aisle or a missing seat
    active: bool  # an inactive seat exists but is never sold


@dataclass(frozen=True, slots=True)
class ParsedLayout:
    seats: list[SeatSpec]  # by row_index, then position
    layout: dict[str, Any]  # the normalised explicit-rows form

    @property
    def capacity(self) -> int:
        return sum(seat.active for seat in self.seats)


def parse_layout(raw: LayoutIn | Mapping[str, Any]) -> ParsedLayout:
    """Validate a layout; raise `InvalidLayout` (422) with a human reason, or pydantic's
    `ValidationError` when `raw` does not even have the right shape."""
    layout = raw if isinstance(raw, LayoutIn) else LayoutIn.model_validate(raw)
    if layout.grid is not None and layout.rows is not None:
        raise InvalidLayout("Give either 'grid' or 'rows', not both.")
    if layout.grid is not None:
        rows = _expand_grid(layout.grid)
    elif layout.rows is not None:
        rows = layout.rows
    else:
        raise InvalidLayout("Give the layout as 'grid' or as 'rows'.")
    seats = _parse_rows(rows)
    return ParsedLayout(seats=seats, layout=_normalised(seats))


def row_name(index: int) -> str:
    """0 -> A, 25 -> Z, 26 -> AA, 27 -> AB ... (spreadsheet column letters)."""
    name = ""
    index += 1
    while index:
        index, rest = divmod(index - 1, 26)
        name = chr(ord("A") + rest) + name
    return name


def _expand_grid(grid: GridIn) -> list[RowIn]:
    if grid.rows < 1 or grid.seats_per_row < 1:
        raise InvalidLayout("The layout has no seats: a grid needs rows >= 1 and seatsPerRow >= 1.")
    if grid.rows > MAX_ROWS:
        raise InvalidLayout(f"A screen has at most {MAX_ROWS} rows.")
    if grid.seats_per_row > MAX_SEATS_PER_ROW:
        raise InvalidLayout(f"A row has at most {MAX_SEATS_PER_ROW} seats.")
    if grid.rows * grid.seats_per_row > MAX_SEATS:
        raise InvalidLayout(f"A screen has at most {MAX_SEATS} seats.")
    for after in grid.aisles_after:
        if not 1 <= after < grid.seats_per_row:
            raise InvalidLayout(
                f"aislesAfter: {after} is not a seat number between 1 and {grid.seats_per_row - 1}."
            )
    names = [row_name(i) for i in range(grid.rows)]
    classes = {key.strip().upper(): value for key, value in grid.classes.items()}
    unknown = sorted(set(classes) - set(names))
    if unknown:
        raise InvalidLayout(f"classes: the grid has no row {unknown[0][:10]!r}.")
    aisles = sorted(set(grid.aisles_after))
    rows = []
    for name in names:
        seat_class = classes.get(name, "standard")
        seats = [
            # Each aisle before seat n shifts it one column to the right.
            SeatIn.model_construct(
                number=n,
                seat_class=seat_class,
                position=n + sum(1 for a in aisles if a < n),
                active=True,
            )
            for n in range(1, grid.seats_per_row + 1)
        ]
        rows.append(RowIn.model_construct(row=name, seats=seats))
    return rows


def _parse_rows(rows: Sequence[RowIn]) -> list[SeatSpec]:
    if not rows:
        raise InvalidLayout("The layout has no seats.")
    if len(rows) > MAX_ROWS:
        raise InvalidLayout(f"A screen has at most {MAX_ROWS} rows.")
    if sum(len(row.seats) for row in rows) > MAX_SEATS:
        raise InvalidLayout(f"A screen has at most {MAX_SEATS} seats.")
    seats: list[SeatSpec] = []
    row_names: set[str] = set()
    labels: set[str] = set()
    for row_index, row in enumerate(rows):
        name = row.row.strip().upper()
        if not _ROW_NAME.fullmatch(name):
            raise InvalidLayout(f"Row name {row.row[:10]!r} must be 1 to 3 letters or digits.")
        if name in row_names:
            raise InvalidLayout(f"Row {name} appears twice.")
        row_names.add(name)
        if not row.seats:
            raise InvalidLayout(f"Row {name} has no seats.")
        if len(row.seats) > MAX_SEATS_PER_ROW:
            raise InvalidLayout(f"Row {name}: a row has at most {MAX_SEATS_PER_ROW} seats.")
        row_seats = []
        numbers: set[int] = set()
        positions: set[int] = set()
        position = 0
        for seat in row.seats:
            if not 1 <= seat.number <= MAX_NUMBER:
                raise InvalidLayout(f"Row {name}: seat numbers run from 1 to {MAX_NUMBER}.")
            if seat.number in numbers:
                raise InvalidLayout(f"Row {name} has seat number {seat.number} twice.")
            numbers.add(seat.number)
            position = position + 1 if seat.position is None else seat.position
            if not 1 <= position <= MAX_NUMBER:
                raise InvalidLayout(f"Row {name}: positions run from 1 to {MAX_NUMBER}.")
            if position in positions:
                raise InvalidLayout(f"Row {name} has two seats at position {position}.")
            positions.add(position)
            label = f"{name}{seat.number}"
            seat_class = seat.seat_class.strip().lower()
            if seat_class not in SEAT_CLASSES:
                raise InvalidLayout(
                    f"Seat {label}: unknown class {seat.seat_class[:20]!r} "
                    f"(one of {', '.join(SEAT_CLASSES)})."
                )
            # "A" + 11 and "A1" + 1 would both be "A11".
            if label in labels:
                raise InvalidLayout(f"Seat label {label} appears twice.")
            labels.add(label)
            row_seats.append(
                SeatSpec(name, seat.number, label, seat_class, row_index, position, seat.active)
            )
        seats.extend(sorted(row_seats, key=lambda s: s.position))
    if not any(seat.active for seat in seats):
        raise InvalidLayout("The layout has no active seat: nothing could be sold.")
    return seats


def _normalised(seats: Sequence[SeatSpec]) -> dict[str, Any]:
    rows: list[dict[str, Any]] = []
    for seat in seats:
        if not rows or rows[-1]["row"] != seat.row_label:
            rows.append({"row": seat.row_label, "seats": []})
        rows[-1]["seats"].append(
            {
                "number": seat.number,
                "class": seat.seat_class,
                "position": seat.position,
                "active": seat.active,
            }
        )
    return {"rows": rows}


# ---------------------------------------------------------------------------------------------
# Adjacency: two seats are side by side when they share a row and their positions differ by
# one; a larger gap is an aisle. "Best available" seating builds on these.


class Placed(Protocol):
    @property
    def row_index(self) -> int: ...

    @property
    def position(self) -> int: ...


P = TypeVar("P", bound=Placed)


def are_adjacent(a: Placed, b: Placed) -> bool:
    return a.row_index == b.row_index and abs(a.position - b.position) == 1


def contiguous_blocks(seats: Iterable[P]) -> list[list[P]]:
    """The seats split into runs of side-by-side seats, row by row, left to right.

    Pass only the seats that count (e.g. the available ones): anything missing splits a run.
    """
    blocks: list[list[P]] = []
    for seat in sorted(seats, key=lambda s: (s.row_index, s.position)):
        if blocks and are_adjacent(blocks[-1][-1], seat):
            blocks[-1].append(seat)
        else:
            blocks.append([seat])
    return blocks
