"""A fake Twilio Messaging API, for tests: `POST /2010-04-01/Accounts/{sid}/Messages.json`.

What the client sees is Twilio's: HTTP basic auth with the account SID and auth token (401 with
code 20003 otherwise), a form-encoded body with `To`, `From` and `Body`, 201 with the message
resource (`sid` "SM..."), errors as `{"code", "message", "more_info", "status"}`; a `To` that
is not E.164 is a 400 with code 21211. Every request is recorded (`requests`);
`fail_next(n, status)` answers the next n requests with that status before looking at them.
"""

from __future__ import annotations

import base64
import re
import secrets
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from urllib.parse import parse_qsl

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from tests.fakes.http_server import serve_in_thread

ACCOUNT_SID = "AC" + "1f" * 16
AUTH_TOKEN = "fake-twilio-auth-token"
FROM_NUMBER = "+15005550006"
E164 = re.compile(r"^\+[1-9][0-9]{6,14}$")


@dataclass(frozen=True)
class Received:
    path: str
    authorization: str | None
    content_type: str | None
    form: dict[str, str]
    status: int  # what the fake answered


@dataclass
class FakeTwilio:
    requests: list[Received] = field(default_factory=list)
    _failures: list[int] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def fail_next(self, count: int, status: int) -> None:
        with self._lock:
            self._failures.extend([status] * count)

    def sent(self) -> list[Received]:
        """The requests that created a message."""
        return [r for r in self.requests if r.status == 201]

    @property
    def app(self) -> Starlette:
        return Starlette(
            routes=[
                Route(
                    "/2010-04-01/Accounts/{sid}/Messages.json",
                    self._create_message,
                    methods=["POST"],
                )
            ]
        )

    async def _create_message(self, request: Request) -> JSONResponse:
        form = dict(parse_qsl((await request.body()).decode()))
        authorization = request.headers.get("authorization")

        def answer(status: int, body: dict[str, object]) -> JSONResponse:
            with self._lock:
                self.requests.append(
                    Received(
                        request.url.path,
                        authorization,
                        request.headers.get("content-type"),
                        form,
                        status,
                    )
                )
            return JSONResponse(body, status_code=status)

        with self._lock:
            failure = self._failures.pop(0) if self._failures else None
        if failure is not None:
            return answer(failure, _error(failure, 20500, "Injected failure"))
        expected = "Basic " + base64.b64encode(f"{ACCOUNT_SID}:{AUTH_TOKEN}".encode()).decode()
        if authorization != expected or request.path_params["sid"] != ACCOUNT_SID:
            return answer(401, _error(401, 20003, "Authenticate"))
        to = form.get("To", "")
        if not E164.fullmatch(to):
            return answer(400, _error(400, 21211, f"The 'To' number {to} is not valid."))
        if not form.get("Body"):
            return answer(400, _error(400, 21602, "Message body is required."))
        return answer(
            201,
            {
                "sid": "SM" + secrets.token_hex(16),
                "account_sid": ACCOUNT_SID,
                "to": to,
                "from": form.get("From"),
                "body": form["Body"],
                "status": "queued",
                "num_segments": "1",
            },
        )


def _error(status: int, code: int, message: str) -> dict[str, object]:
    return {
        "code": code,
        "message": message,
        "more_info": f"https://www.twilio.com/docs/errors/{code}",
        "status": status,
    }


@contextmanager
def serve_twilio() -> Iterator[tuple[FakeTwilio, str]]:
    """The fake and its base URL (what `BOXOFFICE_TWILIO_API_BASE` points at)."""
    fake = FakeTwilio()
    with serve_in_thread(fake.app) as base_url:
        yield fake, base_url
