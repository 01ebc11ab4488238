"""Account and authentication errors."""

from __future__ import annotations

from boxoffice.core.errors import (
    BoxofficeError,
    Conflict,
    Forbidden,
    NotAuthenticated,
    Unprocessable,
)


class EmailTaken(Conflict):
    code = "email_taken"
    title = "Email already registered"


class WeakPassword(Unprocessable):
    code = "weak_password"
    title = "Password does not meet the policy"


class InvalidCredentials(NotAuthenticated):
    code = "invalid_credentials"
    title = "Invalid email or password"


class OtpRequired(NotAuthenticated):
    code = "otp_required"
    title = "A one-time code is required"


class InvalidOtp(NotAuthenticated):
    code = "invalid_otp"
    title = "The one-time code is wrong or was already used"


class InvalidRefreshToken(NotAuthenticated):
    code = "invalid_refresh_token"
    title = "The refresh token is invalid, expired or spent"


class RefreshTokenReused(InvalidRefreshToken):
    # The family was revoked in this transaction: keep that write although we answer 401.
    commit = True
    code = "refresh_token_reused"


class InvalidAccountToken(Unprocessable):
    code = "invalid_token"
    title = "The token is invalid, expired or already used"


class UnknownRole(Unprocessable):
    code = "unknown_role"
    title = "Unknown role"


class LoginFailed(InvalidCredentials):
    """A wrong password (or one-time code) that was counted: the count must be kept although
    the request fails. Answers exactly like `InvalidCredentials`."""

    commit = True


class OtpFailed(InvalidOtp):
    commit = True


class LoginLocked(BoxofficeError):
    status = 429
    code = "login_locked"
    title = "Too many failed sign-ins"


class MfaRequired(Forbidden):
    code = "mfa_required"
    title = "Two-factor sign-in required"
