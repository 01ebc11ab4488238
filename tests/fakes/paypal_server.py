"""A fake PayPal REST API (OAuth2, Orders v2, Payments v2, Notifications v1) for tests.

Served over real HTTP with `serve()`, so boxoffice's PayPal provider talks to it exactly as to
api-m.paypal.com. It keeps orders, captures and refunds in memory and behaves as PayPal
documents:

- `POST /v1/oauth2/token` (basic auth, `grant_type=client_credentials`) issues bearer tokens
  that expire after `token_expires_in` seconds; every other call wants a live one (401 else).
- POSTs honour `PayPal-Request-Id`: a repeat answers the first successful answer again and
  does nothing (failed answers are not kept, so a declined capture can be tried again once
  the customer picks another way to pay).
- Capturing needs the customer's approval (422 `ORDER_NOT_APPROVED`), happens once per order
  (422 `ORDER_ALREADY_CAPTURED`), and may be declined (`decline_next_capture`).
- Events (`CHECKOUT.ORDER.APPROVED`, `PAYMENT.CAPTURE.COMPLETED` / `DENIED` / `REFUNDED`,
  `CUSTOMER.DISPUTE.CREATED`) are queued as deliveries with the `PAYPAL-*` headers for the
  test to post to the app; `verify-webhook-signature` says SUCCESS only for a delivery this
  fake signed, unaltered, and for its own webhook id.

What the customer does at PayPal (approve, a declined card, a dashboard refund, a dispute) is
a method the test calls. Faults: `fail_next` answers 5xx (by default after doing the work, so
only the `PayPal-Request-Id` keeps a retry from doing it twice) and `delay_next` answers after
the client gave up.
"""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import hashlib
import hmac
import json
import secrets
import string
import threading
import uuid
import zlib
from collections import Counter, deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any
from urllib.parse import parse_qs

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from boxoffice.payments.providers.base import currency_exponent
from tests.fakes.http_server import serve_in_thread

# Endpoint names for `calls`, `fail_next` and `delay_next`.
TOKEN = "token"
CREATE_ORDER = "create_order"
GET_ORDER = "get_order"
CAPTURE = "capture"
GET_CAPTURE = "get_capture"
REFUND = "refund"
VERIFY = "verify_webhook_signature"

APPROVED = "CHECKOUT.ORDER.APPROVED"
CAPTURE_COMPLETED = "PAYMENT.CAPTURE.COMPLETED"
CAPTURE_DENIED = "PAYMENT.CAPTURE.DENIED"
CAPTURE_REFUNDED = "PAYMENT.CAPTURE.REFUNDED"
DISPUTE_CREATED = "CUSTOMER.DISPUTE.CREATED"

# How `decline_next_capture` fails the capture.
INSTRUMENT_DECLINED = "INSTRUMENT_DECLINED"  # 422; the order stays approved
DECLINED = "DECLINED"  # a capture with status DECLINED; the order is spent

CHECKOUT_HOST = "https://www.sandbox.paypal.com"

Answer = tuple[int, dict[str, Any]]


def paypal_id(length: int = 17) -> str:
    alphabet = string.ascii_uppercase + string.digits
    return "".join(secrets.choice(alphabet) for _ in range(length))


