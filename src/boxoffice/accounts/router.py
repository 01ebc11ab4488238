"""`/api/auth/*`, `/api/me` and `/api/admin/users`."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request, Response, status
from sqlalchemy.ext.asyncio import AsyncSession

from boxoffice.accounts import service
from boxoffice.accounts.deps import CurrentSessionId, CurrentUser, require
from boxoffice.accounts.models import User
from boxoffice.accounts.permissions import Permission
from boxoffice.accounts.schemas import (
    AuthOut,
    ChangePasswordIn,
    ForgotPasswordIn,
    LoginIn,
    MeOut,
    MfaSetupOut,
    OtpIn,
    ProfilePatch,
    RefreshIn,
    RegisterIn,
    ResetPasswordIn,
    RevokeAllIn,
    RevokedOut,
    RolePatch,
    SessionList,
    SessionOut,
    TokenIn,
    TokensOut,
    UserOut,
    UserPage,
)
from boxoffice.core.db import SessionDep
from boxoffice.core.ratelimit import client_ip, limited
from boxoffice.core.routing import RetryingRoute
from boxoffice.core.schema import Page, reject_empty_patch
from boxoffice.loyalty import service as loyalty
from boxoffice.notifications import service as notifications
from boxoffice.notifications.schemas import NotificationChannels

router = APIRouter(prefix="/api", route_class=RetryingRoute, tags=["accounts"])
admin_router = APIRouter(prefix="/api/admin", route_class=RetryingRoute, tags=["admin: users"])
AdminUser = Annotated[User, Depends(require(Permission.USERS_MANAGE))]


def _ctx(request: Request) -> service.AuthContext:
    state = request.app.state
    return service.AuthContext(state.settings, state.signing_key, state.mailer)


def _auth_out(user: User, tokens: service.TokenPair) -> AuthOut:
    return AuthOut(
        user=UserOut.of(user),
        access_token=tokens.access_token,
        refresh_token=tokens.refresh_token,
        expires_in=tokens.expires_in,
    )


def _tokens_out(tokens: service.TokenPair) -> TokensOut:
    return TokensOut(
        access_token=tokens.access_token,
        refresh_token=tokens.refresh_token,
        expires_in=tokens.expires_in,
    )


@router.post(
    "/auth/register",
    status_code=status.HTTP_201_CREATED,
    response_model=AuthOut,
    dependencies=[Depends(limited("register"))],
)
async def register(body: RegisterIn, request: Request, session: SessionDep) -> AuthOut:
    user, tokens = await service.register(
        session,
        _ctx(request),
        email=body.email,
        password=body.password,
        full_name=body.full_name,
        phone=body.phone,
        user_agent=request.headers.get("user-agent"),
        ip=client_ip(request),
    )
    return _auth_out(user, tokens)


@router.post(
    "/auth/login",
    response_model=AuthOut,
    dependencies=[Depends(limited("login", key="email"))],
)
async def login(body: LoginIn, request: Request, session: SessionDep) -> AuthOut:
    user, tokens = await service.login(
        session,
        _ctx(request),
        email=body.email,
        password=body.password,
        otp=body.otp,
        user_agent=request.headers.get("user-agent"),
        ip=client_ip(request),
    )
    return _auth_out(user, tokens)


@router.post("/auth/refresh", response_model=TokensOut)
async def refresh(body: RefreshIn, request: Request, session: SessionDep) -> TokensOut:
    tokens = await service.refresh_tokens(
        session,
        _ctx(request),
        body.refresh_token,
        request.headers.get("user-agent"),
        client_ip(request),
    )
    return _tokens_out(tokens)


@router.post("/auth/logout", status_code=status.HTTP_204_NO_CONTENT)
async def logout(body: RefreshIn, session: SessionDep) -> Response:
    await service.logout(session, body.refresh_token)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post(
    "/auth/password/forgot",
    status_code=status.HTTP_202_ACCEPTED,
    dependencies=[Depends(limited("password", key="email"))],
)
async def forgot_password(
    body: ForgotPasswordIn, request: Request, session: SessionDep
) -> dict[str, str]:
    await service.request_password_reset(session, _ctx(request), body.email)
    return {"status": "accepted"}


@router.post(
    "/auth/password/reset",
    status_code=status.HTTP_204_NO_CONTENT,
    dependencies=[Depends(limited("password", key="email"))],
)
async def reset_password(body: ResetPasswordIn, session: SessionDep) -> Response:
    await service.reset_password(session, body.token, body.new_password)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post(
    "/auth/verify-email",
    status_code=status.HTTP_204_NO_CONTENT,
    dependencies=[Depends(limited("email-verification"))],
)
async def verify_email(body: TokenIn, session: SessionDep) -> Response:
    await service.verify_email(session, body.token)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post(
    "/auth/verify-email/resend",
    status_code=status.HTTP_202_ACCEPTED,
    dependencies=[Depends(limited("email-verification"))],
)
async def resend_verification(
    user: CurrentUser, request: Request, session: SessionDep
) -> dict[str, str]:
    await service.send_verification_email(session, _ctx(request), user)
    return {"status": "accepted"}


@router.post("/auth/mfa/setup", response_model=MfaSetupOut, dependencies=[Depends(limited("mfa"))])
async def mfa_setup(user: CurrentUser) -> MfaSetupOut:
    setup = await service.mfa_setup(user)
    return MfaSetupOut(secret=setup.secret, otpauth_uri=setup.otpauth_uri)


@router.post("/auth/mfa/enable", response_model=UserOut, dependencies=[Depends(limited("mfa"))])
async def mfa_enable(body: OtpIn, user: CurrentUser, session: SessionDep) -> UserOut:
    await service.mfa_enable(session, user, body.otp)
    return UserOut.of(user)


@router.post("/auth/mfa/disable", response_model=UserOut, dependencies=[Depends(limited("mfa"))])
async def mfa_disable(
    body: OtpIn, user: CurrentUser, request: Request, session: SessionDep
) -> UserOut:
    await service.mfa_disable(
        session, user, body.otp, require_admin_mfa=request.app.state.settings.require_admin_mfa
    )
    return UserOut.of(user)


async def _me(session: AsyncSession, user: User) -> MeOut:
    tier, points = await loyalty.summary(session, user.id)
    wanted = await notifications.preferences(session, user.id)
    return MeOut(
        **UserOut.of(user, tier=tier, points=points).model_dump(),
        notification_channels=NotificationChannels(
            email=wanted.email, sms=wanted.sms, in_app=wanted.in_app
        ),
        locale=wanted.locale,
    )


@router.get("/me", response_model=MeOut)
async def me(user: CurrentUser, session: SessionDep) -> MeOut:
    return await _me(session, user)


@router.patch("/me", response_model=MeOut)
async def update_me(body: ProfilePatch, user: CurrentUser, session: SessionDep) -> MeOut:
    reject_empty_patch(body.model_dump(exclude_unset=True))
    channels = body.notification_channels
    await service.update_profile(
        session,
        user,
        full_name=body.full_name,
        phone=body.phone,
        notification_channels=(
            channels.model_dump(exclude_none=True, by_alias=False) if channels else None
        ),
        locale=body.locale,
    )
    return await _me(session, user)


@router.post("/me/password", status_code=status.HTTP_204_NO_CONTENT)
async def change_password(
    body: ChangePasswordIn, user: CurrentUser, request: Request, session: SessionDep
) -> Response:
    """Every session, this one included, is signed out: sign in again with the new password."""
    await service.change_password(
        session,
        _ctx(request),
        user,
        body.current_password,
        body.new_password,
        ip=client_ip(request),
    )
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.get("/me/sessions", response_model=SessionList)
async def list_sessions(
    user: CurrentUser, current: CurrentSessionId, session: SessionDep
) -> SessionList:
    sessions = await service.list_sessions(session, user.id)
    return SessionList(sessions=[SessionOut.of(s, current=current) for s in sessions])


@router.delete("/me/sessions/{session_id}", status_code=status.HTTP_204_NO_CONTENT)
async def revoke_session(session_id: uuid.UUID, user: CurrentUser, session: SessionDep) -> Response:
    await service.revoke_session(session, user, session_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post("/me/sessions/revoke-all", response_model=RevokedOut)
async def revoke_all_sessions(
    user: CurrentUser,
    current: CurrentSessionId,
    session: SessionDep,
    body: RevokeAllIn | None = None,
) -> RevokedOut:
    count = await service.revoke_other_sessions(
        session, user, current=current, keep_current=bool(body and body.keep_current)
    )
    return RevokedOut(revoked=count)


@admin_router.get("/users", response_model=UserPage)
async def list_users(
    _: AdminUser,
    session: SessionDep,
    page: Page,
    search: Annotated[str | None, Query(max_length=100)] = None,
    role: Annotated[str | None, Query(max_length=20)] = None,
) -> UserPage:
    users, total = await service.list_users(
        session, search=search, role=role, offset=page.offset, limit=page.limit
    )
    return UserPage(users=[UserOut.of(u) for u in users], pagination=page.pagination(total))


@admin_router.get("/users/{user_id}", response_model=UserOut)
async def get_user(user_id: uuid.UUID, _: AdminUser, session: SessionDep) -> UserOut:
    return UserOut.of(await service.get_user(session, user_id))


@admin_router.patch("/users/{user_id}", response_model=UserOut)
async def set_role(
    user_id: uuid.UUID, body: RolePatch, admin: AdminUser, session: SessionDep
) -> UserOut:
    return UserOut.of(await service.set_role(session, admin, user_id, body.role))
