"""Movies: admin CRUD, validation, public list with search, filters and pagination."""

from __future__ import annotations

import datetime as dt
import uuid
from decimal import Decimal
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from boxoffice.catalog.models import Movie
from boxoffice.core.clock import utcnow
from boxoffice.scheduling.models import Showtime
from boxoffice.venues.models import City, Screen, Theater
from tests.helpers import TestUser as AppUser  # aliased: pytest would collect "Test*"
from tests.helpers import make_user

ADMIN_MOVIES = "/api/admin/movies"


@pytest.fixture
async def admin(app: FastAPI, client: httpx.AsyncClient) -> AppUser:
    # Depends on `client` so the user is created after the tables were emptied.
    return await make_user(app, "admin")


async def add_movie(client: httpx.AsyncClient, admin: AppUser, **fields: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"title": "Untitled", "duration": 100, **fields}
    response = await client.post(ADMIN_MOVIES, json=body, headers=admin.headers)
    assert response.status_code == 201, response.text
    movie: dict[str, Any] = response.json()
    return movie


async def titles(client: httpx.AsyncClient, **params: Any) -> list[str]:
    response = await client.get("/api/movies", params=params)
    assert response.status_code == 200, response.text
    return [m["title"] for m in response.json()["movies"]]


# ---------------------------------------------------------------------------------------------
# Admin CRUD


async def test_admin_creates_reads_updates_and_deletes_a_movie(
    client: httpx.AsyncClient, admin: AppUser
) -> None:
    body = {
        "title": "Dune: Part Two",
        "description": "Paul Atreides unites with the Fremen.",
        "duration": 166,
        "rating": "PG-13",
        "genres": ["Sci-Fi", "Adventure"],
        "cast": ["Timothée Chalamet", "Zendaya"],
        "director": "Denis Villeneuve",
        "releaseDate": "2024-03-01",
        "language": "en",
        "posterUrl": "https://img.example.com/dune2.jpg",
        "backdropUrl": "https://img.example.com/dune2-wide.jpg",
        "trailerUrl": "http://video.example.com/dune2",
        "status": "now_showing",
    }
    created = await client.post(ADMIN_MOVIES, json=body, headers=admin.headers)
    assert created.status_code == 201, created.text
    movie = created.json()
    uuid.UUID(movie["id"])
    assert movie == {
        "id": movie["id"],
        **body,
        "genres": ["sci-fi", "adventure"],
        "averageRating": None,
        "reviewCount": 0,
    }

    # The admin read and the public read give the same document.
    admin_read = await client.get(f"{ADMIN_MOVIES}/{movie['id']}", headers=admin.headers)
    assert admin_read.status_code == 200
    assert admin_read.json() == movie
    public_read = await client.get(f"/api/movies/{movie['id']}")
    assert public_read.status_code == 200
    assert public_read.json() == movie

    patched = await client.patch(
        f"{ADMIN_MOVIES}/{movie['id']}",
        json={"duration": 170, "trailerUrl": None, "status": "ended"},
        headers=admin.headers,
    )
    assert patched.status_code == 200, patched.text
    assert patched.json() == {**movie, "duration": 170, "trailerUrl": None, "status": "ended"}
    reread = await client.get(f"/api/movies/{movie['id']}")
    assert reread.json() == patched.json()

    deleted = await client.delete(f"{ADMIN_MOVIES}/{movie['id']}", headers=admin.headers)
    assert deleted.status_code == 204
    assert deleted.content == b""
    gone = await client.get(f"/api/movies/{movie['id']}")
    assert gone.status_code == 404
    assert gone.json()["code"] == "not_found"


async def test_minimal_movie_gets_empty_defaults(client: httpx.AsyncClient, admin: AppUser) -> None:
    movie = await add_movie(client, admin, title="Short", duration=1)
    assert movie == {
        "id": movie["id"],
        "title": "Short",
        "description": "",
        "duration": 1,
        "rating": "",
        "genres": [],
        "cast": [],
        "director": "",
        "releaseDate": None,
        "posterUrl": None,
        "backdropUrl": None,
        "trailerUrl": None,
        "status": "now_showing",
        "language": None,
        "averageRating": None,
        "reviewCount": 0,
    }
    listed = (await client.get("/api/movies")).json()["movies"]
    assert [(m["title"], m["genres"], m["cast"]) for m in listed] == [("Short", [], [])]


