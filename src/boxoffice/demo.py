"""Demo data: a small cinema chain to explore the API with (`boxoffice demo`, idempotent).

Two cities, three theaters, six halls (a VIP hall and a 300-seat IMAX hall with wheelchair
spaces, couple seats and aisles among them), eight films and a week of showtimes from today,
plus one account per role. Running it again adds only what is missing (e.g. the next days'
showtimes).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from boxoffice.accounts.models import User
from boxoffice.accounts.service import create_user
from boxoffice.catalog.models import Movie
from boxoffice.catalog.schemas import MovieCreate
from boxoffice.catalog.service import create_movie
from boxoffice.concessions.models import Snack
from boxoffice.concessions.schemas import SnackCreate
from boxoffice.concessions.service import create_snack
from boxoffice.core.clock import utcnow
from boxoffice.distribution.models import Contract, Distributor
from boxoffice.distribution.schemas import ContractCreate, DistributorCreate
from boxoffice.distribution.service import create_contract, create_distributor
from boxoffice.pricing.models import PricingRule, RuleKind
from boxoffice.pricing.service import create_rule
from boxoffice.promotions.models import PromoCode, PromoKind
from boxoffice.promotions.schemas import PromoCodeCreate
from boxoffice.promotions.service import create_code
from boxoffice.scheduling.models import Showtime
from boxoffice.scheduling.service import create_showtime
from boxoffice.venues.models import City, Screen, Theater
from boxoffice.venues.service import create_city, create_screen, create_theater

DAYS = 7


@dataclass(frozen=True)
class DemoAccount:
    role: str
    email: str
    password: str
    full_name: str


DEMO_ACCOUNTS = (
    DemoAccount("admin", "admin@boxoffice.local", "Directors-Cut-2026", "Ada Admin"),
    DemoAccount("operator", "operator@boxoffice.local", "Matinee-Shift-2026", "Otto Operator"),
    DemoAccount("cashier", "cashier@boxoffice.local", "Ticket-Stub-2026", "Cleo Cashier"),
    DemoAccount("customer", "customer@boxoffice.local", "Front-Row-Seat-2026", "Chris Customer"),
)

CITIES = (("Berlin", "Europe/Berlin"), ("London", "Europe/London"))


def _imax_layout() -> dict[str, Any]:
    """15 rows x 20 seats = 300: aisles after seats 4 and 16, wheelchair spaces with companion
    seats in row A, premium seats in the middle block of rows H-M, couple seats in row O."""
    rows = []
    for index in range(15):
        label = chr(ord("A") + index)
        seats = []
        for number in range(1, 21):
            position = number + (number > 4) + (number > 16)  # two aisle gaps
            seat_class = "standard"
            if label == "A" and number in (1, 2, 19, 20):
                seat_class = "wheelchair" if number in (1, 20) else "standard"
            elif label == "O":
                seat_class = "couple"
            elif "H" <= label <= "M" and 5 <= number <= 16:
                seat_class = "premium"
            seats.append({"number": number, "class": seat_class, "position": position})
        rows.append({"row": label, "seats": seats})
    return {"rows": rows}


def _grid(
    rows: int, seats: int, aisles: list[int], classes: dict[str, str] | None = None
) -> dict[str, Any]:
    return {
        "grid": {
            "rows": rows,
            "seatsPerRow": seats,
            "aislesAfter": aisles,
            "classes": classes or {},
        }
    }


# theater name -> (city, location, currency, [(number, name, hall type, layout)])
THEATERS: dict[str, tuple[str, str, str, list[tuple[int, str, str, dict[str, Any]]]]] = {
    "Kino am Kanal": (
        "Berlin",
        "Paul-Lincke-Ufer 12, 10999 Berlin",
        "EUR",
        [
            (1, "Saal 1", "STANDARD", _grid(10, 14, [7], {"J": "premium"})),
            (2, "Saal 2", "STANDARD", _grid(8, 12, [6])),
        ],
    ),
    "Spreeblick Cinemas": (
        "Berlin",
        "Stralauer Allee 3, 10245 Berlin",
        "EUR",
        [
            (1, "IMAX", "IMAX", _imax_layout()),
            (2, "Lounge", "VIP", _grid(6, 10, [5], dict.fromkeys("ABCDEF", "vip"))),
        ],
    ),
    "Riverside Picturehouse": (
        "London",
        "14 Bankside, London SE1 9TG",
        "GBP",
        [
            (1, "Screen 1", "STANDARD", _grid(12, 16, [4, 12], {"L": "couple"})),
            (2, "Screen 2", "4DX", _grid(7, 10, [5])),
        ],
    ),
}

MOVIES: tuple[dict[str, Any], ...] = (
    {
        "title": "The Lighthouse Keeper",
        "duration": 118,
        "rating": "PG-13",
        "genres": ["drama", "mystery"],
        "director": "Mara Ellison",
        "cast": ["Idris Vane", "Lena Obradovic", "Tom Hale"],
        "days_out": -20,
    },
    {
        "title": "Orbit of Ash",
        "duration": 142,
        "rating": "PG-13",
        "genres": ["science fiction", "adventure"],
        "director": "Kenji Arakawa",
        "cast": ["Sofia Marin", "Dev Patel-Rowe", "Ana Lucas"],
        "days_out": -6,
    },
    {
        "title": "Paper Tigers",
        "duration": 96,
        "rating": "PG",
        "genres": ["comedy", "family"],
        "director": "Ruth Okafor",
        "cast": ["Jamie Crane", "Pia Lindqvist"],
        "days_out": -13,
    },
    {
        "title": "Midnight at the Marigold",
        "duration": 124,
        "rating": "R",
        "genres": ["thriller", "crime"],
        "director": "Luc Benoit",
        "cast": ["Helena Ward", "Marcus Bell", "Yuki Sato"],
        "days_out": -2,
    },
    {
        "title": "The Last Cartographer",
        "duration": 151,
        "rating": "PG-13",
        "genres": ["adventure", "history"],
        "director": "Ines Carvalho",
        "cast": ["Oren Cole", "Mira Stone"],
        "days_out": -27,
    },
    {
        "title": "Small Hours",
        "duration": 102,
        "rating": "PG-13",
        "genres": ["romance", "drama"],
        "director": "Nadia Haddad",
        "cast": ["Eli Park", "Rosa Jensen"],
        "days_out": -9,
    },
    {
        "title": "Kestrel Rising",
        "duration": 109,
        "rating": "G",
        "genres": ["animation", "family"],
        "director": "Piotr Nowak",
        "cast": ["Voice of Amara Diallo", "Voice of Ben Fischer"],
        "days_out": -1,
    },
    {
        "title": "Salt and Stone",
        "duration": 133,
        "rating": "R",
        "genres": ["war", "drama"],
        "director": "Aksel Berg",
        "cast": ["Finn Morgan", "Lea Novak", "Sam Reyes"],
        "days_out": 10,
    },
)

# Local start times; with films up to 151 min + 30 min ads and cleaning, 3 h 15 apart never clash.
SLOTS = (dt.time(11, 30), dt.time(14, 45), dt.time(18, 0), dt.time(21, 15))
MATINEE_PRICE = Decimal("9.50")
EVENING_PRICE = Decimal("12.50")


async def _ensure_accounts(session: AsyncSession) -> int:
    created = 0
    for account in DEMO_ACCOUNTS:
        if await session.scalar(select(User.id).where(User.email == account.email)) is None:
            await create_user(
                session,
                email=account.email,
                password=account.password,
                full_name=account.full_name,
                role=account.role,
                verified=True,
            )
            created += 1
    return created


async def _ensure_venues(session: AsyncSession) -> list[tuple[Theater, Screen]]:
    cities: dict[str, City] = {}
    for name, timezone in CITIES:
        city = await session.scalar(select(City).where(City.name == name))
        cities[name] = city or await create_city(session, name=name, timezone=timezone)
    halls: list[tuple[Theater, Screen]] = []
    for theater_name, (city_name, location, currency, screens) in THEATERS.items():
        city = cities[city_name]
        theater = await session.scalar(
            select(Theater).where(Theater.city_id == city.id, Theater.name == theater_name)
        )
        if theater is None:
            theater = await create_theater(
                session, city_id=city.id, name=theater_name, location=location, currency=currency
            )
        for number, screen_name, hall_type, layout in screens:
            screen = await session.scalar(
                select(Screen).where(
                    Screen.theater_id == theater.id, Screen.screen_number == number
                )
            )
            if screen is None:
                screen = await create_screen(
                    session,
                    theater_id=theater.id,
                    screen_number=number,
                    name=screen_name,
                    hall_type=hall_type,
                    layout=layout,
                )
            halls.append((theater, screen))
    return halls


async def _ensure_movies(session: AsyncSession, today: dt.date) -> list[Movie]:
    movies: list[Movie] = []
    for spec in MOVIES:
        movie = await session.scalar(select(Movie).where(Movie.title == spec["title"]))
        if movie is None:
            fields = {k: v for k, v in spec.items() if k != "days_out"}
            release = today + dt.timedelta(days=spec["days_out"])
            movie = await create_movie(
                session,
                MovieCreate(
                    **fields,
                    release_date=release,
                    description=f"{spec['title']}: a boxoffice demo film.",
                    language="en",
                ),
            )
        movies.append(movie)
    return movies


async def _ensure_showtimes(
    session: AsyncSession, halls: list[tuple[Theater, Screen]], movies: list[Movie]
) -> int:
    now = utcnow()
    playing = [m for m in movies if m.status == "now_showing"]
    existing = {
        (screen_id, start)
        for screen_id, start in (
            await session.execute(
                select(Showtime.screen_id, Showtime.start_time).where(Showtime.start_time >= now)
            )
        ).all()
    }
    created = 0
    for hall_index, (theater, screen) in enumerate(halls):
        zone = ZoneInfo(theater.timezone)
        local_today = now.astimezone(zone).date()
        for day in range(DAYS):
            date = local_today + dt.timedelta(days=day)
            for slot_index, slot in enumerate(SLOTS):
                start = dt.datetime.combine(date, slot, tzinfo=zone).astimezone(dt.UTC)
                if start <= now or (screen.id, start) in existing:
                    continue
                movie = playing[(hall_index * 3 + day + slot_index) % len(playing)]
                if screen.hall_type == "IMAX":
                    movie = playing[(day + slot_index) % 2]  # the blockbusters
                await create_showtime(
                    session,
                    movie_id=movie.id,
                    screen_id=screen.id,
                    start_time=start,
                    base_price=MATINEE_PRICE if slot < dt.time(17) else EVENING_PRICE,
                    format="IMAX" if screen.hall_type == "IMAX" else "2D",
                    language="en",
                    subtitles="de" if theater.currency == "EUR" else None,
                )
                created += 1
    return created


# Distributors and their rental terms: films alternate between them; each film has one
# contract per currency the demo sells in (a contract settles the shows sold in its currency).
DISTRIBUTORS = (
    ("Silver Screen Distribution", "accounts@silverscreen.example", "Friedrichstr. 1, Berlin"),
    ("Lighthouse Pictures", "settlements@lighthouse.example", "1 Wardour St, London"),
)
CONTRACT_TERMS = (
    [Decimal(60), Decimal(55), Decimal(50), Decimal(45), Decimal(40), Decimal(35)],
    [Decimal(50), Decimal(45), Decimal(40), Decimal(35)],
)


async def _ensure_contracts(session: AsyncSession, movies: list[Movie], today: dt.date) -> int:
    """A distributor per film and a year-long contract per currency for films without one;
    returns how many contracts it added."""
    admin_id = await session.scalar(select(User.id).where(User.role == "admin").limit(1))
    distributors: list[Distributor] = []
    for name, email, address in DISTRIBUTORS:
        distributor = await session.scalar(select(Distributor).where(Distributor.name == name))
        if distributor is None:
            distributor = await create_distributor(
                session,
                DistributorCreate(name=name, contact_email=email, address=address),
                admin_id,
            )
        distributors.append(distributor)
    added = 0
    for index, movie in enumerate(movies):
        if await session.scalar(select(Contract.id).where(Contract.movie_id == movie.id)):
            continue
        start = min(movie.release_date or today, today)
        for currency in VAT_RATES:
            await create_contract(
                session,
                ContractCreate(
                    distributor_id=distributors[index % 2].id,
                    movie_id=movie.id,
                    start_date=start,
                    end_date=start + dt.timedelta(days=365),
                    week_start_weekday=3,  # Thursday, release day
                    terms=CONTRACT_TERMS[index % 2],
                    house_allowance=Decimal("1500.00") if index % 2 == 0 else None,
                    minimum_guarantee=Decimal("2500.00") if index % 4 == 1 else None,
                    currency=currency,
                ),
                admin_id,
            )
            added += 1
    return added


# VAT contained in ticket prices by currency (the demo's countries: Germany 7%, UK 20%).
VAT_RATES = {"EUR": Decimal("0.07"), "GBP": Decimal("0.20")}

# (name, category, price, stock: None = not counted)
SNACKS = (
    ("Popcorn, small", "popcorn", Decimal("4.50"), None),
    ("Popcorn, large", "popcorn", Decimal("6.50"), None),
    ("Nachos with cheese", "snacks", Decimal("5.50"), 40),
    ("Cola 0.5 l", "drinks", Decimal("3.50"), 200),
    ("Sparkling water 0.5 l", "drinks", Decimal("3.00"), 200),
)


async def _ensure_commerce(session: AsyncSession, halls: list[tuple[Theater, Screen]]) -> int:
    """VAT rates, a snack menu, a weekend surcharge and a welcome code; returns how many of
    the snacks, rules and codes it added."""
    for theater, _screen in halls:
        if theater.currency in VAT_RATES and not theater.vat_rate:
            theater.vat_rate = VAT_RATES[theater.currency]
    admin = await session.scalar(select(User).where(User.role == "admin").limit(1))
    assert admin is not None  # the demo accounts come first
    added = 0
    for name, category, price, stock in SNACKS:
        if await session.scalar(select(Snack.id).where(Snack.name == name)) is None:
            data = SnackCreate(name=name, category=category, price=price, stock=stock)
            await create_snack(session, data, admin.id)
            added += 1
    weekend = "Weekend evenings"
    if await session.scalar(select(PricingRule.id).where(PricingRule.name == weekend)) is None:
        await create_rule(
            session,
            {
                "name": weekend,
                "kind": RuleKind.SURCHARGE,
                "value": Decimal("1.50"),
                "days_of_week": [4, 5],  # Friday and Saturday, theater-local
                "time_from": dt.time(18),
                "priority": 10,
            },
            actor_id=admin.id,
        )
        added += 1
    if await session.scalar(select(PromoCode.id).where(PromoCode.code == "WELCOME10")) is None:
        await create_code(
            session,
            PromoCodeCreate(
                code="WELCOME10",
                description="10% off a first booking",
                kind=PromoKind.PERCENTAGE,
                value=Decimal("10"),
                first_booking_only=True,
            ),
            admin,
        )
        added += 1
    return added


async def load_demo(session: AsyncSession) -> str:
    """Create whatever part of the demo data is missing; returns a one-line summary."""
    accounts = await _ensure_accounts(session)
    halls = await _ensure_venues(session)
    movies = await _ensure_movies(session, utcnow().date())
    contracts = await _ensure_contracts(session, movies, utcnow().date())
    showtimes = await _ensure_showtimes(session, halls, movies)
    commerce = await _ensure_commerce(session, halls)
    return (
        f"demo data ready: {len(CITIES)} cities, {len(THEATERS)} theaters, {len(halls)} screens, "
        f"{len(movies)} movies; added {accounts} accounts, {showtimes} showtimes and "
        f"{commerce} snacks, pricing rules and promo codes; {contracts} rental contracts"
    )
