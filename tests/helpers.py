"""Test data helpers: users with tokens, straight through the account service."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from fastapi import FastAPI

from boxoffice.accounts.service import create_user
from boxoffice.core.security import create_access_token

DEFAULT_PASSWORD = "Correct-Horse-Battery-9"


@dataclass(frozen=True)
class TestUser:
    __test__ = False  # not a test class, whatever its name says to pytest

    id: uuid.UUID
    email: str
    password: str
    role: str
    token: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


async def make_user(
    app: FastAPI,
    role: str = "customer",
    *,
    email: str | None = None,
    password: str = DEFAULT_PASSWORD,
    verified: bool = True,
) -> TestUser:
    """Create a user in the app's database and a valid access token for it."""
    email = email or f"{role}-{uuid.uuid4().hex[:8]}@example.com"
    async with app.state.db.session() as session:
        user = await create_user(
            session,
            email=email,
            password=password,
            full_name=f"Test {role.title()}",
            role=role,
            verified=verified,
        )
        user_id = user.id
    token = create_access_token(app.state.signing_key, user_id, role, 900)
    return TestUser(id=user_id, email=email, password=password, role=role, token=token)