async def test_status_defaults_from_the_release_date(
    client: httpx.AsyncClient, admin: AppUser
) -> None:
    today = utcnow().date()
    future = await add_movie(client, admin, releaseDate=str(today + dt.timedelta(days=30)))
    past = await add_movie(client, admin, releaseDate=str(today - dt.timedelta(days=30)))
    chosen = await add_movie(
        client, admin, releaseDate=str(today + dt.timedelta(days=30)), status="now_showing"
    )
    assert future["status"] == "upcoming"
    assert past["status"] == "now_showing"
    assert chosen["status"] == "now_showing"


async def test_genres_are_lower_cased_deduplicated_and_keep_their_order(
    client: httpx.AsyncClient, admin: AppUser
) -> None:
    movie = await add_movie(client, admin, genres=["Thriller", " DRAMA ", "thriller", "Crime"])
    assert movie["genres"] == ["thriller", "drama", "crime"]

    url = f"{ADMIN_MOVIES}/{movie['id']}"
    reordered = await client.patch(
        url, json={"genres": ["Crime", "Noir", "thriller"]}, headers=admin.headers
    )
    assert reordered.status_code == 200, reordered.text
    assert reordered.json()["genres"] == ["crime", "noir", "thriller"]
    public = await client.get(f"/api/movies/{movie['id']}")
    assert public.json()["genres"] == ["crime", "noir", "thriller"]
    assert await titles(client, genre="drama") == []
    assert await titles(client, genre="noir") == ["Untitled"]


async def test_patch_changes_only_the_fields_sent(
    client: httpx.AsyncClient, admin: AppUser
) -> None:
    movie = await add_movie(
        client, admin, description="Long story.", director="Someone", genres=["drama"]
    )
    patched = await client.patch(
        f"{ADMIN_MOVIES}/{movie['id']}", json={"title": "New Title"}, headers=admin.headers
    )
    assert patched.json() == {**movie, "title": "New Title"}

    # null clears the optional text fields
    cleared = await client.patch(
        f"{ADMIN_MOVIES}/{movie['id']}",
        json={"description": None, "director": None},
        headers=admin.headers,
    )
    assert cleared.status_code == 200
    assert cleared.json()["description"] == ""
    assert cleared.json()["director"] == ""


async def test_unknown_movie_is_404_and_malformed_id_is_422(
    client: httpx.AsyncClient, admin: AppUser
) -> None:
    unknown = uuid.uuid4()
    for response in (
        await client.get(f"/api/movies/{unknown}"),
        await client.get(f"{ADMIN_MOVIES}/{unknown}", headers=admin.headers),
        await client.patch(
            f"{ADMIN_MOVIES}/{unknown}", json={"duration": 90}, headers=admin.headers
        ),
        await client.delete(f"{ADMIN_MOVIES}/{unknown}", headers=admin.headers),
    ):
        assert response.status_code == 404
        assert response.headers["content-type"] == "application/problem+json"
        assert response.json()["code"] == "not_found"

    malformed = await client.get("/api/movies/not-a-uuid")
    assert malformed.status_code == 422
    assert malformed.json()["code"] == "validation_error"


async def test_average_rating_and_review_count_are_shown(
    app: FastAPI, client: httpx.AsyncClient, admin: AppUser
) -> None:
    movie = await add_movie(client, admin)
    async with app.state.db.session() as session:
        row = await session.get(Movie, uuid.UUID(movie["id"]))
        row.average_rating = Decimal("4.25")
        row.review_count = 8
    response = await client.get(f"/api/movies/{movie['id']}")
    assert response.json()["averageRating"] == 4.25
    assert response.json()["reviewCount"] == 8


