"""Reviews: only customers whose ticket was checked in review a movie, once (editable); staff
hide abusive reviews; the movie's averageRating and reviewCount stay exact under races."""

from __future__ import annotations

import asyncio
import datetime as dt
import uuid
from decimal import ROUND_HALF_UP, Decimal
from types import SimpleNamespace
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import func, select

from boxoffice.audit.models import AuditEntry
from boxoffice.catalog.models import Movie
from boxoffice.reviews.models import Review, ReviewVote
from boxoffice.scheduling.models import Showtime
from boxoffice.tickets.signing import ticket_signer
from boxoffice.venues.models import Screen
from tests.factories import make_confirmed_booking, make_movie, make_showtime, seed_venue
from tests.helpers import TestUser, make_user

PROBLEM = "application/problem+json"


def soon(minutes: int = 10) -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(microsecond=0) + dt.timedelta(minutes=minutes)


def label(index: int) -> str:
    return f"{chr(ord('A') + index // 10)}{index % 10 + 1}"


async def audience(
    app: FastAPI, client: httpx.AsyncClient, count: int, *, checked_in: bool = True
) -> SimpleNamespace:
    """A movie with a showtime starting soon and `count` customers who each bought one ticket
    for it; the tickets are scanned at the door unless `checked_in` is false."""
    venue = await seed_venue(app, rows=max(1, (count + 9) // 10), seats_per_row=10)
    customers = [await make_user(app) for _ in range(count)]
    async with app.state.db.session() as session:
        screen = await session.get(Screen, venue.screen_id)
        movie = await session.get(Movie, venue.movie_id)
        assert screen is not None
        assert movie is not None
        showtime = await make_showtime(session, screen, movie, start_time=soon())
        ticket_ids = []
        for index, customer in enumerate(customers):
            _, tickets = await make_confirmed_booking(
                session, customer.id, showtime.id, [label(index)]
            )
            ticket_ids.append(tickets[0].id)
    setup = SimpleNamespace(
        movie_id=str(venue.movie_id),
        screen_id=venue.screen_id,
        showtime_id=showtime.id,
        customers=customers,
        ticket_ids=ticket_ids,
        cashier=await make_user(app, "cashier"),
    )
    if checked_in:
        for ticket_id in ticket_ids:
            await check_in(app, client, setup, ticket_id)
    return setup


async def check_in(
    app: FastAPI, client: httpx.AsyncClient, setup: SimpleNamespace, ticket_id: uuid.UUID
) -> None:
    signer = ticket_signer(app.state.settings, app.state.signing_key)
    response = await client.post(
        "/api/checkin",
        json={"qrToken": signer.sign(ticket_id, setup.showtime_id)},
        headers=setup.cashier.headers,
    )
    assert response.status_code == 200, response.text
    assert response.json()["result"] == "valid", response.text


def reviews_url(movie_id: str) -> str:
    return f"/api/movies/{movie_id}/reviews"


async def post(
    client: httpx.AsyncClient, movie_id: str, user: TestUser, rating: Any = 4, text: Any = "Good."
) -> httpx.Response:
    return await client.post(
        reviews_url(movie_id), json={"rating": rating, "text": text}, headers=user.headers
    )


async def posted(
    client: httpx.AsyncClient, movie_id: str, user: TestUser, rating: int = 4, text: str = "Good."
) -> dict[str, Any]:
    response = await post(client, movie_id, user, rating, text)
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


async def movie_of(client: httpx.AsyncClient, movie_id: str) -> dict[str, Any]:
    response = await client.get(f"/api/movies/{movie_id}")
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def listed(
    client: httpx.AsyncClient, movie_id: str, headers: dict[str, str] | None = None, **params: Any
) -> dict[str, Any]:
    response = await client.get(reviews_url(movie_id), params=params, headers=headers or {})
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def exact_average(ratings: list[int]) -> float | None:
    if not ratings:
        return None
    value = Decimal(sum(ratings)) / Decimal(len(ratings))
    return float(value.quantize(Decimal("0.01"), rounding=ROUND_HALF_UP))


async def assert_aggregates(app: FastAPI, client: httpx.AsyncClient, movie_id: str) -> None:
    """The movie's counters equal what its visible reviews say, in the table and the API."""
    async with app.state.db.session() as session:
        ratings = list(
            (
                await session.scalars(
                    select(Review.rating).where(
                        Review.movie_id == uuid.UUID(movie_id), Review.hidden.is_(False)
                    )
                )
            ).all()
        )
        row = await session.get(Movie, uuid.UUID(movie_id))
        assert row is not None
        assert row.rating_sum == sum(ratings)
    movie = await movie_of(client, movie_id)
    assert movie["reviewCount"] == len(ratings)
    assert movie["averageRating"] == exact_average(ratings)


def assert_problem(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == PROBLEM
    body: dict[str, Any] = response.json()
    assert body["code"] == code, body
    return body


# ---------------------------------------------------------------------------------------------
# Who may review


async def test_a_customer_whose_ticket_was_checked_in_reviews_the_movie(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    setup = await audience(app, client, 1)
    customer = setup.customers[0]
    assert (await movie_of(client, setup.movie_id))["reviewCount"] == 0
    assert (await movie_of(client, setup.movie_id))["averageRating"] is None

    review = await posted(client, setup.movie_id, customer, 4, "  Great film,\nloved it.  ")
    assert review["movieId"] == setup.movie_id
    assert review["rating"] == 4
    assert review["text"] == "Great film,\nloved it."
    assert review["authorName"] == "Test C."
    assert review["helpfulCount"] == 0
    assert review["hidden"] is False
    assert review["mine"] is True
    assert review["editedAt"] is None
    assert dt.datetime.fromisoformat(review["createdAt"]).tzinfo is not None
    assert "userId" not in review
    assert "email" not in str(review)

    movie = await movie_of(client, setup.movie_id)
    assert movie["reviewCount"] == 1
    assert movie["averageRating"] == 4.0
    listing = await client.get("/api/movies", params={"search": movie["title"]})
    assert listing.json()["movies"][0]["reviewCount"] == 1
    assert listing.json()["movies"][0]["averageRating"] == 4.0

    public = await listed(client, setup.movie_id)
    assert [r["id"] for r in public["reviews"]] == [review["id"]]
    assert public["reviews"][0]["mine"] is False  # anonymous reader
    assert public["pagination"] == {"page": 1, "limit": 20, "total": 1, "totalPages": 1}

    mine = await client.get(f"{reviews_url(setup.movie_id)}/mine", headers=customer.headers)
    assert mine.status_code == 200
    assert mine.json()["id"] == review["id"]


async def test_a_paid_ticket_not_checked_in_is_not_enough(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    setup = await audience(app, client, 2, checked_in=False)
    refused = await post(client, setup.movie_id, setup.customers[0])
    body = assert_problem(refused, 403, "review_not_allowed")
    assert body["movieId"] == setup.movie_id
    assert (await movie_of(client, setup.movie_id))["reviewCount"] == 0

    # Once scanned at the door, the same customer may.
    await check_in(app, client, setup, setup.ticket_ids[0])
    await posted(client, setup.movie_id, setup.customers[0])
    # The other customer's ticket is still unused.
    assert_problem(
        await post(client, setup.movie_id, setup.customers[1]), 403, "review_not_allowed"
    )


async def test_no_ticket_or_a_ticket_for_another_movie_is_refused(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    setup = await audience(app, client, 1)
    async with app.state.db.session() as session:
        other = await make_movie(session)
        other_id = str(other.id)
    # A checked-in ticket for another movie does not count.
    assert_problem(await post(client, other_id, setup.customers[0]), 403, "review_not_allowed")
    stranger = await make_user(app)
    assert_problem(await post(client, setup.movie_id, stranger), 403, "review_not_allowed")
    # Staff roles do not help either: it is about having seen the movie.
    assert_problem(await post(client, setup.movie_id, setup.cashier), 403, "review_not_allowed")

    anonymous = await client.post(reviews_url(setup.movie_id), json={"rating": 5, "text": "ok"})
    assert_problem(anonymous, 401, "not_authenticated")
    unknown = await post(client, str(uuid.uuid4()), setup.customers[0])
    assert_problem(unknown, 404, "not_found")
    assert_problem(await client.get(reviews_url(str(uuid.uuid4()))), 404, "not_found")


async def test_a_second_review_of_the_same_movie_is_a_conflict(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    setup = await audience(app, client, 1)
    first = await posted(client, setup.movie_id, setup.customers[0], 5)
    again = await post(client, setup.movie_id, setup.customers[0], 1, "Changed my mind")
    body = assert_problem(again, 409, "already_reviewed")
    assert body["reviewId"] == first["id"]
    movie = await movie_of(client, setup.movie_id)
    assert (movie["reviewCount"], movie["averageRating"]) == (1, 5.0)


@pytest.mark.parametrize(
    "body",
    [
        pytest.param({"rating": 0, "text": "Too low"}, id="rating-0"),
        pytest.param({"rating": 6, "text": "Too high"}, id="rating-6"),
        pytest.param({"rating": -1, "text": "Negative"}, id="rating-negative"),
        pytest.param({"rating": 4.5, "text": "Half"}, id="rating-float"),
        pytest.param({"rating": "5", "text": "String"}, id="rating-string"),
        pytest.param({"rating": True, "text": "Bool"}, id="rating-bool"),
        pytest.param({"rating": None, "text": "Null"}, id="rating-null"),
        pytest.param({"text": "No rating"}, id="rating-missing"),
        pytest.param({"rating": 3}, id="text-missing"),
        pytest.param({"rating": 3, "text": ""}, id="text-empty"),
        pytest.param({"rating": 3, "text": "   \n\t  "}, id="text-blank"),
        pytest.param({"rating": 3, "text": " a "}, id="text-one-char-after-strip"),
        pytest.param({"rating": 3, "text": "x" * 2001}, id="text-too-long"),
        pytest.param({"rating": 3, "text": "nul\x00byte"}, id="text-nul"),
        pytest.param({"rating": 3, "text": "bell\x07"}, id="text-control"),
        pytest.param({"rating": 3, "text": 42}, id="text-number"),
        pytest.param({"rating": 3, "text": "ok", "userId": str(uuid.uuid4())}, id="extra-field"),
    ],
)
async def test_bad_reviews_are_422(
    app: FastAPI, client: httpx.AsyncClient, body: dict[str, Any]
) -> None:
    setup = await audience(app, client, 1)
    response = await client.post(
        reviews_url(setup.movie_id), json=body, headers=setup.customers[0].headers
    )
    assert_problem(response, 422, "validation_error")
    assert (await movie_of(client, setup.movie_id))["reviewCount"] == 0


async def test_text_limits_are_inclusive(app: FastAPI, client: httpx.AsyncClient) -> None:
    setup = await audience(app, client, 2)
    assert (await posted(client, setup.movie_id, setup.customers[0], 1, "ok"))["text"] == "ok"
    long = "y" * 2000
    assert (await posted(client, setup.movie_id, setup.customers[1], 5, long))["text"] == long


# ---------------------------------------------------------------------------------------------
# Editing one's own review


async def test_the_author_edits_the_review_and_the_average_follows(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    setup = await audience(app, client, 2)
    alice, bob = setup.customers
    review = await posted(client, setup.movie_id, alice, 2, "Meh.")
    await posted(client, setup.movie_id, bob, 5, "Superb.")
    assert (await movie_of(client, setup.movie_id))["averageRating"] == 3.5
    url = f"{reviews_url(setup.movie_id)}/{review['id']}"

    edited = await client.patch(url, json={"rating": 4}, headers=alice.headers)
    assert edited.status_code == 200, edited.text
    assert edited.json()["rating"] == 4
    assert edited.json()["text"] == "Meh."
    assert edited.json()["editedAt"] is not None
    movie = await movie_of(client, setup.movie_id)
    assert (movie["reviewCount"], movie["averageRating"]) == (2, 4.5)

    text_only = await client.patch(
        url, json={"text": " Better on reflection. "}, headers=alice.headers
    )
    assert text_only.json()["text"] == "Better on reflection."
    assert text_only.json()["rating"] == 4
    await assert_aggregates(app, client, setup.movie_id)

    # Someone else's review is not theirs to see: 404, unchanged.
    assert_problem(
        await client.patch(url, json={"rating": 1}, headers=bob.headers), 404, "not_found"
    )
    assert_problem(await client.patch(url, json={"rating": 1}), 401, "not_authenticated")
    wrong_movie = f"{reviews_url(str(uuid.uuid4()))}/{review['id']}"
    assert_problem(
        await client.patch(wrong_movie, json={"rating": 1}, headers=alice.headers), 404, "not_found"
    )
    for bad in ({}, {"rating": None}, {"text": None}, {"rating": 9}, {"text": "x"}):
        response = await client.patch(url, json=bad, headers=alice.headers)
        assert response.status_code == 422, (bad, response.text)
    assert (await movie_of(client, setup.movie_id))["averageRating"] == 4.5


# ---------------------------------------------------------------------------------------------
# Listing and helpful votes


async def test_reviews_are_listed_newest_or_most_helpful_first_and_paged(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    setup = await audience(app, client, 5)
    ids = []
    for index, customer in enumerate(setup.customers):
        ids.append((await posted(client, setup.movie_id, customer, index + 1))["id"])
    # Distinct creation times regardless of clock resolution.
    async with app.state.db.session() as session:
        base = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
        for index, review_id in enumerate(ids):
            review = await session.get(Review, uuid.UUID(review_id))
            assert review is not None
            review.created_at = base + dt.timedelta(hours=index)

    newest = await listed(client, setup.movie_id)
    assert [r["id"] for r in newest["reviews"]] == ids[::-1]
    assert newest == await listed(client, setup.movie_id, sort="newest")

    # Votes: review 1 gets three, review 3 gets two, review 0 one.
    votes = {1: [0, 2, 3], 3: [0, 1], 0: [4]}
    for target, voters in votes.items():
        for voter in voters:
            response = await client.post(
                f"{reviews_url(setup.movie_id)}/{ids[target]}/helpful",
                headers=setup.customers[voter].headers,
            )
            assert response.status_code == 200, response.text
    helpful = await listed(client, setup.movie_id, sort="helpful")
    assert [r["id"] for r in helpful["reviews"]] == [ids[1], ids[3], ids[0], ids[4], ids[2]]
    assert [r["helpfulCount"] for r in helpful["reviews"]] == [3, 2, 1, 0, 0]

    page2 = await listed(client, setup.movie_id, sort="helpful", page=2, limit=2)
    assert [r["id"] for r in page2["reviews"]] == [ids[0], ids[4]]
    assert page2["pagination"] == {"page": 2, "limit": 2, "total": 5, "totalPages": 3}
    mine = await listed(client, setup.movie_id, headers=setup.customers[2].headers)
    assert [r["mine"] for r in mine["reviews"]] == [False, False, True, False, False]

    for params in ({"sort": "best"}, {"limit": 101}, {"page": 0}):
        response = await client.get(reviews_url(setup.movie_id), params=params)
        assert_problem(response, 422, "validation_error")


async def test_helpful_votes_are_one_per_customer_idempotent_and_not_on_ones_own(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    setup = await audience(app, client, 2)
    author, reader = setup.customers
    review = await posted(client, setup.movie_id, author)
    url = f"{reviews_url(setup.movie_id)}/{review['id']}/helpful"

    # Anyone signed in may vote (no ticket needed), once.
    outsider = await make_user(app)
    for _ in range(2):
        response = await client.post(url, headers=reader.headers)
        assert response.status_code == 200, response.text
        assert response.json() == {"reviewId": review["id"], "helpfulCount": 1, "voted": True}
    assert (await client.post(url, headers=outsider.headers)).json()["helpfulCount"] == 2

    assert_problem(await client.post(url, headers=author.headers), 403, "own_review")
    assert_problem(await client.post(url), 401, "not_authenticated")
    assert_problem(
        await client.post(
            f"{reviews_url(setup.movie_id)}/{uuid.uuid4()}/helpful", headers=reader.headers
        ),
        404,
        "not_found",
    )

    # Taking the vote back, also idempotent.
    for _ in range(2):
        response = await client.delete(url, headers=outsider.headers)
        assert response.json() == {"reviewId": review["id"], "helpfulCount": 1, "voted": False}
    listed_review = (await listed(client, setup.movie_id))["reviews"][0]
    assert listed_review["helpfulCount"] == 1


# ---------------------------------------------------------------------------------------------
# Moderation


async def test_staff_hide_a_review_it_leaves_the_list_and_the_aggregates_and_is_audited(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    setup = await audience(app, client, 3)
    reviews = [
        await posted(client, setup.movie_id, customer, rating, f"Review {rating}")
        for customer, rating in zip(setup.customers, [1, 4, 5], strict=True)
    ]
    abusive = reviews[0]
    assert (await movie_of(client, setup.movie_id))["averageRating"] == 3.33
    url = f"/api/admin/reviews/{abusive['id']}"

    for role in ("customer", "cashier"):
        user = await make_user(app, role)
        assert_problem(
            await client.patch(url, json={"hidden": True}, headers=user.headers), 403, "forbidden"
        )
    assert_problem(await client.patch(url, json={"hidden": True}), 401, "not_authenticated")
    operator = await make_user(app, "operator")
    for bad in ({}, {"hidden": "yes"}, {"hidden": None}):
        response = await client.patch(url, json=bad, headers=operator.headers)
        assert_problem(response, 422, "validation_error")
    assert_problem(
        await client.patch(
            f"/api/admin/reviews/{uuid.uuid4()}", json={"hidden": True}, headers=operator.headers
        ),
        404,
        "not_found",
    )

    hidden = await client.patch(
        url, json={"hidden": True, "reason": "insults"}, headers=operator.headers
    )
    assert hidden.status_code == 200, hidden.text
    assert hidden.json()["hidden"] is True
    movie = await movie_of(client, setup.movie_id)
    assert (movie["reviewCount"], movie["averageRating"]) == (2, 4.5)
    await assert_aggregates(app, client, setup.movie_id)

    public = await listed(client, setup.movie_id)
    assert abusive["id"] not in [r["id"] for r in public["reviews"]]
    assert public["pagination"]["total"] == 2
    # Customers cannot ask for hidden ones; moderators can.
    forbidden = await client.get(
        reviews_url(setup.movie_id),
        params={"includeHidden": "true"},
        headers=setup.customers[1].headers,
    )
    assert_problem(forbidden, 403, "forbidden")
    staff_view = await listed(
        client, setup.movie_id, headers=operator.headers, includeHidden="true"
    )
    assert staff_view["pagination"]["total"] == 3
    queue = await client.get(
        "/api/admin/reviews", params={"hidden": "true"}, headers=operator.headers
    )
    assert [r["id"] for r in queue.json()["reviews"]] == [abusive["id"]]
    # The author still sees their own review, marked hidden; votes on it are refused.
    mine = await client.get(
        f"{reviews_url(setup.movie_id)}/mine", headers=setup.customers[0].headers
    )
    assert mine.json()["hidden"] is True
    vote = await client.post(
        f"{reviews_url(setup.movie_id)}/{abusive['id']}/helpful", headers=setup.customers[1].headers
    )
    assert_problem(vote, 404, "not_found")
    # Editing a hidden review does not bring it back into the aggregates.
    edit = await client.patch(
        f"{reviews_url(setup.movie_id)}/{abusive['id']}",
        json={"rating": 2},
        headers=setup.customers[0].headers,
    )
    assert edit.status_code == 200
    assert edit.json()["hidden"] is True
    await assert_aggregates(app, client, setup.movie_id)

    # Hiding again changes nothing and is not audited twice; showing it restores it.
    again = await client.patch(url, json={"hidden": True}, headers=operator.headers)
    assert again.status_code == 200
    admin = await make_user(app, "admin")
    shown = await client.patch(url, json={"hidden": False}, headers=admin.headers)
    assert shown.json()["hidden"] is False
    movie = await movie_of(client, setup.movie_id)
    assert (movie["reviewCount"], movie["averageRating"]) == (3, 3.67)  # 2 + 4 + 5

    async with app.state.db.session() as session:
        entries = (
            await session.scalars(
                select(AuditEntry)
                .where(AuditEntry.entity_type == "review")
                .order_by(AuditEntry.created_at)
            )
        ).all()
    assert [(e.action, e.actor_id) for e in entries] == [
        ("review.hidden", operator.id),
        ("review.shown", admin.id),
    ]
    assert entries[0].entity_id == abusive["id"]
    assert entries[0].data["reason"] == "insults"
    assert entries[0].data["movieId"] == setup.movie_id


# ---------------------------------------------------------------------------------------------
# Races


async def test_concurrent_reviews_keep_count_and_average_exact(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    setup = await audience(app, client, 16)
    ratings = [(index * 7) % 5 + 1 for index in range(16)]
    responses = await asyncio.gather(
        *(
            post(client, setup.movie_id, customer, rating, f"Take {index}")
            for index, (customer, rating) in enumerate(zip(setup.customers, ratings, strict=True))
        )
    )
    assert [r.status_code for r in responses] == [201] * 16, [r.text for r in responses]
    movie = await movie_of(client, setup.movie_id)
    assert movie["reviewCount"] == 16
    assert movie["averageRating"] == exact_average(ratings)
    await assert_aggregates(app, client, setup.movie_id)


async def test_a_concurrent_double_post_creates_one_review(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    setup = await audience(app, client, 1)
    customer = setup.customers[0]
    responses = await asyncio.gather(
        *(post(client, setup.movie_id, customer, 3 + i % 2, f"Twice {i}") for i in range(6))
    )
    statuses = sorted(r.status_code for r in responses)
    assert statuses == [201, 409, 409, 409, 409, 409], [r.text for r in responses]
    for response in responses:
        if response.status_code == 409:
            assert response.json()["code"] == "already_reviewed"
    async with app.state.db.session() as session:
        count = await session.scalar(
            select(func.count()).select_from(Review).where(Review.user_id == customer.id)
        )
    assert count == 1
    assert (await movie_of(client, setup.movie_id))["reviewCount"] == 1
    await assert_aggregates(app, client, setup.movie_id)


async def test_concurrent_posts_edits_and_hides_keep_the_aggregates_exact(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    setup = await audience(app, client, 12)
    first, rest = setup.customers[:6], setup.customers[6:]
    existing = [await posted(client, setup.movie_id, c, 3) for c in first]
    operator = await make_user(app, "operator")
    calls = [post(client, setup.movie_id, c, 5) for c in rest]
    for index, (customer, review) in enumerate(zip(first, existing, strict=True)):
        calls.append(
            client.patch(
                f"{reviews_url(setup.movie_id)}/{review['id']}",
                json={"rating": 1 + index % 5},
                headers=customer.headers,
            )
        )
        if index % 2 == 0:
            calls.append(
                client.patch(
                    f"/api/admin/reviews/{review['id']}",
                    json={"hidden": True},
                    headers=operator.headers,
                )
            )
    responses = await asyncio.gather(*calls)
    assert all(r.status_code in (200, 201) for r in responses), [r.text for r in responses]
    movie = await movie_of(client, setup.movie_id)
    assert movie["reviewCount"] == 6 + 3  # six new, three of the first six hidden
    await assert_aggregates(app, client, setup.movie_id)


async def test_concurrent_helpful_votes_count_each_customer_once(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    setup = await audience(app, client, 1)
    review = await posted(client, setup.movie_id, setup.customers[0])
    voters = [await make_user(app) for _ in range(8)]
    url = f"{reviews_url(setup.movie_id)}/{review['id']}/helpful"
    # Each voter twice, all at once.
    responses = await asyncio.gather(
        *(client.post(url, headers=voter.headers) for voter in voters + voters)
    )
    assert [r.status_code for r in responses] == [200] * 16, [r.text for r in responses]
    async with app.state.db.session() as session:
        votes = await session.scalar(
            select(func.count())
            .select_from(ReviewVote)
            .where(ReviewVote.review_id == uuid.UUID(review["id"]))
        )
        stored = await session.get(Review, uuid.UUID(review["id"]))
        assert stored is not None
    assert votes == 8
    assert stored.helpful_count == 8
    assert (await listed(client, setup.movie_id))["reviews"][0]["helpfulCount"] == 8


async def test_reviews_go_with_their_showtimes_movie(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    """A ticket counts for the movie of its showtime, whichever screen or day."""
    setup = await audience(app, client, 1)
    async with app.state.db.session() as session:
        showtime = await session.get(Showtime, setup.showtime_id)
        assert showtime is not None
        assert str(showtime.movie_id) == setup.movie_id
    await posted(client, setup.movie_id, setup.customers[0], 5)
    await assert_aggregates(app, client, setup.movie_id)
