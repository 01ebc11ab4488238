"""The benchmark's data set: one city of 10 theaters, 40 screens, 500 showtimes, customers.

Built through boxoffice's own services (so the rows are what the API would have written),
except the customers: they are inserted in one statement with a placeholder password hash and
get access tokens minted with the server's secret, because the benchmark never logs them in.
"""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import asdict, dataclass, field
from decimal import Decimal
from typing import Any

from sqlalchemy import insert, select

from boxoffice.accounts.models import User
from boxoffice.catalog.schemas import MovieCreate
from boxoffice.catalog.service import create_movie
from boxoffice.core.db import Database
from boxoffice.core.security import create_access_token
from boxoffice.demo import _grid, _imax_layout
from boxoffice.scheduling.service import create_showtime
from boxoffice.venues.models import Seat
from boxoffice.venues.service import create_city, create_screen, create_theater

THEATERS = 10
SCREENS_PER_THEATER = 4
SHOWTIMES = 500
CUSTOMERS = 2000
MOVIES = 40

# Hall layouts cycled over each theater's screens: the 300-seat IMAX (aisles, wheelchair,
# couple and premium seats) and three plain grids.
LAYOUTS: list[tuple[str, dict[str, Any]]] = [
    ("IMAX", _imax_layout()),
    ("STANDARD", _grid(12, 16, [4, 12], {"L": "couple"})),
    ("STANDARD", _grid(10, 14, [7], {"J": "premium"})),
    ("VIP", _grid(6, 10, [5], dict.fromkeys("ABCDEF", "vip"))),
]

WORDS = (
    "Harbor Ember Lantern Meridian Quiet Falcon Velvet Summit Copper Hollow Northern Paper "
    "Glass Winter Silent Crimson Atlas Drift Signal Orchard"
).split()
GENRES = ("drama", "comedy", "thriller", "science fiction", "animation", "romance", "horror")


@dataclass
class ShowtimeData:
    id: str
    hall_type: str
    labels: list[str]


@dataclass
class Dataset:
    showtimes: list[ShowtimeData] = field(default_factory=list)
    imax_showtimes: list[str] = field(default_factory=list)
    customers: list[tuple[str, str]] = field(default_factory=list)  # (user id, access token)
    search_terms: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


async def build(database: Database, secret: str, token_ttl: int = 4 * 3600) -> Dataset:
    """Create the data set in an empty (migrated) database."""
    data = Dataset()
    now = dt.datetime.now(dt.UTC).replace(second=0, microsecond=0)
    async with database.session() as session:
        city = await create_city(session, name="Benchmark City", timezone="Europe/Berlin")
        screens = []
        for t in range(THEATERS):
            theater = await create_theater(
                session,
                name=f"Bench Theater {t + 1}",
                location=f"{t + 1} Main Street",
                city_id=city.id,
                currency="EUR",
            )
            for s in range(SCREENS_PER_THEATER):
                hall_type, layout = LAYOUTS[s % len(LAYOUTS)]
                screens.append(
                    await create_screen(
                        session,
                        theater_id=theater.id,
                        screen_number=s + 1,
                        name=f"Screen {s + 1}",
                        hall_type=hall_type,
                        layout=layout,
                    )
                )
        movies = []
        for m in range(MOVIES):
            title = f"{WORDS[m % len(WORDS)]} {WORDS[(m * 7 + 3) % len(WORDS)]} {m + 1}"
            movies.append(
                await create_movie(
                    session,
                    MovieCreate(
                        title=title,
                        duration=90 + (m * 7) % 60,
                        genres=[GENRES[m % len(GENRES)]],
                        director=f"Director {WORDS[(m * 3) % len(WORDS)]}",
                        cast=[f"Actor {WORDS[(m * 5 + 1) % len(WORDS)]}"],
                        release_date=(now - dt.timedelta(days=10)).date(),
                    ),
                )
            )
        data.search_terms = [w.lower() for w in WORDS[:10]]
        labels_by_screen: dict[uuid.UUID, list[str]] = {}
        for screen in screens:
            labels_by_screen[screen.id] = list(
                (
                    await session.scalars(
                        select(Seat.label).where(Seat.screen_id == screen.id).order_by(Seat.label)
                    )
                ).all()
            )
        # 500 showtimes, 3 h 15 apart per screen, starting tomorrow (on sale all through the run).
        start = now + dt.timedelta(days=1)
        for n in range(SHOWTIMES):
            screen = screens[n % len(screens)]
            slot = n // len(screens)
            showtime = await create_showtime(
                session,
                movie_id=movies[n % len(movies)].id,
                screen_id=screen.id,
                start_time=start + dt.timedelta(minutes=195 * slot),
                base_price=Decimal("11.50"),
            )
            item = ShowtimeData(str(showtime.id), screen.hall_type, labels_by_screen[screen.id])
            data.showtimes.append(item)
            if screen.hall_type == "IMAX":
                data.imax_showtimes.append(item.id)
        customers = [
            {
                "id": uuid.uuid4(),
                "email": f"bench{i}@customers.invalid",
                "password_hash": "!benchmark-account-without-password",
                "full_name": f"Bench Customer {i}",
                "role": "customer",
                "is_active": True,
                "email_verified_at": now,
                "mfa_enabled": False,
                "created_at": now,
                "updated_at": now,
            }
            for i in range(CUSTOMERS)
        ]
        await session.execute(insert(User), customers)
    data.customers = [
        (str(c["id"]), create_access_token(secret, c["id"], "customer", token_ttl))
        for c in customers
    ]
    return data
