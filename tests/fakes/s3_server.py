"""A real moto S3 server on loopback, for the S3 storage backend's tests.

moto serves the S3 API, but it does not check presigned URLs at all (neither signature nor
expiry: it only looks at `Authorization` headers, and only when auth is switched on). So the
WSGI app is wrapped in `PresignGate`, which answers a presigned (SigV4 query) request as S3
does when the signature does not match the test credentials (403 `SignatureDoesNotMatch`) or
when `X-Amz-Date + X-Amz-Expires` has passed (403 `AccessDenied`, "Request has expired"), and
hands every other request to moto unchanged.
"""

from __future__ import annotations

import calendar
import hashlib
import hmac
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import parse_qsl, quote, urlsplit

from moto.server import (
    DomainDispatcherApplication,
    MotoRequestHandler,
    ThreadedMotoServer,
    create_backend_app,
)
from werkzeug.serving import make_server

ACCESS_KEY_ID = "AKIABOXOFFICETEST0001"
SECRET_ACCESS_KEY = "boxoffice-test-secret-access-key-0123456789"
REGION = "us-east-1"

WsgiApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


class FakeS3:
    """The running server: its endpoint and the credentials it accepts."""

    def __init__(self, endpoint_url: str) -> None:
        self.endpoint_url = endpoint_url
        self.access_key_id = ACCESS_KEY_ID
        self.secret_access_key = SECRET_ACCESS_KEY
        self.region = REGION
        self._session: Any = None

    def client(self, **kwargs: Any) -> Any:
        """A boto3 client for the server. The clients share one boto3 session (made on first
        use), which has read the S3 model once: a fresh session spends ~0.2 s on that."""
        if self._session is None:
            import boto3

            self._session = boto3.session.Session()
        return self._session.client(
            "s3",
            endpoint_url=self.endpoint_url,
            region_name=self.region,
            aws_access_key_id=self.access_key_id,
            aws_secret_access_key=self.secret_access_key,
            **kwargs,
        )


def _hmac(key: bytes, message: str) -> bytes:
    return hmac.new(key, message.encode(), hashlib.sha256).digest()


def _uri_encode(value: str) -> str:
    return quote(value, safe="-_.~")


def presigned_signature(
    secret: str, method: str, path: str, query: list[tuple[str, str]], host: str
) -> str:
    """The SigV4 query signature of a presigned S3 request (AWS's documented algorithm,
    written out here independently of botocore; only `host` is a signed header)."""
    params = dict(query)
    canonical_query = "&".join(
        f"{_uri_encode(name)}={_uri_encode(value)}"
        for name, value in sorted(query)
        if name != "X-Amz-Signature"
    )
    canonical_request = "\n".join(
        [method, path, canonical_query, f"host:{host}\n", "host", "UNSIGNED-PAYLOAD"]
    )
    scope = params["X-Amz-Credential"].split("/", 1)[1]
    date, region, service, _ = scope.split("/")
    string_to_sign = "\n".join(
        [
            "AWS4-HMAC-SHA256",
            params["X-Amz-Date"],
            scope,
            hashlib.sha256(canonical_request.encode()).hexdigest(),
        ]
    )
    key = _hmac(f"AWS4{secret}".encode(), date)
    for part in (region, service, "aws4_request"):
        key = _hmac(key, part)
    return hmac.new(key, string_to_sign.encode(), hashlib.sha256).hexdigest()


def _error(start_response: Callable[..., Any], code: str, message: str) -> list[bytes]:
    body = (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f"<Error><Code>{code}</Code><Message>{message}</Message></Error>"
    ).encode()
    start_response(
        "403 Forbidden",
        [("Content-Type", "application/xml"), ("Content-Length", str(len(body)))],
    )
    return [body]


class PresignGate:
    """WSGI middleware: S3's checks of presigned URLs, in front of moto."""

    def __init__(self, app: WsgiApp, secrets: dict[str, str]) -> None:
        self.app = app
        self.secrets = secrets  # access key id -> secret

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        query = parse_qsl(environ.get("QUERY_STRING", ""), keep_blank_values=True)
        params = dict(query)
        if "X-Amz-Signature" not in params:
            return self.app(environ, start_response)
        if (
            params.get("X-Amz-Algorithm") != "AWS4-HMAC-SHA256"
            or params.get("X-Amz-SignedHeaders") != "host"
        ):
            return _error(start_response, "AccessDenied", "Unsupported presigned request")
        access_key = params.get("X-Amz-Credential", "").split("/", 1)[0]
        secret = self.secrets.get(access_key)
        if secret is None:
            return _error(start_response, "InvalidAccessKeyId", "Unknown access key")
        raw_uri = environ.get("RAW_URI") or environ.get("REQUEST_URI")
        path = urlsplit(raw_uri).path if raw_uri else quote(environ.get("PATH_INFO", "/"))
        expected = presigned_signature(
            secret, environ["REQUEST_METHOD"], path, query, environ.get("HTTP_HOST", "")
        )
        if not hmac.compare_digest(expected, params["X-Amz-Signature"]):
            return _error(start_response, "SignatureDoesNotMatch", "Signature does not match")
        signed_at = calendar.timegm(time.strptime(params["X-Amz-Date"], "%Y%m%dT%H%M%SZ"))
        if time.time() > signed_at + int(params.get("X-Amz-Expires", "0")):
            return _error(start_response, "AccessDenied", "Request has expired")
        return self.app(environ, start_response)


class GatedMotoServer(ThreadedMotoServer):
    """moto's threaded server with its WSGI app behind `PresignGate`."""

    def __init__(self, secrets: dict[str, str]) -> None:
        super().__init__(ip_address="127.0.0.1", port=0, verbose=False)
        self._secrets = secrets

    def _server_entry(self) -> None:
        # ThreadedMotoServer._server_entry (moto 5), with the app wrapped.
        app = PresignGate(DomainDispatcherApplication(create_backend_app), self._secrets)
        self._server = make_server(
            self._ip_address, self._port, app, True, request_handler=MotoRequestHandler
        )
        self._server_ready_event.set()
        self._server.serve_forever()


@contextmanager
def serve_fake_s3() -> Iterator[FakeS3]:
    """A moto S3 server on a free loopback port, stopped on exit."""
    server = GatedMotoServer({ACCESS_KEY_ID: SECRET_ACCESS_KEY})
    server.start()
    try:
        host, port = server.get_host_and_port()
        yield FakeS3(endpoint_url=f"http://{host}:{port}")
    finally:
        server.stop()