# ---------------------------------------------------------------------------------------------
# Who may change the catalog


@pytest.mark.parametrize("role", ["customer", "cashier", "operator"])
async def test_only_admins_may_manage_movies(
    app: FastAPI, client: httpx.AsyncClient, admin: AppUser, role: str
) -> None:
    movie = await add_movie(client, admin)
    staff = await make_user(app, role)
    one = f"{ADMIN_MOVIES}/{movie['id']}"
    calls = [
        ("POST", ADMIN_MOVIES, {"title": "X", "duration": 90}),
        ("GET", one, None),
        ("PATCH", one, {"title": "Hacked"}),
        ("DELETE", one, None),
    ]
    for method, url, body in calls:
        anonymous = await client.request(method, url, json=body)
        assert anonymous.status_code == 401, (method, url)
        assert anonymous.json()["code"] == "not_authenticated"
        forbidden = await client.request(method, url, json=body, headers=staff.headers)
        assert forbidden.status_code == 403, (method, url)
        assert forbidden.json()["code"] == "forbidden"

    unchanged = await client.get(f"/api/movies/{movie['id']}")
    assert unchanged.json() == movie
    assert await titles(client) == ["Untitled"]


# ---------------------------------------------------------------------------------------------
# Validation


VALID = {"title": "Valid", "duration": 120}


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({**VALID, "duration": 0}, "duration"),
        ({**VALID, "duration": 601}, "duration"),
        ({**VALID, "duration": True}, "duration"),
        ({**VALID, "duration": "90"}, "duration"),
        ({"title": "No duration"}, "duration"),
        ({**VALID, "title": ""}, "title"),
        ({**VALID, "title": "x" * 301}, "title"),
        ({**VALID, "title": "nul\u0000byte"}, "title"),
        ({**VALID, "posterUrl": "not a url"}, "posterUrl"),
        ({**VALID, "trailerUrl": "ftp://example.com/trailer"}, "trailerUrl"),
        ({**VALID, "backdropUrl": "https://example.com/" + "x" * 500}, "backdropUrl"),
        ({**VALID, "genres": [f"genre{i}" for i in range(11)]}, "genres"),
        ({**VALID, "genres": ["x" * 41]}, "genres.0"),
        ({**VALID, "genres": [""]}, "genres.0"),
        ({**VALID, "cast": ["Actor"] * 51}, "cast"),
        ({**VALID, "cast": ["x" * 201]}, "cast.0"),
        ({**VALID, "rating": "x" * 17}, "rating"),
        ({**VALID, "releaseDate": "2024-13-45"}, "releaseDate"),
        ({**VALID, "releaseDate": "next friday"}, "releaseDate"),
        ({**VALID, "status": "playing"}, "status"),
        ({**VALID, "language": "english please"}, "language"),
        ({**VALID, "boxOffice": 1_000_000}, "boxOffice"),
    ],
)
async def test_invalid_movie_is_422(
    client: httpx.AsyncClient, admin: AppUser, body: dict[str, Any], field: str
) -> None:
    response = await client.post(ADMIN_MOVIES, json=body, headers=admin.headers)
    assert response.status_code == 422, response.text
    problem = response.json()
    assert problem["code"] == "validation_error"
    assert field in [error["field"] for error in problem["errors"]]
    assert await titles(client) == []


async def test_malformed_json_is_400(client: httpx.AsyncClient, admin: AppUser) -> None:
    response = await client.post(
        ADMIN_MOVIES,
        content=b'{"title": "Broken", "duration": ',
        headers={**admin.headers, "Content-Type": "application/json"},
    )
    assert response.status_code == 400
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["code"] == "malformed_json"


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ({"title": None}, "validation_error"),
        ({"duration": None}, "validation_error"),
        ({"genres": None}, "validation_error"),
        ({"duration": 0}, "validation_error"),
        ({"unknown": 1}, "validation_error"),
        ({}, "empty_update"),
    ],
)
async def test_invalid_patch_is_422_and_changes_nothing(
    client: httpx.AsyncClient, admin: AppUser, body: dict[str, Any], code: str
) -> None:
    movie = await add_movie(client, admin, genres=["drama"])
    response = await client.patch(f"{ADMIN_MOVIES}/{movie['id']}", json=body, headers=admin.headers)
    assert response.status_code == 422, response.text
    assert response.json()["code"] == code
    assert (await client.get(f"/api/movies/{movie['id']}")).json() == movie


