"""Account request and response bodies."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Annotated

from pydantic import EmailStr, Field, StringConstraints

from boxoffice.accounts.models import User
from boxoffice.accounts.service import SessionInfo
from boxoffice.core.schema import CamelModel, InputModel, Pagination
from boxoffice.notifications.schemas import (
    Locale,
    NotificationChannels,
    NotificationChannelsPatch,
)

Password = Annotated[str, Field(min_length=1, max_length=256)]
FullName = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]
Phone = Annotated[str, StringConstraints(strip_whitespace=True, pattern=r"^\+?[0-9 ()\-]{5,30}$")]
OneTimeCode = Annotated[str, StringConstraints(strip_whitespace=True, pattern=r"^[0-9]{6}$")]
OpaqueToken = Annotated[str, Field(min_length=1, max_length=512)]


class RegisterIn(InputModel):
    email: EmailStr
    password: Password
    full_name: FullName
    phone: Phone | None = None


class LoginIn(InputModel):
    email: Annotated[str, Field(min_length=1, max_length=320)]
    password: Password
    otp: OneTimeCode | None = None


class RefreshIn(InputModel):
    refresh_token: OpaqueToken


class ForgotPasswordIn(InputModel):
    email: Annotated[str, Field(min_length=1, max_length=320)]


class ResetPasswordIn(InputModel):
    token: OpaqueToken
    new_password: Password


class ChangePasswordIn(InputModel):
    current_password: Password
    new_password: Password


class TokenIn(InputModel):
    token: OpaqueToken


class OtpIn(InputModel):
    otp: OneTimeCode


class ProfilePatch(InputModel):
    full_name: FullName | None = None
    phone: Phone | Annotated[str, Field(max_length=0)] | None = None  # "" clears it
    # Notifications: the channels named change; `locale` is the language of messages.
    notification_channels: NotificationChannelsPatch | None = None
    locale: Locale | None = None


class RolePatch(InputModel):
    role: Annotated[str, Field(min_length=1, max_length=20)]


class UserOut(CamelModel):
    id: uuid.UUID
    email: str
    full_name: str
    phone: str | None
    role: str
    tier: str
    points: int
    email_verified: bool
    mfa_enabled: bool
    created_at: dt.datetime

    @classmethod
    def of(cls, user: User, *, tier: str = "bronze", points: int = 0) -> UserOut:
        """`tier` and `points` come from the loyalty ledger where the caller asks for them."""
        return cls(
            id=user.id,
            email=user.email,
            full_name=user.full_name,
            phone=user.phone,
            role=user.role,
            tier=tier,
            points=points,
            email_verified=user.email_verified_at is not None,
            mfa_enabled=user.mfa_enabled,
            created_at=user.created_at,
        )


class MeOut(UserOut):
    """`/api/me`: the profile with the caller's notification channels and language."""

    notification_channels: NotificationChannels
    locale: str


class TokensOut(CamelModel):
    access_token: str
    refresh_token: str
    token_type: str = "bearer"
    expires_in: int


class AuthOut(TokensOut):
    user: UserOut


class MfaSetupOut(CamelModel):
    secret: str
    otpauth_uri: str


class UserPage(CamelModel):
    users: list[UserOut]
    pagination: Pagination


class SessionOut(CamelModel):
    """A signed-in session (a chain of refresh tokens from one sign-in)."""

    id: uuid.UUID
    created_at: dt.datetime
    last_used_at: dt.datetime  # the last sign-in or refresh
    user_agent: str | None
    ip: str | None
    mfa: bool  # signed in with a one-time code
    current: bool  # the session of the access token making the request

    @classmethod
    def of(cls, info: SessionInfo, *, current: uuid.UUID | None) -> SessionOut:
        return cls(
            id=info.id,
            created_at=info.created_at,
            last_used_at=info.last_used_at,
            user_agent=info.user_agent,
            ip=info.ip,
            mfa=info.mfa,
            current=info.id == current,
        )


class SessionList(CamelModel):
    sessions: list[SessionOut]


class RevokeAllIn(InputModel):
    keep_current: bool = False


class RevokedOut(CamelModel):
    revoked: int  # sessions signed out
