"""Authentication and authorisation dependencies for every router.

`CurrentUser` requires a valid access token; `OptionalUser` accepts anonymous callers;
`require(Permission.X)` checks the caller's role against the role_permissions table (and,
with BOXOFFICE_REQUIRE_ADMIN_MFA, that an admin's token was signed in with a one-time code).
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from boxoffice.accounts.models import RolePermission, User
from boxoffice.accounts.permissions import Permission
from boxoffice.accounts.service import check_admin_mfa, invalid_token, signed_in_user
from boxoffice.core.db import SessionDep
from boxoffice.core.errors import Forbidden, NotAuthenticated
from boxoffice.core.security import AccessClaims, VerifiedTokens

_bearer = HTTPBearer(auto_error=False, description="Access token from /api/auth/login")


def _claims(request: Request, credentials: HTTPAuthorizationCredentials) -> AccessClaims:
    tokens: VerifiedTokens = request.app.state.access_tokens
    claims = tokens.claims(credentials.credentials)
    if claims is None:
        raise invalid_token()
    request.state.access_claims = claims  # for permission checks of this request
    return claims


OptionalCredentials = Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]


async def optional_user(
    request: Request,
    session: SessionDep,
    credentials: OptionalCredentials,
) -> User | None:
    """The signed-in caller, or None for an anonymous one (the `OptionalUser` dependency)."""
    if credentials is None:
        return None
    return await signed_in_user(session, _claims(request, credentials))


class _BearerClaims(HTTPBearer):
    """The bearer scheme answering the token's verified claims (None for an anonymous caller
    where `anonymous_allowed`): one dependency for FastAPI to solve where HTTPBearer and a
    function taking its credentials were two (in-process ~2% of a hold and release's CPU).
    Declared in the API's description as `_bearer` is."""

    def __init__(self, *, anonymous_allowed: bool) -> None:
        super().__init__(
            auto_error=False,
            scheme_name=_bearer.scheme_name,
            description=_bearer.model.description,
        )
        self._anonymous_allowed = anonymous_allowed

    async def __call__(self, request: Request) -> AccessClaims | None:  # type: ignore[override]
        credentials = await super().__call__(request)
        if credentials is None:
            if self._anonymous_allowed:
                return None
            raise NotAuthenticated("Sign in first: send 'Authorization: Bearer <accessToken>'.")
        return _claims(request, credentials)


async def _current_user(user: Annotated[User | None, Depends(optional_user)]) -> User:
    if user is None:
        raise NotAuthenticated("Sign in first: send 'Authorization: Bearer <accessToken>'.")
    return user


OptionalUser = Annotated[User | None, Depends(optional_user)]
CurrentUser = Annotated[User, Depends(_current_user)]
# Only the token's claims, no database read: for hot paths whose own statement checks that
# the account is active (see booking.holds_postgres).
_token_claims = _BearerClaims(anonymous_allowed=False)
TokenClaims = Annotated[AccessClaims, Depends(_token_claims)]
# The same for a caller who may also be anonymous (None; a token that is sent must be valid):
# the seat map, whose statement checks the account of a signed-in caller.
OptionalClaims = Annotated[AccessClaims | None, Depends(_BearerClaims(anonymous_allowed=True))]


async def permissions_of(request: Request, session: AsyncSession, role: str) -> frozenset[str]:
    """The role's permissions, read once per process (grants change only by migration)."""
    cache: dict[str, frozenset[str]] | None = getattr(request.app.state, "role_permissions", None)
    if cache is None:
        rows = (await session.execute(select(RolePermission.role, RolePermission.permission))).all()
        loaded: dict[str, set[str]] = {}
        for row_role, permission in rows:
            loaded.setdefault(row_role, set()).add(permission)
        cache = {name: frozenset(perms) for name, perms in loaded.items()}
        request.app.state.role_permissions = cache
    return cache.get(role, frozenset())


def require(*needed: Permission) -> Callable[..., Awaitable[User]]:
    """A dependency that answers 401 without a user and 403 without every named permission."""

    async def dependency(request: Request, user: CurrentUser, session: SessionDep) -> User:
        granted = await permissions_of(request, session, user.role)
        missing = [p.value for p in needed if p.value not in granted]
        if missing:
            raise Forbidden(f"Your role may not do this (needs {', '.join(missing)}).")
        check_admin_mfa(user, _request_claims(request), request.app.state.settings)
        return user

    return dependency


async def has_permission(
    request: Request, session: AsyncSession, user: User | None, permission: Permission
) -> bool:
    if user is None:
        return False
    try:
        check_admin_mfa(user, _request_claims(request), request.app.state.settings)
    except Forbidden:
        return False
    return permission.value in await permissions_of(request, session, user.role)


def _request_claims(request: Request) -> AccessClaims | None:
    claims: AccessClaims | None = getattr(request.state, "access_claims", None)
    return claims


async def _session_id(
    claims: Annotated[AccessClaims, Depends(_token_claims)],
) -> uuid.UUID | None:
    return claims.session_id


# The caller's session (refresh-token family) when the access token names one.
CurrentSessionId = Annotated[uuid.UUID | None, Depends(_session_id)]