# ---------------------------------------------------------------------------------------------
# Search, filters, pagination


async def test_search_matches_title_director_and_cast_case_insensitively(
    client: httpx.AsyncClient, admin: AppUser
) -> None:
    await add_movie(
        client,
        admin,
        title="Alien",
        director="Ridley Scott",
        cast=["Sigourney Weaver", "Tom Skerritt"],
    )
    await add_movie(client, admin, title="Arrival", director="Denis Villeneuve", cast=["Amy Adams"])
    await add_movie(
        client, admin, title="The Martian", director="Ridley Scott", cast=["Matt Damon"]
    )

    assert await titles(client, search="ALIEN") == ["Alien"]
    assert await titles(client, search="arriv") == ["Arrival"]
    assert sorted(await titles(client, search="ridley SCOTT")) == ["Alien", "The Martian"]
    assert await titles(client, search="weaver") == ["Alien"]
    assert await titles(client, search="  amy adams ") == ["Arrival"]
    assert await titles(client, search="nolan") == []
    # An empty search term does not filter.
    assert len(await titles(client, search="")) == 3


async def test_search_treats_like_wildcards_literally(
    client: httpx.AsyncClient, admin: AppUser
) -> None:
    await add_movie(client, admin, title="100% Wolf")
    await add_movie(client, admin, title="1000 Wolves")
    await add_movie(client, admin, title="File_Name")
    await add_movie(client, admin, title="FileXName")
    await add_movie(client, admin, title="Back/Slash")

    assert await titles(client, search="%") == ["100% Wolf"]
    assert await titles(client, search="100%") == ["100% Wolf"]
    assert await titles(client, search="0% w") == ["100% Wolf"]
    assert await titles(client, search="_") == ["File_Name"]
    assert await titles(client, search="file_name") == ["File_Name"]
    assert await titles(client, search="/") == ["Back/Slash"]
    assert await titles(client, search="\\") == []


async def test_search_rejects_control_characters_and_overlong_terms(
    client: httpx.AsyncClient,
) -> None:
    for params in ({"search": "a\u0000b"}, {"search": "x" * 101}, {"genre": "x" * 41}):
        response = await client.get("/api/movies", params=params)
        assert response.status_code == 422, params
        assert response.json()["code"] == "validation_error"


async def test_patch_keeps_search_in_step(client: httpx.AsyncClient, admin: AppUser) -> None:
    movie = await add_movie(client, admin, title="Working Title", director="Jane Doe")
    patched = await client.patch(
        f"{ADMIN_MOVIES}/{movie['id']}",
        json={"title": "Final Cut", "cast": ["John Smith"]},
        headers=admin.headers,
    )
    assert patched.status_code == 200
    assert await titles(client, search="working") == []
    assert await titles(client, search="final cut") == ["Final Cut"]
    assert await titles(client, search="smith") == ["Final Cut"]
    assert await titles(client, search="jane doe") == ["Final Cut"]  # untouched field


async def test_filter_by_genre_and_status(client: httpx.AsyncClient, admin: AppUser) -> None:
    await add_movie(client, admin, title="Drama Now", genres=["Drama"], status="now_showing")
    await add_movie(
        client, admin, title="Drama Soon", genres=["drama", "romance"], status="upcoming"
    )
    await add_movie(client, admin, title="Comedy Over", genres=["comedy"], status="ended")

    assert sorted(await titles(client, genre="DRAMA")) == ["Drama Now", "Drama Soon"]
    assert await titles(client, genre="Romance") == ["Drama Soon"]
    assert await titles(client, genre="horror") == []
    assert await titles(client, status="ended") == ["Comedy Over"]
    assert await titles(client, status="upcoming", genre="drama") == ["Drama Soon"]
    assert await titles(client, status="now_showing", genre="comedy") == []
    assert len(await titles(client)) == 3


