"""Users, roles and permissions, refresh tokens and single-use account tokens."""

from __future__ import annotations

import datetime as dt
import uuid

from sqlalchemy import ForeignKey, Index, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from boxoffice.core.clock import utcnow
from boxoffice.core.db import Base, IdMixin, TimestampMixin, UTCDateTime


class RoleRow(Base):
    __tablename__ = "roles"

    name: Mapped[str] = mapped_column(String(20), primary_key=True)
    description: Mapped[str] = mapped_column(String(200), default="")


class RolePermission(Base):
    __tablename__ = "role_permissions"

    role: Mapped[str] = mapped_column(
        String(20), ForeignKey("roles.name", ondelete="CASCADE"), primary_key=True
    )
    permission: Mapped[str] = mapped_column(String(64), primary_key=True)


class User(IdMixin, TimestampMixin, Base):
    __tablename__ = "users"

    email: Mapped[str] = mapped_column(String(254), unique=True)  # stored lower-cased
    password_hash: Mapped[str] = mapped_column(String(255))
    full_name: Mapped[str] = mapped_column(String(200))
    phone: Mapped[str | None] = mapped_column(String(40))
    role: Mapped[str] = mapped_column(String(20), ForeignKey("roles.name"), default="customer")
    is_active: Mapped[bool] = mapped_column(default=True)
    email_verified_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    mfa_secret: Mapped[str | None] = mapped_column(String(64))
    mfa_enabled: Mapped[bool] = mapped_column(default=False)
    # The last TOTP time step accepted: a code is never accepted twice.
    mfa_last_step: Mapped[int | None]
    password_changed_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    # Set when the personal data was erased (on request or by retention): the row stays,
    # anonymised, for the bookings and payments accounting keeps.
    erased_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    # "Sign out everywhere": access tokens issued before this (or the password change) are
    # refused by every route that loads the account.
    sessions_revoked_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())


class RefreshToken(IdMixin, Base):
    """An opaque refresh token, stored hashed. Rotation spends it; tokens descended from one
    login share a family, and presenting a spent token revokes the whole family."""

    __tablename__ = "refresh_tokens"
    __table_args__ = (Index("ix_refresh_tokens_family", "family_id"),)

    user_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), index=True
    )
    family_id: Mapped[uuid.UUID]
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow)
    expires_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    used_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    revoked_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    user_agent: Mapped[str | None] = mapped_column(String(300))
    ip: Mapped[str | None] = mapped_column(String(64))
    # The session was signed in with a one-time code; rotation keeps it.
    mfa: Mapped[bool] = mapped_column(default=False)


class LoginFailure(IdMixin, Base):
    """Failed sign-ins of one key within a window: an (account, IP) pair, an account across
    IPs, or an IP across accounts. The account is the SHA-256 of the normalised email, so
    unknown addresses are counted exactly like known ones and are not stored in clear.
    """

    __tablename__ = "login_failures"
    __table_args__ = (
        UniqueConstraint("scope", "account_key", "ip"),
        Index("ix_login_failures_account_key", "account_key"),
    )

    scope: Mapped[str] = mapped_column(String(8))  # pair | account | ip
    account_key: Mapped[str] = mapped_column(String(64))  # "" for an IP row
    ip: Mapped[str] = mapped_column(String(64))  # "" for an account row
    failures: Mapped[int] = mapped_column(default=0)
    locks: Mapped[int] = mapped_column(default=0)  # locks in this window: the doubling
    window_started_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow)
    locked_until: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    # Pair rows: the last successful sign-in from this IP (a trusted IP for the account).
    succeeded_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())


class AccountToken(IdMixin, Base):
    """Single-use, expiring tokens mailed to the user (email verification, password reset)."""

    __tablename__ = "account_tokens"

    user_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), index=True
    )
    purpose: Mapped[str] = mapped_column(String(20))  # verify_email | reset_password
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    email: Mapped[str] = mapped_column(String(254))  # the address the token was sent to
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow)
    expires_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    used_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
