"""Best-available seat picking: hand-built halls and properties (pure, no database)."""

from __future__ import annotations

import random
import uuid

import pytest
from hypothesis import given
from hypothesis import strategies as st

from boxoffice.booking.best_available import ROW_WEIGHT, SeatView, choose_seats

CLASSES = {"": "standard", "P": "premium", "V": "vip", "W": "wheelchair", "C": "couple"}


def hall(*rows: str) -> list[SeatView]:
    """Rows front (index 0, "A") to back, one character per position: "." a free standard seat,
    "x" a taken one, " " an aisle (no seat); P/V/W/C a free premium/vip/wheelchair/couple seat,
    lower case a taken one. Seats are numbered along the row, so labels skip aisles."""
    seats = []
    for index, row in enumerate(rows):
        label = chr(ord("A") + index)
        number = 0
        for position, char in enumerate(row, start=1):
            if char == " ":
                continue
            number += 1
            seats.append(
                SeatView(
                    seat_id=uuid.uuid4(),
                    label=f"{label}{number}",
                    row_label=label,
                    row_index=index,
                    position=position,
                    seat_class=CLASSES["" if char in ".x" else char.upper()],
                    free=char in ".PVWC",
                )
            )
    return seats


def labels(blocks: list[list[SeatView]]) -> list[list[str]]:
    return [[s.label for s in block] for block in blocks]


# --- where the best seats are --------------------------------------------------------------


def test_prefers_the_centre_of_the_row() -> None:
    blocks = choose_seats(hall("........"), 2)

    # Centre line 4.5: the exact middle, then one seat off either side (left first on a tie).
    assert labels(blocks)[:3] == [["A4", "A5"], ["A3", "A4"], ["A5", "A6"]]


def test_prefers_about_two_thirds_back() -> None:
    blocks = choose_seats(hall(*["......"] * 7), 2)

    assert labels(blocks)[0] == ["E3", "E4"]  # row index 4 = 2/3 x (7 - 1)


def test_one_row_off_costs_about_one_and_a_half_seats() -> None:
    assert ROW_WEIGHT == 1.5
    front = ".........."
    # Row C is the sweet row (2/3 of 3). One seat off-centre there beats the centre of row B/D...
    one_off = choose_seats(hall(front, front, "....x.....", front), 2)
    assert labels(one_off)[0] == ["C6", "C7"]
    # ...two seats off-centre does not: the centre one row off wins (lower row on the tie).
    two_off = choose_seats(hall(front, front, "....xx....", front), 2)
    assert labels(two_off)[:2] == [["B5", "B6"], ["D5", "D6"]]


def test_blocks_never_span_an_aisle() -> None:
    seats = hall("..... .....")  # the centre line (6) is the aisle itself

    blocks = choose_seats(seats, 2)

    assert labels(blocks)[:2] == [["A4", "A5"], ["A6", "A7"]]
    assert all(b[1].position - b[0].position == 1 for b in blocks)
    assert choose_seats(hall("...  ..."), 4) == []


# --- never strand a single seat ------------------------------------------------------------


def test_avoids_stranding_a_single_seat_next_to_the_block() -> None:
    seats = hall("x.....x")  # free 2-6; the centred blocks 3-4 and 4-5 would leave 2 or 6 alone

    assert labels(choose_seats(seats, 2)) == [
        ["A2", "A3"],
        ["A5", "A6"],
        ["A3", "A4"],
        ["A4", "A5"],
    ]


def test_an_aisle_strands_like_a_taken_seat() -> None:
    # Centre line 7.5 runs through A6 A7 (positions 7-8), which would leave A5 alone against
    # the aisle; A7 A8 would leave A9 alone against the taken seats.
    seats = hall(".... .....xxxx")

    assert labels(choose_seats(seats, 2)) == [
        ["A5", "A6"],
        ["A8", "A9"],
        ["A3", "A4"],
        ["A1", "A2"],
        ["A6", "A7"],
    ]
    # a single seat is not put in the middle of three either
    assert labels(choose_seats(hall("x...x"), 1))[:2] == [["A2"], ["A4"]]


def test_stranding_is_accepted_when_there_is_no_other_choice() -> None:
    assert labels(choose_seats(hall("x...x"), 2)) == [["A2", "A3"], ["A3", "A4"]]


def test_seats_that_were_already_alone_are_not_held_against_a_block() -> None:
    # Row A's block (nearer the sweet spot) leaves only the singles that were already there,
    # so it is not counted as stranding and beats row B's best, B2 B3.
    seats = hall(".x..x.", "x....x")

    assert labels(choose_seats(seats, 2))[0] == ["A3", "A4"]


# --- wheelchair spaces and seat classes ----------------------------------------------------


def test_wheelchair_spaces_are_only_given_when_asked() -> None:
    seats = hall("W.W", "xxx")

    assert labels(choose_seats(seats, 1)) == [["A2"]]
    assert choose_seats(seats, 2) == []
    assert labels(choose_seats(seats, 1, seat_class="wheelchair")) == [["A1"], ["A3"]]


def test_wheelchair_pair_is_a_space_with_its_companion_seat() -> None:
    seats = hall("W.   ...   .W", ".............")

    blocks = choose_seats(seats, 2, seat_class="wheelchair")

    assert labels(blocks) == [["A1", "A2"], ["A6", "A7"]]


def test_wheelchair_pair_can_be_two_spaces() -> None:
    seats = hall("WW..", "....")

    assert labels(choose_seats(seats, 2, seat_class="wheelchair")) == [["A1", "A2"], ["A2", "A3"]]