async def test_invalid_status_filter_is_422(client: httpx.AsyncClient) -> None:
    response = await client.get("/api/movies", params={"status": "playing"})
    assert response.status_code == 422
    assert response.json()["code"] == "validation_error"


async def test_list_is_sorted_and_paginated(client: httpx.AsyncClient, admin: AppUser) -> None:
    await add_movie(client, admin, title="B 2020", releaseDate="2020-05-01")
    await add_movie(client, admin, title="Undated")
    await add_movie(client, admin, title="C 2023", releaseDate="2023-01-01")
    await add_movie(client, admin, title="A 2020", releaseDate="2020-05-01")
    await add_movie(client, admin, title="D 2021", releaseDate="2021-07-07")

    expected = ["C 2023", "D 2021", "A 2020", "B 2020", "Undated"]
    assert await titles(client) == expected

    pages = []
    for page in (1, 2, 3):
        response = await client.get("/api/movies", params={"page": page, "limit": 2})
        body = response.json()
        assert body["pagination"] == {"page": page, "limit": 2, "total": 5, "totalPages": 3}
        pages += [m["title"] for m in body["movies"]]
    assert pages == expected

    beyond = (await client.get("/api/movies", params={"page": 4, "limit": 2})).json()
    assert beyond["movies"] == []
    assert beyond["pagination"] == {"page": 4, "limit": 2, "total": 5, "totalPages": 3}

    filtered = (await client.get("/api/movies", params={"search": "2020", "limit": 1})).json()
    assert filtered["pagination"] == {"page": 1, "limit": 1, "total": 2, "totalPages": 2}

    empty = (await client.get("/api/movies", params={"search": "nothing"})).json()
    assert empty == {
        "movies": [],
        "pagination": {"page": 1, "limit": 20, "total": 0, "totalPages": 0},
    }
    too_many = await client.get("/api/movies", params={"limit": 101})
    assert too_many.status_code == 422


# ---------------------------------------------------------------------------------------------
# Deleting a movie that is scheduled


async def add_showtime(app: FastAPI, movie_id: str) -> None:
    """A showtime row straight through the models (the venues API is not ours)."""
    async with app.state.db.session() as session:
        city = City(name="Berlin", timezone="Europe/Berlin")
        session.add(city)
        await session.flush()
        theater = Theater(city_id=city.id, name="Kino", timezone="Europe/Berlin", currency="EUR")
        session.add(theater)
        await session.flush()
        screen = Screen(
            theater_id=theater.id,
            screen_number=1,
            name="Saal 1",
            hall_type="STANDARD",
            layout={"rows": []},
            capacity=0,
        )
        session.add(screen)
        await session.flush()
        start = utcnow() + dt.timedelta(days=1)
        session.add(
            Showtime(
                movie_id=uuid.UUID(movie_id),
                screen_id=screen.id,
                theater_id=theater.id,
                start_time=start,
                end_time=start + dt.timedelta(hours=2),
                base_price=Decimal("12.50"),
                currency="EUR",
            )
        )


async def test_a_movie_with_showtimes_cannot_be_deleted(
    app: FastAPI, client: httpx.AsyncClient, admin: AppUser
) -> None:
    movie = await add_movie(client, admin, title="Scheduled")
    await add_showtime(app, movie["id"])

    response = await client.delete(f"{ADMIN_MOVIES}/{movie['id']}", headers=admin.headers)
    assert response.status_code == 409
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["code"] == "movie_in_use"
    assert (await client.get(f"/api/movies/{movie['id']}")).status_code == 200

    # The way out is to end its run.
    ended = await client.patch(
        f"{ADMIN_MOVIES}/{movie['id']}", json={"status": "ended"}, headers=admin.headers
    )
    assert ended.json()["status"] == "ended"
    assert await titles(client, status="ended") == ["Scheduled"]
