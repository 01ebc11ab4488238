"""Seat layout parsing: unit tests and properties (no database)."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from boxoffice.venues.exceptions import InvalidLayout
from boxoffice.venues.layout import (
    MAX_SEATS,
    SEAT_CLASSES,
    are_adjacent,
    contiguous_blocks,
    parse_layout,
    row_name,
)


def seat(number: int, **extra: Any) -> dict[str, Any]:
    return {"number": number, **extra}


def test_grid_expands_to_lettered_rows_and_numbered_seats() -> None:
    parsed = parse_layout({"grid": {"rows": 3, "seatsPerRow": 4}})

    assert [s.label for s in parsed.seats] == [f"{r}{n}" for r in "ABC" for n in range(1, 5)]
    assert [s.row_index for s in parsed.seats] == [0] * 4 + [1] * 4 + [2] * 4
    assert [s.position for s in parsed.seats[:4]] == [1, 2, 3, 4]
    assert {s.seat_class for s in parsed.seats} == {"standard"}
    assert all(s.active for s in parsed.seats)
    assert parsed.capacity == 12
    assert parsed.layout["rows"][0] == {
        "row": "A",
        "seats": [
            {"number": n, "class": "standard", "position": n, "active": True} for n in (1, 2, 3, 4)
        ],
    }


def test_grid_aisles_shift_positions_and_classes_apply_per_row() -> None:
    parsed = parse_layout(
        {
            "grid": {
                "rows": 2,
                "seatsPerRow": 6,
                "aislesAfter": [2, 4],
                "classes": {"b": "VIP"},
            }
        }
    )

    row_a = [s for s in parsed.seats if s.row_label == "A"]
    assert [s.position for s in row_a] == [1, 2, 4, 5, 7, 8]
    assert {s.seat_class for s in row_a} == {"standard"}
    assert {s.seat_class for s in parsed.seats if s.row_label == "B"} == {"vip"}


@pytest.mark.parametrize(
    ("index", "name"), [(0, "A"), (25, "Z"), (26, "AA"), (27, "AB"), (52, "BA"), (99, "CV")]
)
def test_row_names_continue_after_z(index: int, name: str) -> None:
    assert row_name(index) == name


def test_grid_of_thirty_rows_uses_double_letters() -> None:
    parsed = parse_layout({"grid": {"rows": 30, "seatsPerRow": 1}})
    assert [s.label for s in parsed.seats][-5:] == ["Z1", "AA1", "AB1", "AC1", "AD1"]


def test_explicit_rows_with_gaps_inactive_seats_and_classes() -> None:
    parsed = parse_layout(
        {
            "rows": [
                {
                    "row": "a",
                    "seats": [
                        seat(1, **{"class": "Wheelchair"}),
                        seat(2),
                        seat(3, position=5),  # an aisle between positions 2 and 5
                        seat(4),
                        seat(5, active=False),
                    ],
                },
                {"row": "B", "seats": [seat(1, **{"class": "couple"}), seat(2, position=3)]},
            ]
        }
    )

    assert [(s.label, s.position, s.active) for s in parsed.seats] == [
        ("A1", 1, True),
        ("A2", 2, True),
        ("A3", 5, True),
        ("A4", 6, True),
        ("A5", 7, False),
        ("B1", 1, True),
        ("B2", 3, True),
    ]
    assert parsed.seats[0].seat_class == "wheelchair"
    assert parsed.seats[5].seat_class == "couple"
    assert parsed.capacity == 6
    assert parse_layout(parsed.layout) == parsed


def test_seats_are_ordered_by_position_within_a_row() -> None:
    # Seats numbered right to left, given in number order.
    parsed = parse_layout(
        {
            "rows": [
                {
                    "row": "A",
                    "seats": [seat(1, position=3), seat(2, position=2), seat(3, position=1)],
                }
            ]
        }
    )
    assert [s.label for s in parsed.seats] == ["A3", "A2", "A1"]


def _rows(*rows: tuple[str, list[dict[str, Any]]]) -> dict[str, Any]:
    return {"rows": [{"row": name, "seats": seats} for name, seats in rows]}


INVALID = {
    "both grid and rows": (
        {"grid": {"rows": 1, "seatsPerRow": 1}, "rows": [{"row": "A", "seats": [seat(1)]}]},
        "not both",
    ),
    "neither grid nor rows": ({}, "'grid' or as 'rows'"),
    "no rows": ({"rows": []}, "no seats"),
    "empty grid": ({"grid": {"rows": 0, "seatsPerRow": 10}}, "no seats"),
    "empty row": (_rows(("A", [seat(1)]), ("B", [])), "Row B has no seats"),
    "duplicate row": (_rows(("A", [seat(1)]), ("a", [seat(1)])), "Row A appears twice"),
    "duplicate number": (_rows(("A", [seat(1), seat(1, position=3)])), "number 1 twice"),
    "duplicate position": (_rows(("A", [seat(1, position=2), seat(2, position=2)])), "position 2"),
    "default position collides": (
        _rows(("A", [seat(1, position=2), seat(2, position=1), seat(3)])),
        "position 2",
    ),
    "duplicate label across rows": (
        _rows(("A", [seat(11)]), ("A1", [seat(1)])),
        "A11 appears twice",
    ),
    "row name too long": (_rows(("ABCD", [seat(1)])), "1 to 3 letters"),
    "row name with a dash": (_rows(("A-", [seat(1)])), "1 to 3 letters"),
    "row name not ascii": (_rows(("Ä", [seat(1)])), "1 to 3 letters"),
    "blank row name": (_rows(("", [seat(1)])), "1 to 3 letters"),
    "seat number zero": (_rows(("A", [seat(0)])), "seat numbers run from 1"),
    "seat number too big": (_rows(("A", [seat(1000)])), "seat numbers run from 1"),
    "position zero": (_rows(("A", [seat(1, position=0)])), "positions run from 1"),
    "negative position": (_rows(("A", [seat(1, position=-3)])), "positions run from 1"),
    "unknown class": (_rows(("A", [seat(1, **{"class": "gold"})])), "unknown class 'gold'"),
    "unknown class in grid": (
        {"grid": {"rows": 1, "seatsPerRow": 2, "classes": {"A": "gold"}}},
        "unknown class",
    ),
    "grid class for a missing row": (
        {"grid": {"rows": 1, "seatsPerRow": 2, "classes": {"C": "vip"}}},
        "no row 'C'",
    ),
    "aisle after the last seat": (
        {"grid": {"rows": 1, "seatsPerRow": 4, "aislesAfter": [4]}},
        "aislesAfter",
    ),
    "too many rows": (_rows(*((row_name(i), [seat(1)]) for i in range(101))), "at most 100 rows"),
    "too many grid rows": ({"grid": {"rows": 101, "seatsPerRow": 1}}, "at most 100 rows"),
    "too many seats in a row": (
        _rows(("A", [seat(n) for n in range(1, 102)])),
        "at most 100 seats",
    ),
    "too many seats in a grid row": (
        {"grid": {"rows": 1, "seatsPerRow": 101}},
        "at most 100 seats",
    ),
    "too many seats": ({"grid": {"rows": 100, "seatsPerRow": 31}}, f"at most {MAX_SEATS} seats"),
    "too many seats in rows": (
        _rows(*((row_name(i), [seat(n) for n in range(1, 32)]) for i in range(100))),
        f"at most {MAX_SEATS} seats",
    ),
    "absurd grid": ({"grid": {"rows": 10**12, "seatsPerRow": 10**12}}, "at most"),
    "no active seat": (_rows(("A", [seat(1, active=False)])), "no active seat"),
}


@pytest.mark.parametrize(("layout", "reason"), INVALID.values(), ids=INVALID.keys())
def test_invalid_layouts_give_a_reason(layout: dict[str, Any], reason: str) -> None:
    with pytest.raises(InvalidLayout, match=reason) as caught:
        parse_layout(layout)
    assert caught.value.status == 422
    assert caught.value.code == "invalid_layout"


@pytest.mark.parametrize(
    "layout",
    [
        {"grid": {"rows": "ten", "seatsPerRow": 2}},
        {"grid": {"rows": 2}},
        {"rows": [{"seats": [seat(1)]}]},
        {"rows": [{"row": "A", "seats": [{"class": "vip"}]}]},
        {"rows": [{"row": "A", "seats": [seat(1.5)]}]},
        {"rows": [{"row": "A", "seats": [seat(1, active="maybe")]}]},
        {"rows": [{"row": "A", "seats": [seat(1, colour="red")]}]},
        {"rows": "A"},
        {"seats": 10},
    ],
)
def test_badly_typed_layouts_fail_validation(layout: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        parse_layout(layout)


def test_adjacency_follows_positions_within_a_row() -> None:
    parsed = parse_layout(
        {
            "rows": [
                {"row": "A", "seats": [seat(1), seat(2), seat(3, position=4), seat(4)]},
                {"row": "B", "seats": [seat(1), seat(2)]},
            ]
        }
    )
    a1, a2, a3, a4, b1, b2 = parsed.seats
    assert are_adjacent(a1, a2)
    assert are_adjacent(a2, a1)
    assert not are_adjacent(a2, a3)  # the aisle
    assert not are_adjacent(a1, b1)  # another row
    assert contiguous_blocks(reversed(parsed.seats)) == [[a1, a2], [a3, a4], [b1, b2]]
    # A seat left out (taken) splits its run.
    assert contiguous_blocks([a1, a3, a4]) == [[a1], [a3, a4]]


def test_contiguous_blocks_work_on_any_placed_objects() -> None:
    seats = [SimpleNamespace(row_index=0, position=p) for p in (3, 1, 2, 9)]
    assert [[s.position for s in block] for block in contiguous_blocks(seats)] == [[1, 2, 3], [9]]


# ---------------------------------------------------------------------------------------------
# Properties

# Row names that end in a letter: their labels (name + number) can never collide.
ROW_NAMES = st.from_regex(r"[A-Z0-9]{0,2}[A-Z]", fullmatch=True)


@st.composite
def explicit_layouts(draw: st.DrawFn) -> dict[str, Any]:
    names = draw(st.lists(ROW_NAMES, min_size=1, max_size=8, unique=True))
    rows = []
    for name in names:
        size = draw(st.integers(1, 10))
        numbers = draw(st.lists(st.integers(1, 999), min_size=size, max_size=size, unique=True))
        positions = draw(st.lists(st.integers(1, 999), min_size=size, max_size=size, unique=True))
        seats = []
        previous = 0
        for number, position in zip(numbers, positions, strict=True):
            entry: dict[str, Any] = {"number": number}
            # Leave the position out where the default (previous + 1) gives it anyway.
            if position != previous + 1 or draw(st.booleans()):
                entry["position"] = position
            if draw(st.booleans()):
                seat_class = draw(st.sampled_from(SEAT_CLASSES))
                entry["class"] = seat_class.upper() if draw(st.booleans()) else seat_class
            if draw(st.booleans()):
                entry["active"] = draw(st.booleans())
            seats.append(entry)
            previous = position
        row = name.lower() if draw(st.booleans()) else name
        rows.append({"row": row, "seats": seats})
    return {"rows": rows}


def _given_seats(layout: dict[str, Any]) -> list[dict[str, Any]]:
    return [s for row in layout["rows"] for s in row["seats"]]


@given(explicit_layouts())
def test_valid_explicit_layouts_round_trip(layout: dict[str, Any]) -> None:
    given_seats = _given_seats(layout)
    active = sum(1 for s in given_seats if s.get("active", True))
    if active == 0:
        with pytest.raises(InvalidLayout):
            parse_layout(layout)
        return

    parsed = parse_layout(layout)

    labels = [s.label for s in parsed.seats]
    assert len(labels) == len(set(labels)) == len(given_seats)
    assert parsed.capacity == active
    # Rows keep the order given; seats run left to right within each row.
    assert [s.row_label for s in parsed.seats] == [
        row["row"].upper() for row in layout["rows"] for _ in row["seats"]
    ]
    assert [(s.row_index, s.position) for s in parsed.seats] == sorted(
        (s.row_index, s.position) for s in parsed.seats
    )
    assert {s.row_index for s in parsed.seats} == set(range(len(layout["rows"])))
    for seat_ in parsed.seats:
        assert seat_.label == f"{seat_.row_label}{seat_.number}"
        assert seat_.seat_class in SEAT_CLASSES
    # The stored form parses back to the very same seats.
    assert parse_layout(parsed.layout) == parsed


@given(
    rows=st.integers(1, 100),
    per_row=st.integers(1, 100),
    aisles=st.sets(st.integers(1, 99), max_size=5),
)
def test_valid_grids_round_trip(rows: int, per_row: int, aisles: set[int]) -> None:
    aisles = {a for a in aisles if a < per_row}
    grid = {"grid": {"rows": rows, "seatsPerRow": per_row, "aislesAfter": sorted(aisles)}}
    if rows * per_row > MAX_SEATS:
        with pytest.raises(InvalidLayout):
            parse_layout(grid)
        return

    parsed = parse_layout(grid)

    assert parsed.capacity == len(parsed.seats) == rows * per_row
    assert len({s.label for s in parsed.seats}) == rows * per_row
    assert [s.row_label for s in parsed.seats[::per_row]] == [row_name(i) for i in range(rows)]
    # Each row splits into one run of seats per aisle, plus one.
    assert len(contiguous_blocks(parsed.seats)) == rows * (len(aisles) + 1)
    assert parse_layout(parsed.layout) == parsed


_VOCABULARY = [
    "grid", "rows", "row", "seats", "number", "class", "position", "active",
    "seatsPerRow", "aislesAfter", "classes", "A", "vip",
]  # fmt: skip
_SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(-(10**20), 10**20)
    | st.integers(-2, 1002)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=6)
    | st.sampled_from(_VOCABULARY)
)
JUNK = st.recursive(
    _SCALARS,
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(st.sampled_from(_VOCABULARY) | st.text(max_size=3), children, max_size=4)
    ),
    max_leaves=30,
)


@st.composite
def damaged_layouts(draw: st.DrawFn) -> dict[str, Any]:
    """A valid layout with one value replaced by junk."""
    layout = draw(explicit_layouts())
    row = draw(st.sampled_from(layout["rows"]))
    target = draw(st.sampled_from([layout, row, *row["seats"]]))
    target[draw(st.sampled_from(_VOCABULARY))] = draw(JUNK)
    return layout


@given(
    st.dictionaries(st.sampled_from(["grid", "rows"]), JUNK, max_size=2) | JUNK | damaged_layouts()
)
def test_junk_only_ever_fails_as_invalid_input(junk: Any) -> None:
    try:
        parsed = parse_layout(junk)
    except (InvalidLayout, ValidationError):
        return
    assert parsed.capacity >= 1