def test_wheelchair_blocks_have_one_companion_per_space() -> None:
    assert labels(choose_seats(hall("..W.."), 2, seat_class="wheelchair")) == [
        ["A2", "A3"],
        ["A3", "A4"],
    ]
    assert choose_seats(hall("..W.."), 3, seat_class="wheelchair") == []  # two companions
    assert labels(choose_seats(hall("W.."), 2, seat_class="wheelchair")) == [["A1", "A2"]]
    assert choose_seats(hall("W.."), 3, seat_class="wheelchair") == []
    assert choose_seats(hall("w.."), 1, seat_class="wheelchair") == []


def test_seat_class_filter_uses_only_that_class() -> None:
    seats = hall("..PPP...", "..VV....", "CC......")

    assert labels(choose_seats(seats, 2, seat_class="premium")) == [["A4", "A5"], ["A3", "A4"]]
    assert labels(choose_seats(seats, 2, seat_class="vip")) == [["B3", "B4"]]
    assert labels(choose_seats(seats, 2, seat_class="couple")) == [["C1", "C2"]]
    assert choose_seats(seats, 3, seat_class="vip") == []
    # Without a class every class but wheelchair is fine, couple seats included.
    assert labels(choose_seats(hall("xCCx"), 2)) == [["A2", "A3"]]


# --- nothing to give -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("rows", "quantity"),
    [(("xxxx", "xxxx"), 1), (("....", "...."), 5), (("..",), 0), (("..",), -1), ((), 1)],
)
def test_no_block_gives_an_empty_list(rows: tuple[str, ...], quantity: int) -> None:
    assert choose_seats(hall(*rows), quantity) == []


def test_limit_caps_the_candidates() -> None:
    seats = hall(*["........"] * 5)

    assert len(choose_seats(seats, 2)) == 5
    assert len(choose_seats(seats, 2, limit=12)) == 12


def test_same_answer_whatever_the_order_of_the_seats() -> None:
    seats = hall("..x.....x..", "...........", "x..........", ".x.........")
    shuffled = list(seats)
    random.Random(7).shuffle(shuffled)

    assert choose_seats(shuffled, 3, limit=20) == choose_seats(seats, 3, limit=20)


# --- properties ----------------------------------------------------------------------------

rows_strategy = st.lists(st.text(alphabet=".x PpVvWwCc", min_size=1, max_size=12), max_size=6)
class_strategy = st.sampled_from([None, "standard", "premium", "vip", "wheelchair", "couple"])


def suits(block: list[SeatView], seat_class: str | None) -> bool:
    """The class rules, restated: no class = no wheelchair; a class = only it; wheelchair = at
    least one space, others are companions beside a space, one companion per space at most."""
    kinds = [s.seat_class for s in block]
    if seat_class != "wheelchair":
        return all(k == seat_class if seat_class else k != "wheelchair" for k in kinds)
    spaces = [i for i, k in enumerate(kinds) if k == "wheelchair"]
    beside = all(
        k == "wheelchair" or i - 1 in spaces or i + 1 in spaces for i, k in enumerate(kinds)
    )
    return bool(spaces) and beside and len(kinds) - len(spaces) <= len(spaces)


def rank(seats: list[SeatView], block: list[SeatView]) -> tuple[bool, float, int, int]:
    """The documented order, computed from a seat lookup rather than runs."""
    free = {(s.row_index, s.position) for s in seats if s.free}
    row, left, right = block[0].row_index, block[0].position, block[-1].position

    def strands(position: int, step: int) -> bool:
        return (row, position) in free and (row, position + step) not in free

    positions = [s.position for s in seats]
    rows = [s.row_index for s in seats]
    centre = (min(positions) + max(positions)) / 2
    sweet_row = min(rows) + 2 / 3 * (max(rows) - min(rows))
    distance = abs((left + right) / 2 - centre) + 1.5 * abs(row - sweet_row)
    return (strands(left - 1, -1) or strands(right + 1, 1), distance, row, left)


@given(rows_strategy, st.integers(1, 5), class_strategy, st.integers(1, 8))
def test_every_block_is_valid_and_ranked(
    rows: list[str], quantity: int, seat_class: str | None, limit: int
) -> None:
    seats = hall(*rows)

    blocks = choose_seats(seats, quantity, seat_class=seat_class, limit=limit)

    assert len(blocks) <= limit
    for block in blocks:
        assert len(block) == quantity
        assert len({s.seat_id for s in block}) == quantity
        assert all(s.free for s in block)
        assert len({s.row_index for s in block}) == 1
        assert [s.position - block[0].position for s in block] == list(range(quantity))
        assert suits(block, seat_class)
        if seat_class != "wheelchair":
            assert all(s.seat_class != "wheelchair" for s in block)
    ranks = [rank(seats, block) for block in blocks]
    assert ranks == sorted(ranks)
    assert len({tuple(s.seat_id for s in block) for block in blocks}) == len(blocks)


@given(rows_strategy, st.integers(1, 4), class_strategy)
def test_the_best_blocks_of_all_possible_ones_are_returned(
    rows: list[str], quantity: int, seat_class: str | None
) -> None:
    seats = hall(*rows)
    at = {(s.row_index, s.position): s for s in seats}
    possible: list[list[SeatView]] = []
    for row, left in at:
        block = [at.get((row, left + i)) for i in range(quantity)]
        if all(s is not None and s.free for s in block):
            possible.append([s for s in block if s is not None])
    possible = [b for b in possible if suits(b, seat_class)]
    possible.sort(key=lambda block: rank(seats, block))

    assert choose_seats(seats, quantity, seat_class=seat_class, limit=6) == possible[:6]
