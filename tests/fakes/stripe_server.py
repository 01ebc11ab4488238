"""A fake Stripe API speaking the wire protocol of Stripe's SDKs, for tests.

What the SDK sees is Stripe's: form-encoded bodies in bracket notation
(`metadata[booking_id]=...`), `Authorization: Bearer sk_...`, `Idempotency-Key` (a repeated key
replays the first answer, stored with its status, and creates nothing; the same key with other
parameters is a 400 `idempotency_error`), JSON objects shaped like Stripe's and errors as
`{"error": {"type", "code", "message", ...}}`.

Endpoints: `POST /v1/payment_intents`, `GET /v1/payment_intents/{id}`,
`POST /v1/payment_intents/{id}/cancel`, `POST /v1/payment_intents/{id}/confirm` (also with the
publishable key and the intent's `client_secret`, as Stripe.js calls it) and `POST /v1/refunds`.

The customer's part is driven by the test: `customer_confirms(intent, payment_method)` with
Stripe's test payment methods `pm_card_visa` (succeeds), `pm_card_chargeDeclined` (the attempt
fails with `card_declined` / `generic_decline`; the intent goes back to
`requires_payment_method`) or `pm_card_threeDSecure2Required` (`requires_action` until
`customer_authenticates(intent, succeed)`). The dashboard's part too: `dashboard_refund` and
`open_dispute`.

Every state change appends a Stripe event (`events`, `events_of(type)`); `signed(event)` gives
the body and headers Stripe would POST to a webhook endpoint. Faults: `fail_next(endpoint, n,
status)` answers the next n requests to an endpoint with a 5xx before doing anything;
`delay_next(endpoint, seconds)` does the work, then answers late (past the client's timeout, so
its retry must be served from the idempotency key).
"""

from __future__ import annotations

import asyncio
import copy
import hashlib
import hmac
import json
import re
import secrets
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from tests.fakes.http_server import serve_in_thread

API_VERSION = "2026-10-28.endive"
PUBLISHABLE_KEY = "pk_test_fake_stripe"

# Stripe's test payment methods
PM_SUCCEEDS = "pm_card_visa"
PM_DECLINED = "pm_card_chargeDeclined"
PM_3DS_REQUIRED = "pm_card_threeDSecure2Required"

# Endpoint names for fault injection and request records
CREATE_INTENT = "create_intent"
RETRIEVE_INTENT = "retrieve_intent"
CANCEL_INTENT = "cancel_intent"
CONFIRM_INTENT = "confirm_intent"
CREATE_REFUND = "create_refund"

CANCELABLE = frozenset(
    {
        "requires_payment_method",
        "requires_capture",
        "requires_confirmation",
        "requires_action",
        "processing",
    }
)
CONFIRMABLE = frozenset({"requires_payment_method", "requires_confirmation"})