def _now() -> str:
    return dt.datetime.now(dt.UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")


def money(amount: Decimal, currency: str) -> dict[str, str]:
    exponent = currency_exponent(currency)
    return {"currency_code": currency, "value": str(amount.quantize(Decimal(1).scaleb(-exponent)))}


def error(status: int, name: str, issue: str, description: str) -> Answer:
    """PayPal's error document."""
    return status, {
        "name": name,
        "message": description,
        "debug_id": secrets.token_hex(7),
        "details": [{"issue": issue, "description": description}],
        "links": [
            {
                "href": f"https://developer.paypal.com/api/rest/reference/orders/v2/errors/#{issue}",
                "rel": "information_link",
                "method": "GET",
            }
        ],
    }


def unprocessable(issue: str, description: str) -> Answer:
    return error(422, "UNPROCESSABLE_ENTITY", issue, description)


def invalid_request(issue: str, description: str) -> Answer:
    return error(400, "INVALID_REQUEST", issue, description)


def not_found(what: str) -> Answer:
    return error(404, "RESOURCE_NOT_FOUND", "INVALID_RESOURCE_ID", f"Specified {what} not found.")


def canonical(event: Any) -> bytes:
    return json.dumps(event, sort_keys=True, separators=(",", ":")).encode()


@dataclass
class Delivery:
    """One webhook delivery: what PayPal would POST to the cinema's webhook URL."""

    body: bytes
    headers: dict[str, str]

    @property
    def event(self) -> dict[str, Any]:
        parsed: dict[str, Any] = json.loads(self.body)
        return parsed

    @property
    def event_type(self) -> str:
        return str(self.event["event_type"])

    def altered(self, change: Callable[[dict[str, Any]], None]) -> Delivery:
        """The same headers over a changed body (a forgery)."""
        event = self.event
        change(event)
        return Delivery(json.dumps(event).encode(), dict(self.headers))


@dataclass
class Refund:
    id: str
    capture_id: str
    amount: Decimal
    status: str = "COMPLETED"
    create_time: str = field(default_factory=_now)


@dataclass
class Capture:
    id: str
    order_id: str
    amount: Decimal
    currency: str
    custom_id: str | None
    status: str
    refunds: list[Refund] = field(default_factory=list)
    create_time: str = field(default_factory=_now)

    @property
    def refunded(self) -> Decimal:
        return sum((r.amount for r in self.refunds if r.status == "COMPLETED"), Decimal(0))


@dataclass
class Order:
    id: str
    amount: Decimal
    currency: str
    reference_id: str | None
    custom_id: str | None
    experience_context: dict[str, Any]
    body: dict[str, Any]  # the create request, as received
    status: str
    capture: Capture | None = None
    decline_next_capture: str | None = None
    expired: bool = False
    payer_id: str | None = None
    create_time: str = field(default_factory=_now)


@dataclass
class _Fault:
    kind: str  # "fail" | "delay"
    status: int = 500
    seconds: float = 0.0
    after_work: bool = True


class FakePayPal:
    def __init__(
        self,
        *,
        client_id: str = "fake-paypal-client",
        client_secret: str = "fake-paypal-secret",
        webhook_id: str = "WH-FAKE-4EL97658EX5437904",
        token_expires_in: int = 32400,
    ) -> None:
        self.client_id = client_id
        self.client_secret = client_secret
        self.webhook_id = webhook_id
        self.token_expires_in = token_expires_in
        self.base_url = "http://paypal.invalid"
        self.orders: dict[str, Order] = {}
        self.captures: dict[str, Capture] = {}
        self.refunds: dict[str, Refund] = {}
        self.calls: Counter[str] = Counter()
        self.replays: Counter[str] = Counter()  # calls answered from their PayPal-Request-Id
        self.token_requests = 0
        self.rejected_tokens = 0  # calls refused with 401 for a missing, unknown or dead token
        self._tokens: dict[str, dt.datetime] = {}
        self._replays: dict[tuple[str, str], Answer] = {}
        self._faults: dict[str, deque[_Fault]] = {}
        self._deliveries: list[Delivery] = []
        self._signing_key = secrets.token_bytes(32)
        # Handlers run in the server's thread, customer actions in the test's.
        self._lock = threading.RLock()
        self.app = Starlette(
            routes=[
                Route("/v1/oauth2/token", self._token, methods=["POST"]),
                Route("/v2/checkout/orders", self._create_order, methods=["POST"]),
                Route("/v2/checkout/orders/{order_id}", self._get_order, methods=["GET"]),
                Route("/v2/checkout/orders/{order_id}/capture", self._capture, methods=["POST"]),
                Route("/v2/payments/captures/{capture_id}", self._get_capture, methods=["GET"]),
                Route("/v2/payments/captures/{capture_id}/refund", self._refund, methods=["POST"]),
                Route("/v1/notifications/verify-webhook-signature", self._verify, methods=["POST"]),
            ]
        )

    @contextmanager
    def serve(self) -> Iterator[str]:
        """Serve on loopback; yields the API base URL (boxoffice's `paypal_api_base`)."""
        with serve_in_thread(self.app) as url:
            self.base_url = url
            yield url

    # -----------------------------------------------------------------------------------------
    # What tests look at and drive

    @property
    def order_count(self) -> int:
        return len(self.orders)

    @property
    def capture_count(self) -> int:
        return len(self.captures)

    def order(self, order_id: str) -> Order:
        return self.orders[order_id]

    def take_deliveries(self, event_type: str | None = None) -> list[Delivery]:
        """The queued webhook deliveries (of one type), removed from the queue."""
        with self._lock:
            taken = [d for d in self._deliveries if event_type in (None, d.event_type)]
            self._deliveries = [d for d in self._deliveries if d not in taken]
            return taken

    def take_delivery(self, event_type: str) -> Delivery:
        (delivery,) = self.take_deliveries(event_type)
        return delivery

    def approve(self, order_id: str) -> Delivery:
        """The customer logs in at PayPal and approves the order."""
        with self._lock:
            order = self.orders[order_id]
            assert order.status in {"CREATED", "PAYER_ACTION_REQUIRED"}, order.status
            order.status = "APPROVED"
            order.payer_id = paypal_id(13)
            return self._emit(
                APPROVED,
                "checkout-order",
                self._order_json(order),
                "An order has been approved by buyer",
            )

    def expire(self, order_id: str) -> None:
        """The order passed PayPal's time limit uncaptured: it can no longer be paid."""
        with self._lock:
            self.orders[order_id].expired = True

    def decline_next_capture(self, order_id: str, how: str = INSTRUMENT_DECLINED) -> None:
        """The payer's funding source fails at the next capture of this order."""
        with self._lock:
            self.orders[order_id].decline_next_capture = how

    def refund_in_dashboard(self, order_id: str, amount: Decimal) -> Delivery:
        """The merchant refunds part of the capture in PayPal's dashboard."""
        with self._lock:
            capture = self.orders[order_id].capture
            assert capture is not None, "the order was not captured"
            status, body = self._make_refund(capture, amount)
            assert status == 201, body
            return self._deliveries[-1]

    def open_dispute(self, order_id: str) -> Delivery:
        with self._lock:
            capture = self.orders[order_id].capture
            assert capture is not None, "the order was not captured"
            dispute_id = f"PP-D-{secrets.randbelow(10**6)}"
            return self._emit(
                DISPUTE_CREATED,
                "dispute",
                {
                    "dispute_id": dispute_id,
                    "create_time": _now(),
                    "update_time": _now(),
                    "disputed_transactions": [
                        {
                            "seller_transaction_id": capture.id,
                            "seller": {"merchant_id": "FAKEMERCHANT"},
                            "seller_protection_eligible": True,
                        }
                    ],
                    "reason": "MERCHANDISE_OR_SERVICE_NOT_RECEIVED",
                    "status": "OPEN",
                    "dispute_amount": money(capture.amount, capture.currency),
                    "dispute_life_cycle_stage": "INQUIRY",
                    "dispute_channel": "INTERNAL",
                    "links": [
                        {
                            "href": f"{self.base_url}/v1/customer/disputes/{dispute_id}",
                            "rel": "self",
                            "method": "GET",
                        }
                    ],
                },
                f"A new dispute opened with Case # {dispute_id}",
            )

    def expire_tokens(self) -> None:
        """Every issued token dies now (the next call with one is a 401)."""
        with self._lock:
            self._tokens.clear()

    def fail_next(
        self, endpoint: str, times: int = 1, status: int = 500, *, after_work: bool = True
    ) -> None:
        """The next `times` calls of `endpoint` answer `status`, by default after doing
        their work (the answer is lost, the effect is not)."""
        with self._lock:
            queue = self._faults.setdefault(endpoint, deque())
            queue.extend(_Fault("fail", status=status, after_work=after_work) for _ in range(times))

    def delay_next(self, endpoint: str, seconds: float, times: int = 1) -> None:
        """The next `times` calls of `endpoint` do their work, then answer after `seconds`."""
        with self._lock:
            queue = self._faults.setdefault(endpoint, deque())
            queue.extend(_Fault("delay", seconds=seconds) for _ in range(times))

    # -----------------------------------------------------------------------------------------
    # Plumbing

    def _pop_fault(self, endpoint: str) -> _Fault | None:
        with self._lock:
            queue = self._faults.get(endpoint)
            return queue.popleft() if queue else None

    def _authorized(self, request: Request) -> bool:
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        with self._lock:
            expires = self._tokens.get(token) if scheme.lower() == "bearer" else None
            alive = expires is not None and expires > dt.datetime.now(dt.UTC)
            if not alive:
                self.rejected_tokens += 1
            return alive

    async def _serve(
        self,
        endpoint: str,
        request: Request,
        work: Callable[[], Answer],
        *,
        idempotent: bool = False,
        authenticated: bool = True,
    ) -> Response:
        with self._lock:
            self.calls[endpoint] += 1
        if authenticated and not self._authorized(request):
            return JSONResponse(
                {"error": "invalid_token", "error_description": "Access Token not found in cache"},
                status_code=401,
            )
        fault = self._pop_fault(endpoint)
        if fault is not None and fault.kind == "fail" and not fault.after_work:
            return self._internal_error(fault.status)
        request_id = request.headers.get("paypal-request-id") if idempotent else None
        with self._lock:
            replay = self._replays.get((endpoint, request_id)) if request_id else None
            if replay is not None:
                self.replays[endpoint] += 1
                status, body = replay
            else:
                status, body = work()
                if request_id and status < 300:
                    self._replays[(endpoint, request_id)] = (status, body)
        if fault is not None and fault.kind == "fail":
            return self._internal_error(fault.status)
        if fault is not None:
            await asyncio.sleep(fault.seconds)
        return JSONResponse(body, status_code=status, headers={"Paypal-Debug-Id": "fake"})

    @staticmethod
    def _internal_error(status: int) -> Response:
        name = "SERVICE_UNAVAILABLE" if status == 503 else "INTERNAL_SERVER_ERROR"
        return JSONResponse(
            {
                "name": name,
                "message": "An internal server error occurred.",
                "debug_id": secrets.token_hex(7),
            },
            status_code=status,
        )

    @staticmethod
    async def _json(request: Request) -> Any:
        raw = await request.body()
        try:
            return json.loads(raw) if raw else {}
        except ValueError:
            return None

    def _emit(
        self, event_type: str, resource_type: str, resource: dict[str, Any], summary: str
    ) -> Delivery:
        event_id = f"WH-{paypal_id(8)}-{paypal_id(17)}"
        event = {
            "id": event_id,
            "event_version": "1.0",
            "create_time": _now(),
            "resource_type": resource_type,
            "resource_version": "2.0",
            "event_type": event_type,
            "summary": summary,
            "resource": resource,
            "links": [
                {
                    "href": f"{self.base_url}/v1/notifications/webhooks-events/{event_id}",
                    "rel": "self",
                    "method": "GET",
                },
                {
                    "href": f"{self.base_url}/v1/notifications/webhooks-events/{event_id}/resend",
                    "rel": "resend",
                    "method": "POST",
                },
            ],
        }
        transmission_id = str(uuid.uuid4())
        transmission_time = _now()
        delivery = Delivery(
            json.dumps(event).encode(),
            {
                "Content-Type": "application/json",
                "PAYPAL-AUTH-ALGO": "SHA256withRSA",
                "PAYPAL-CERT-URL": f"{self.base_url}/v1/notifications/certs/CERT-fake",
                "PAYPAL-TRANSMISSION-ID": transmission_id,
                "PAYPAL-TRANSMISSION-SIG": self._signature(
                    transmission_id, transmission_time, self.webhook_id, event
                ),
                "PAYPAL-TRANSMISSION-TIME": transmission_time,
            },
        )
        with self._lock:
            self._deliveries.append(delivery)
        return delivery

    def _signature(self, transmission_id: str, time: str, webhook_id: str, event: Any) -> str:
        # PayPal signs "<transmission id>|<time>|<webhook id>|<CRC32 of the body>"; the fake
        # uses a key only it knows instead of PayPal's certificate.
        message = f"{transmission_id}|{time}|{webhook_id}|{zlib.crc32(canonical(event))}"
        digest = hmac.new(self._signing_key, message.encode(), hashlib.sha256).digest()
        return base64.b64encode(digest).decode()

    # -----------------------------------------------------------------------------------------
    # Representations

    def _order_json(self, order: Order) -> dict[str, Any]:
        base = f"{self.base_url}/v2/checkout/orders/{order.id}"
        links = [{"href": base, "rel": "self", "method": "GET"}]
        if order.status in {"CREATED", "PAYER_ACTION_REQUIRED"}:
            rel = "payer-action" if order.status == "PAYER_ACTION_REQUIRED" else "approve"
            links.append({"href": self.approval_url(order.id), "rel": rel, "method": "GET"})
        elif order.status == "APPROVED":
            links.append({"href": f"{base}/capture", "rel": "capture", "method": "POST"})
        unit: dict[str, Any] = {
            "reference_id": order.reference_id or "default",
            "amount": money(order.amount, order.currency),
            "payee": {"email_address": "cinema@example.com", "merchant_id": "FAKEMERCHANT"},
        }
        if order.custom_id is not None:
            unit["custom_id"] = order.custom_id
        if order.capture is not None:
            unit["payments"] = {"captures": [self._capture_json(order.capture)]}
        body: dict[str, Any] = {
            "id": order.id,
            "intent": "CAPTURE",
            "status": order.status,
            "purchase_units": [unit],
            "create_time": order.create_time,
            "links": links,
        }
        if order.payer_id is not None:
            body["payer"] = {
                "payer_id": order.payer_id,
                "email_address": "buyer@example.com",
                "name": {"given_name": "Test", "surname": "Buyer"},
            }
            body["payment_source"] = {
                "paypal": {"account_id": order.payer_id, "email_address": "buyer@example.com"}
            }
        return body

    def approval_url(self, order_id: str) -> str:
        return f"{CHECKOUT_HOST}/checkoutnow?token={order_id}"

    def _capture_json(self, capture: Capture) -> dict[str, Any]:
        base = f"{self.base_url}/v2/payments/captures/{capture.id}"
        body: dict[str, Any] = {
            "id": capture.id,
            "status": capture.status,
            "amount": money(capture.amount, capture.currency),
            "final_capture": True,
            "seller_protection": {"status": "ELIGIBLE"},
            "seller_receivable_breakdown": {
                "gross_amount": money(capture.amount, capture.currency),
                "paypal_fee": money(Decimal(0), capture.currency),
                "net_amount": money(capture.amount, capture.currency),
            },
            "supplementary_data": {"related_ids": {"order_id": capture.order_id}},
            "links": [
                {"href": base, "rel": "self", "method": "GET"},
                {"href": f"{base}/refund", "rel": "refund", "method": "POST"},
                {
                    "href": f"{self.base_url}/v2/checkout/orders/{capture.order_id}",
                    "rel": "up",
                    "method": "GET",
                },
            ],
            "create_time": capture.create_time,
            "update_time": _now(),
        }
        if capture.custom_id is not None:
            body["custom_id"] = capture.custom_id
        return body

    def _refund_json(self, refund: Refund) -> dict[str, Any]:
        capture = self.captures[refund.capture_id]
        return {
            "id": refund.id,
            "status": refund.status,
            "amount": money(refund.amount, capture.currency),
            "seller_payable_breakdown": {
                "gross_amount": money(refund.amount, capture.currency),
                "paypal_fee": money(Decimal(0), capture.currency),
                "net_amount": money(refund.amount, capture.currency),
                "total_refunded_amount": money(capture.refunded, capture.currency),
            },
            "links": [
                {
                    "href": f"{self.base_url}/v2/payments/refunds/{refund.id}",
                    "rel": "self",
                    "method": "GET",
                },
                {
                    "href": f"{self.base_url}/v2/payments/captures/{capture.id}",
                    "rel": "up",
                    "method": "GET",
                },
            ],
            "create_time": refund.create_time,
            "update_time": _now(),
        }

    # -----------------------------------------------------------------------------------------
    # Endpoints

    async def _token(self, request: Request) -> Response:
        with self._lock:
            self.calls[TOKEN] += 1
        scheme, _, encoded = request.headers.get("authorization", "").partition(" ")
        try:
            client_id, _, secret = base64.b64decode(encoded).decode().partition(":")
        except ValueError:
            client_id = secret = ""
        if scheme.lower() != "basic" or (client_id, secret) != (
            self.client_id,
            self.client_secret,
        ):
            return JSONResponse(
                {"error": "invalid_client", "error_description": "Client Authentication failed"},
                status_code=401,
            )
        form = parse_qs((await request.body()).decode())
        if form.get("grant_type") != ["client_credentials"]:
            return JSONResponse(
                {"error": "unsupported_grant_type", "error_description": "Grant type is NULL"},
                status_code=400,
            )
        fault = self._pop_fault(TOKEN)
        if fault is not None and fault.kind == "fail":
            return self._internal_error(fault.status)
        token = f"A21AA{secrets.token_urlsafe(48)}"
        with self._lock:
            self.token_requests += 1
            self._tokens[token] = dt.datetime.now(dt.UTC) + dt.timedelta(
                seconds=self.token_expires_in
            )
        if fault is not None:
            await asyncio.sleep(fault.seconds)
        return JSONResponse(
            {
                "scope": "https://uri.paypal.com/services/payments/payment",
                "access_token": token,
                "token_type": "Bearer",
                "app_id": "APP-80W284485P519543T",
                "expires_in": self.token_expires_in,
                "nonce": f"{_now()}{secrets.token_hex(8)}",
            }
        )

    async def _create_order(self, request: Request) -> Response:
        body = await self._json(request)
        return await self._serve(
            CREATE_ORDER, request, lambda: self._new_order(body), idempotent=True
        )

    def _new_order(self, body: Any) -> Answer:
        if not isinstance(body, dict):
            return invalid_request("MALFORMED_REQUEST_JSON", "The request JSON is not well formed.")
        if body.get("intent") != "CAPTURE":
            return invalid_request("INVALID_PARAMETER_VALUE", "This fake only knows CAPTURE.")
        units = body.get("purchase_units")
        if not isinstance(units, list) or len(units) != 1 or not isinstance(units[0], dict):
            return invalid_request("INVALID_ARRAY_LENGTH", "One purchase unit, please.")
        unit = units[0]
        amount = unit.get("amount")
        if not isinstance(amount, dict):
            return invalid_request("MISSING_REQUIRED_PARAMETER", "purchase_units[0].amount")
        currency = str(amount.get("currency_code", ""))
        if len(currency) != 3 or not currency.isupper():
            return invalid_request("INVALID_PARAMETER_VALUE", "amount.currency_code")
        try:
            value = Decimal(str(amount.get("value")))
        except InvalidOperation:
            return invalid_request("INVALID_PARAMETER_SYNTAX", "amount.value")
        if not value.is_finite() or value <= 0:
            return unprocessable("CANNOT_BE_ZERO_OR_NEGATIVE", "amount.value")
        if -int(value.as_tuple().exponent) > currency_exponent(currency):
            return unprocessable(
                "DECIMAL_PRECISION", f"{currency} does not take {amount.get('value')}."
            )
        source = body.get("payment_source")
        paypal = source.get("paypal") if isinstance(source, dict) else None
        context = paypal.get("experience_context") if isinstance(paypal, dict) else None
        order = Order(
            id=paypal_id(),
            amount=value,
            currency=currency,
            reference_id=unit.get("reference_id"),
            custom_id=unit.get("custom_id"),
            experience_context=context if isinstance(context, dict) else {},
            body=body,
            # With a PayPal payment source the customer must act at PayPal first.
            status="PAYER_ACTION_REQUIRED" if paypal is not None else "CREATED",
        )
        self.orders[order.id] = order
        # PayPal's default (return=minimal) answer.
        full = self._order_json(order)
        answer = {"id": full["id"], "status": full["status"], "links": full["links"]}
        if paypal is not None:
            answer["payment_source"] = {"paypal": {}}
        return 201, answer

    async def _get_order(self, request: Request) -> Response:
        order_id = request.path_params["order_id"]

        def work() -> Answer:
            order = self.orders.get(order_id)
            return (200, self._order_json(order)) if order else not_found("order")

        return await self._serve(GET_ORDER, request, work)

    async def _capture(self, request: Request) -> Response:
        order_id = request.path_params["order_id"]
        if request.headers.get("content-type", "").split(";")[0] != "application/json":
            return JSONResponse(
                {"name": "UNSUPPORTED_MEDIA_TYPE", "message": "Use application/json."},
                status_code=415,
            )
        return await self._serve(
            CAPTURE, request, lambda: self._capture_order(order_id), idempotent=True
        )

    def _capture_order(self, order_id: str) -> Answer:
        order = self.orders.get(order_id)
        if order is None:
            return not_found("order")
        if order.status == "COMPLETED":
            return unprocessable(
                "ORDER_ALREADY_CAPTURED", "Order already captured. Only one capture per order."
            )
        if order.expired:
            return unprocessable("ORDER_EXPIRED", "The order has expired.")
        if order.status != "APPROVED":
            return unprocessable(
                "ORDER_NOT_APPROVED", "Payer has not yet approved the Order for payment."
            )
        how, order.decline_next_capture = order.decline_next_capture, None
        if how == INSTRUMENT_DECLINED:
            status, body = unprocessable(
                INSTRUMENT_DECLINED,
                "The instrument presented was either declined by the processor or bank.",
            )
            body["links"].append(
                {"href": self.approval_url(order.id), "rel": "redirect", "method": "GET"}
            )
            return status, body
        capture = Capture(
            id=paypal_id(),
            order_id=order.id,
            amount=order.amount,
            currency=order.currency,
            custom_id=order.custom_id,
            status="DECLINED" if how == DECLINED else "COMPLETED",
        )
        order.capture = capture
        order.status = "COMPLETED"
        self.captures[capture.id] = capture
        if capture.status == "COMPLETED":
            self._emit(
                CAPTURE_COMPLETED,
                "capture",
                self._capture_json(capture),
                f"Payment completed for {money(capture.amount, capture.currency)['value']} "
                f"{capture.currency}",
            )
        else:
            self._emit(
                CAPTURE_DENIED, "capture", self._capture_json(capture), "A payment was denied"
            )
        return 201, self._order_json(order)

    async def _get_capture(self, request: Request) -> Response:
        capture_id = request.path_params["capture_id"]

        def work() -> Answer:
            capture = self.captures.get(capture_id)
            return (200, self._capture_json(capture)) if capture else not_found("capture")

        return await self._serve(GET_CAPTURE, request, work)

    async def _refund(self, request: Request) -> Response:
        capture_id = request.path_params["capture_id"]
        body = await self._json(request)

        def work() -> Answer:
            capture = self.captures.get(capture_id)
            if capture is None:
                return not_found("capture")
            if not isinstance(body, dict):
                return invalid_request("MALFORMED_REQUEST_JSON", "The request JSON is malformed.")
            amount = body.get("amount")
            if amount is None:
                return self._make_refund(capture, capture.amount - capture.refunded)
            if not isinstance(amount, dict) or amount.get("currency_code") != capture.currency:
                return unprocessable("CURRENCY_MISMATCH", "Refund and capture currencies differ.")
            try:
                value = Decimal(str(amount.get("value")))
            except InvalidOperation:
                return invalid_request("INVALID_PARAMETER_SYNTAX", "amount.value")
            return self._make_refund(capture, value)

        return await self._serve(REFUND, request, work, idempotent=True)

    def _make_refund(self, capture: Capture, amount: Decimal) -> Answer:
        if capture.status not in {"COMPLETED", "PARTIALLY_REFUNDED"}:
            return unprocessable(
                "CAPTURE_FULLY_REFUNDED", "The capture has already been fully refunded."
            )
        if amount <= 0 or amount > capture.amount - capture.refunded:
            return unprocessable(
                "REFUND_AMOUNT_EXCEEDED", "The refund amount exceeds what is left to refund."
            )
        refund = Refund(id=paypal_id(), capture_id=capture.id, amount=amount)
        capture.refunds.append(refund)
        capture.status = "REFUNDED" if capture.refunded == capture.amount else "PARTIALLY_REFUNDED"
        self.refunds[refund.id] = refund
        body = self._refund_json(refund)
        self._emit(
            CAPTURE_REFUNDED,
            "refund",
            body,
            f"A {money(amount, capture.currency)['value']} {capture.currency} capture payment "
            "was refunded",
        )
        return 201, body

    async def _verify(self, request: Request) -> Response:
        body = await self._json(request)

        def work() -> Answer:
            fields = (
                "auth_algo",
                "cert_url",
                "transmission_id",
                "transmission_sig",
                "transmission_time",
                "webhook_id",
            )
            if not isinstance(body, dict) or any(
                not isinstance(body.get(name), str) for name in fields
            ):
                return invalid_request("MISSING_REQUIRED_PARAMETER", "A signature field.")
            if not isinstance(body.get("webhook_event"), dict):
                return invalid_request("MISSING_REQUIRED_PARAMETER", "webhook_event")
            expected = self._signature(
                body["transmission_id"],
                body["transmission_time"],
                self.webhook_id,
                body["webhook_event"],
            )
            verified = body["webhook_id"] == self.webhook_id and hmac.compare_digest(
                expected, body["transmission_sig"]
            )
            return 200, {"verification_status": "SUCCESS" if verified else "FAILURE"}

        return await self._serve(VERIFY, request, work)