def sign(secret: str, body: bytes, timestamp: int | None = None) -> str:
    """A `Stripe-Signature` header: `t=<ts>,v1=<hex HMAC-SHA256(secret, "<ts>.<body>")>`."""
    t = int(time.time()) if timestamp is None else timestamp
    digest = hmac.new(secret.encode(), f"{t}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={t},v1={digest}"


def parse_form(body: bytes) -> dict[str, Any]:
    """Stripe's form encoding: `metadata[booking_id]=x` -> `{"metadata": {"booking_id": "x"}}`
    (list items, `expand[0]=a`, come out as keys "0", "1", ...)."""
    params: dict[str, Any] = {}
    for key, value in parse_qsl(body.decode(), keep_blank_values=True):
        *parents, last = re.findall(r"[^\[\]]+", key) or [key]
        node = params
        for part in parents:
            node = node.setdefault(part, {})
        node[last] = value
    return params


class StripeApiError(Exception):
    """An answer in Stripe's error format."""

    def __init__(self, status: int, type_: str, message: str, **fields: Any) -> None:
        super().__init__(message)
        self.status = status
        self.body = {"error": {"type": type_, "message": message, **fields}}


@dataclass(frozen=True)
class RecordedRequest:
    endpoint: str
    method: str
    path: str
    params: dict[str, Any]
    idempotency_key: str | None
    authorization: str | None
    content_type: str | None


@dataclass
class _Faults:
    failures: list[int] = field(default_factory=list)  # status codes of the next answers
    delays: list[float] = field(default_factory=list)


def _new_id(prefix: str) -> str:
    return f"{prefix}_{secrets.token_hex(12)}"


def _now() -> int:
    return int(time.time())


class FakeStripe:
    """State and ASGI app of the fake; tests read and drive it from their own thread."""

    def __init__(self, secret_key: str, webhook_secret: str) -> None:
        self.secret_key = secret_key
        self.webhook_secret = webhook_secret
        self.base_url = ""  # set while served
        self._lock = threading.Lock()
        self.reset()
        self.app = Starlette(
            routes=[
                Route("/v1/payment_intents", self._create_intent, methods=["POST"]),
                Route("/v1/payment_intents/{id}", self._retrieve_intent, methods=["GET"]),
                Route("/v1/payment_intents/{id}/cancel", self._cancel_intent, methods=["POST"]),
                Route("/v1/payment_intents/{id}/confirm", self._confirm_intent, methods=["POST"]),
                Route("/v1/refunds", self._create_refund, methods=["POST"]),
            ]
        )

    def reset(self) -> None:
        with self._lock:
            self.intents: dict[str, dict[str, Any]] = {}
            self.charges: dict[str, dict[str, Any]] = {}
            self.refunds: dict[str, dict[str, Any]] = {}
            self.disputes: dict[str, dict[str, Any]] = {}
            self.events: list[dict[str, Any]] = []
            self.requests: list[RecordedRequest] = []
            # (api key, idempotency key) -> (endpoint, params, status, body)
            self._idempotent: dict[tuple[str, str], tuple[str, dict[str, Any], int, Any]] = {}
            self._faults: dict[str, _Faults] = {}
            self.next_refund_status = "succeeded"

    # -----------------------------------------------------------------------------------------
    # What tests read

    @property
    def intents_created(self) -> int:
        with self._lock:
            return len(self.intents)

    @property
    def refunds_created(self) -> int:
        with self._lock:
            return len(self.refunds)

    def intent(self, intent_id: str) -> dict[str, Any]:
        with self._lock:
            return copy.deepcopy(self.intents[intent_id])

    def refunds_of(self, intent_id: str) -> list[dict[str, Any]]:
        with self._lock:
            return [
                copy.deepcopy(r) for r in self.refunds.values() if r["payment_intent"] == intent_id
            ]

    def requests_to(self, endpoint: str) -> list[RecordedRequest]:
        with self._lock:
            return [r for r in self.requests if r.endpoint == endpoint]

    def events_of(self, event_type: str, intent_id: str | None = None) -> list[dict[str, Any]]:
        """The events of a type (about one intent, if given), oldest first."""
        with self._lock:
            return [
                copy.deepcopy(e)
                for e in self.events
                if e["type"] == event_type
                and (intent_id is None or _intent_of(e["data"]["object"]) == intent_id)
            ]

    def last_event(self, event_type: str, intent_id: str | None = None) -> dict[str, Any]:
        events = self.events_of(event_type, intent_id)
        assert events, f"no {event_type} event" + (f" for {intent_id}" if intent_id else "")
        return events[-1]

    def signed(
        self,
        event: dict[str, Any],
        *,
        secret: str | None = None,
        timestamp: int | None = None,
    ) -> tuple[bytes, dict[str, str]]:
        """The body and headers of the webhook delivery of `event`, signed as Stripe signs."""
        body = json.dumps(event, indent=2).encode()  # Stripe sends pretty-printed JSON
        return body, self.webhook_headers(body, secret=secret, timestamp=timestamp)

    def webhook_headers(
        self, body: bytes, *, secret: str | None = None, timestamp: int | None = None
    ) -> dict[str, str]:
        """The headers of a webhook delivery of any body (for malformed ones too)."""
        return {
            "Content-Type": "application/json; charset=utf-8",
            "User-Agent": "Stripe/1.0 (+https://stripe.com/docs/webhooks)",
            "Stripe-Signature": sign(secret or self.webhook_secret, body, timestamp),
        }

    # -----------------------------------------------------------------------------------------
    # Faults

    def fail_next(self, endpoint: str, times: int = 1, status: int = 500) -> None:
        """The next `times` requests to `endpoint` answer `status` and do nothing."""
        with self._lock:
            self._faults.setdefault(endpoint, _Faults()).failures.extend([status] * times)

    def delay_next(self, endpoint: str, seconds: float, times: int = 1) -> None:
        """The next `times` requests to `endpoint` are carried out, then answered late."""
        with self._lock:
            self._faults.setdefault(endpoint, _Faults()).delays.extend([seconds] * times)

    # -----------------------------------------------------------------------------------------
    # The customer's and the dashboard's part

    async def customer_confirms(self, intent_id: str, payment_method: str) -> httpx.Response:
        """What Stripe.js does with the client secret when the customer submits the form."""
        client_secret = self.intent(intent_id)["client_secret"]
        async with httpx.AsyncClient(base_url=self.base_url) as http:
            return await http.post(
                f"/v1/payment_intents/{intent_id}/confirm",
                data={"payment_method": payment_method, "client_secret": client_secret},
                headers={"Authorization": f"Bearer {PUBLISHABLE_KEY}"},
            )

    def customer_authenticates(self, intent_id: str, *, succeed: bool = True) -> dict[str, Any]:
        """The customer completes (or fails) the 3-D Secure challenge."""
        with self._lock:
            intent = self.intents[intent_id]
            assert intent["status"] == "requires_action", intent["status"]
            intent["next_action"] = None
            if succeed:
                self._succeed(intent, intent["payment_method"])
            else:
                intent["status"] = "requires_payment_method"
                intent["last_payment_error"] = {
                    "type": "invalid_request_error",
                    "code": "payment_intent_authentication_failure",
                    "message": "The provided PaymentMethod has failed authentication.",
                    "payment_method": {"id": intent["payment_method"], "object": "payment_method"},
                }
                intent["payment_method"] = None
                self._emit("payment_intent.payment_failed", intent)
            return copy.deepcopy(intent)

    def dashboard_refund(self, intent_id: str, amount: int | None = None) -> dict[str, Any]:
        """A refund made in the Stripe dashboard: no API call of ours, only its events."""
        with self._lock:
            return copy.deepcopy(self._refund(intent_id, amount, reason=None, request=None))

    def open_dispute(
        self, intent_id: str, amount: int | None = None, reason: str = "fraudulent"
    ) -> dict[str, Any]:
        """The cardholder disputes the charge with their bank."""
        with self._lock:
            intent = self.intents[intent_id]
            charge = self.charges[intent["latest_charge"]]
            charge["disputed"] = True
            dispute = {
                "id": _new_id("dp"),
                "object": "dispute",
                "amount": charge["amount"] if amount is None else amount,
                "charge": charge["id"],
                "currency": charge["currency"],
                "payment_intent": intent_id,
                "reason": reason,
                "status": "needs_response",
                "created": _now(),
                "livemode": False,
                "metadata": {},
            }
            self.disputes[dispute["id"]] = dispute
            self._emit("charge.dispute.created", dispute)
            return copy.deepcopy(dispute)

    # -----------------------------------------------------------------------------------------
    # HTTP

    async def _create_intent(self, request: Request) -> Response:
        return await self._serve(request, CREATE_INTENT, self._do_create_intent)

    async def _retrieve_intent(self, request: Request) -> Response:
        return await self._serve(request, RETRIEVE_INTENT, self._do_retrieve_intent)

    async def _cancel_intent(self, request: Request) -> Response:
        return await self._serve(request, CANCEL_INTENT, self._do_cancel_intent)

    async def _confirm_intent(self, request: Request) -> Response:
        return await self._serve(request, CONFIRM_INTENT, self._do_confirm_intent, browser=True)

    async def _create_refund(self, request: Request) -> Response:
        return await self._serve(request, CREATE_REFUND, self._do_create_refund)

    async def _serve(
        self,
        request: Request,
        endpoint: str,
        operation: Callable[[Request, dict[str, Any]], Any],
        *,
        browser: bool = False,
    ) -> Response:
        body = await request.body()
        content_type = request.headers.get("content-type")
        params = parse_form(body) if request.method == "POST" else dict(request.query_params)
        idempotency_key = request.headers.get("idempotency-key")
        authorization = request.headers.get("authorization")
        request_id = _new_id("req")
        with self._lock:
            self.requests.append(
                RecordedRequest(
                    endpoint,
                    request.method,
                    request.url.path,
                    params,
                    idempotency_key,
                    authorization,
                    content_type,
                )
            )
            faults = self._faults.get(endpoint)
            failure = faults.failures.pop(0) if faults and faults.failures else None
            delay = faults.delays.pop(0) if faults and faults.delays else None
        headers = {"Request-Id": request_id}
        if failure is not None:
            return JSONResponse(
                {"error": {"type": "api_error", "message": "An unknown error occurred."}},
                status_code=failure,
                headers=headers,
            )
        try:
            api_key = self._authenticate(authorization, params, browser=browser)
            if request.method == "POST" and not (content_type or "").startswith(
                "application/x-www-form-urlencoded"
            ):
                raise StripeApiError(
                    400, "invalid_request_error", "Expected a form-encoded request body."
                )
            status, answer, replayed = self._run_once(
                api_key, idempotency_key, endpoint, params, request, operation
            )
        except StripeApiError as error:
            status, answer, replayed = error.status, error.body, False
        if replayed:
            headers["Idempotent-Replayed"] = "true"
        if idempotency_key:
            headers["Idempotency-Key"] = idempotency_key
        if delay is not None:
            await asyncio.sleep(delay)
        return JSONResponse(answer, status_code=status, headers=headers)

    def _authenticate(
        self, authorization: str | None, params: dict[str, Any], *, browser: bool
    ) -> str:
        scheme, _, key = (authorization or "").partition(" ")
        if scheme != "Bearer" or not key:
            raise StripeApiError(
                401,
                "invalid_request_error",
                "You did not provide an API key. You need to provide your API key in the "
                "Authorization header, using Bearer auth.",
            )
        if key == self.secret_key:
            return key
        if browser and key == PUBLISHABLE_KEY and params.get("client_secret"):
            return key  # the client secret is checked against the intent
        raise StripeApiError(
            401, "invalid_request_error", f"Invalid API Key provided: {key[:8]}****{key[-4:]}"
        )

    def _run_once(
        self,
        api_key: str,
        idempotency_key: str | None,
        endpoint: str,
        params: dict[str, Any],
        request: Request,
        operation: Callable[[Request, dict[str, Any]], Any],
    ) -> tuple[int, Any, bool]:
        with self._lock:
            stored_key = (api_key, idempotency_key) if idempotency_key else None
            if stored_key is not None and stored_key in self._idempotent:
                first_endpoint, first_params, status, answer = self._idempotent[stored_key]
                if (first_endpoint, first_params) != (endpoint, params):
                    raise StripeApiError(
                        400,
                        "idempotency_error",
                        "Keys for idempotent requests can only be used with the same "
                        "parameters they were first used with.",
                    )
                return status, copy.deepcopy(answer), True
            try:
                status, answer = 200, copy.deepcopy(operation(request, params))
            except StripeApiError as error:
                status, answer = error.status, error.body
            if stored_key is not None:
                self._idempotent[stored_key] = (endpoint, params, status, answer)
            return status, answer, False

    # -----------------------------------------------------------------------------------------
    # Operations (called with the lock held)

    def _find_intent(self, request: Request) -> dict[str, Any]:
        intent_id = request.path_params["id"]
        intent = self.intents.get(intent_id)
        if intent is None:
            raise StripeApiError(
                404,
                "invalid_request_error",
                f"No such payment_intent: '{intent_id}'",
                code="resource_missing",
                param="intent",
            )
        return intent

    def _do_create_intent(self, request: Request, params: dict[str, Any]) -> dict[str, Any]:
        amount = _positive_int(params, "amount")
        currency = params.get("currency")
        if not isinstance(currency, str) or not re.fullmatch(r"[a-zA-Z]{3}", currency):
            raise StripeApiError(
                400,
                "invalid_request_error",
                "Missing required param: currency.",
                code="parameter_missing",
                param="currency",
            )
        automatic = params.get("automatic_payment_methods")
        intent_id = _new_id("pi")
        intent = {
            "id": intent_id,
            "object": "payment_intent",
            "amount": amount,
            "amount_capturable": 0,
            "amount_received": 0,
            "automatic_payment_methods": (
                {"allow_redirects": "always", "enabled": automatic.get("enabled") == "true"}
                if isinstance(automatic, dict)
                else None
            ),
            "canceled_at": None,
            "cancellation_reason": None,
            "capture_method": "automatic_async",
            "client_secret": f"{intent_id}_secret_{secrets.token_hex(12)}",
            "confirmation_method": "automatic",
            "created": _now(),
            "currency": currency.lower(),
            "description": params.get("description"),
            "last_payment_error": None,
            "latest_charge": None,
            "livemode": False,
            "metadata": dict(params.get("metadata") or {}),
            "next_action": None,
            "payment_method": None,
            "payment_method_types": ["card"],
            "status": "requires_payment_method",
        }
        self.intents[intent_id] = intent
        self._emit("payment_intent.created", intent)
        return intent

    def _do_retrieve_intent(self, request: Request, params: dict[str, Any]) -> dict[str, Any]:
        return self._find_intent(request)

    def _do_cancel_intent(self, request: Request, params: dict[str, Any]) -> dict[str, Any]:
        intent = self._find_intent(request)
        if intent["status"] not in CANCELABLE:
            raise StripeApiError(
                400,
                "invalid_request_error",
                f"You cannot cancel this PaymentIntent because it has a status of "
                f"{intent['status']}. Only a PaymentIntent with one of the following statuses "
                f"may be canceled: {', '.join(sorted(CANCELABLE))}.",
                code="payment_intent_unexpected_state",
                payment_intent=copy.deepcopy(intent),
            )
        intent.update(
            status="canceled",
            canceled_at=_now(),
            cancellation_reason=params.get("cancellation_reason"),
            next_action=None,
        )
        self._emit("payment_intent.canceled", intent)
        return intent

    def _do_confirm_intent(self, request: Request, params: dict[str, Any]) -> dict[str, Any]:
        intent = self._find_intent(request)
        if "client_secret" in params and params["client_secret"] != intent["client_secret"]:
            raise StripeApiError(
                400,
                "invalid_request_error",
                "The client_secret provided does not match the client_secret associated "
                "with the PaymentIntent.",
                code="payment_intent_invalid_parameter",
                param="client_secret",
            )
        if intent["status"] not in CONFIRMABLE:
            raise StripeApiError(
                400,
                "invalid_request_error",
                f"This PaymentIntent's status is {intent['status']}; it cannot be confirmed.",
                code="payment_intent_unexpected_state",
                payment_intent=copy.deepcopy(intent),
            )
        method = params.get("payment_method")
        if method == PM_SUCCEEDS:
            self._succeed(intent, method)
        elif method == PM_3DS_REQUIRED:
            intent.update(
                status="requires_action",
                payment_method=method,
                last_payment_error=None,
                next_action={
                    "type": "use_stripe_sdk",
                    "use_stripe_sdk": {"type": "three_d_secure_redirect"},
                },
            )
            self._emit("payment_intent.requires_action", intent)
        elif method == PM_DECLINED:
            self._decline(intent, method)
        else:
            raise StripeApiError(
                400,
                "invalid_request_error",
                f"No such PaymentMethod: '{method}'",
                code="resource_missing",
                param="payment_method",
            )
        return intent

    def _succeed(self, intent: dict[str, Any], method: str) -> None:
        charge = self._charge(intent, method, paid=True)
        intent.update(
            status="succeeded",
            amount_received=intent["amount"],
            latest_charge=charge["id"],
            payment_method=method,
            last_payment_error=None,
            next_action=None,
        )
        self._emit("charge.succeeded", charge)
        self._emit("payment_intent.succeeded", intent)

    def _decline(self, intent: dict[str, Any], method: str) -> None:
        charge = self._charge(intent, method, paid=False)
        error = {
            "type": "card_error",
            "code": "card_declined",
            "decline_code": "generic_decline",
            "message": "Your card was declined.",
            "charge": charge["id"],
            "payment_method": {"id": method, "object": "payment_method"},
        }
        intent.update(
            status="requires_payment_method",
            latest_charge=charge["id"],
            payment_method=None,
            last_payment_error=error,
        )
        self._emit("charge.failed", charge)
        self._emit("payment_intent.payment_failed", intent)
        raise StripeApiError(
            402,
            "card_error",
            error["message"],
            code="card_declined",
            decline_code="generic_decline",
            charge=charge["id"],
            payment_intent=copy.deepcopy(intent),
        )

    def _charge(self, intent: dict[str, Any], method: str, *, paid: bool) -> dict[str, Any]:
        charge = {
            "id": _new_id("ch"),
            "object": "charge",
            "amount": intent["amount"],
            "amount_captured": intent["amount"] if paid else 0,
            "amount_refunded": 0,
            "captured": paid,
            "created": _now(),
            "currency": intent["currency"],
            "disputed": False,
            "failure_code": None if paid else "card_declined",
            "livemode": False,
            "metadata": dict(intent["metadata"]),
            "paid": paid,
            "payment_intent": intent["id"],
            "payment_method": method,
            "refunded": False,
            "status": "succeeded" if paid else "failed",
        }
        self.charges[charge["id"]] = charge
        return charge

    def _do_create_refund(self, request: Request, params: dict[str, Any]) -> dict[str, Any]:
        intent_id = params.get("payment_intent")
        if not isinstance(intent_id, str) or intent_id not in self.intents:
            raise StripeApiError(
                400 if intent_id is None else 404,
                "invalid_request_error",
                f"No such payment_intent: '{intent_id}'",
                code="resource_missing",
                param="payment_intent",
            )
        amount = _positive_int(params, "amount") if "amount" in params else None
        return self._refund(intent_id, amount, reason=params.get("reason"), request=request)

    def _refund(
        self, intent_id: str, amount: int | None, *, reason: str | None, request: Request | None
    ) -> dict[str, Any]:
        intent = self.intents[intent_id]
        if intent["status"] != "succeeded":
            raise StripeApiError(
                400,
                "invalid_request_error",
                f"This PaymentIntent ({intent_id}) does not have a successful charge to refund.",
                code="charge_not_refundable",
            )
        charge = self.charges[intent["latest_charge"]]
        remaining = charge["amount"] - charge["amount_refunded"]
        if remaining == 0:
            raise StripeApiError(
                400,
                "invalid_request_error",
                f"Charge {charge['id']} has already been refunded.",
                code="charge_already_refunded",
            )
        amount = remaining if amount is None else amount
        if amount > remaining:
            raise StripeApiError(
                400,
                "invalid_request_error",
                f"Refund amount ({amount}) is greater than unrefunded amount on charge "
                f"({remaining})",
                code="amount_too_large",
                param="amount",
            )
        refund = {
            "id": _new_id("re"),
            "object": "refund",
            "amount": amount,
            "charge": charge["id"],
            "created": _now(),
            "currency": charge["currency"],
            "metadata": {},
            "payment_intent": intent_id,
            "reason": reason,
            "status": self.next_refund_status,
        }
        self.refunds[refund["id"]] = refund
        if refund["status"] != "failed":
            charge["amount_refunded"] += amount
            charge["refunded"] = charge["amount_refunded"] == charge["amount"]
        self._emit("refund.created", refund)
        self._emit("charge.refunded", charge)
        return refund

    def _emit(self, event_type: str, obj: dict[str, Any]) -> None:
        self.events.append(
            {
                "id": _new_id("evt"),
                "object": "event",
                "api_version": API_VERSION,
                "created": _now(),
                "data": {"object": copy.deepcopy(obj)},
                "livemode": False,
                "pending_webhooks": 1,
                "request": {"id": None, "idempotency_key": None},
                "type": event_type,
            }
        )


def _positive_int(params: dict[str, Any], name: str) -> int:
    value = params.get(name)
    if not isinstance(value, str) or not value.isdigit() or int(value) <= 0:
        raise StripeApiError(
            400,
            "invalid_request_error",
            f"Invalid positive integer: {name}",
            code="parameter_invalid_integer",
            param=name,
        )
    return int(value)


def _intent_of(obj: dict[str, Any]) -> str | None:
    if obj.get("object") == "payment_intent":
        return str(obj["id"])
    ref = obj.get("payment_intent")
    return ref if isinstance(ref, str) else None


@contextmanager
def serve_fake_stripe(secret_key: str, webhook_secret: str) -> Iterator[FakeStripe]:
    """A fake Stripe served on loopback; its `base_url` is the SDK's API base."""
    fake = FakeStripe(secret_key, webhook_secret)
    with serve_in_thread(fake.app) as base_url:
        fake.base_url = base_url
        yield fake
