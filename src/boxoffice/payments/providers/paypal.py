"""PayPal through its REST API (Orders v2, Payments v2, Notifications v1) with one `httpx`
client; PayPal's own SDK is synchronous and fixes the hosts, which tests replace.

Flow: `create_intent` creates an order (intent CAPTURE) and returns the approval link; the
customer approves at PayPal and comes back to the cinema's checkout page, which asks us to
capture (`confirm`); the `CHECKOUT.ORDER.APPROVED` webhook and reconciliation capture too,
should the customer never come back. Our payment's `provider_ref` is the ORDER id; captures
and refunds are found through it.

Every POST carries a `PayPal-Request-Id`, so a timed-out or 5xx call is retried without
creating or capturing twice. OAuth2 access tokens are cached until shortly before they expire
and renewed once when PayPal answers 401.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import re
import time
import uuid
from collections.abc import Mapping
from decimal import Decimal, InvalidOperation
from typing import Any

import httpx
import structlog

from boxoffice.config import Settings
from boxoffice.core import admission
from boxoffice.payments.exceptions import (
    InvalidSignature,
    InvalidWebhookPayload,
    NotSupportedByProvider,
    ProviderError,
    ProviderNotConfigured,
)
from boxoffice.payments.providers.base import (
    ConfirmResult,
    ConfirmStatus,
    EventType,
    IntentResult,
    IntentStatus,
    PaymentProvider,
    ProviderEvent,
    RefundResult,
    RefundStatus,
    currency_exponent,
    to_minor_units,
)

log = structlog.get_logger(__name__)

PAYPAL = "paypal"
# The headers PayPal signs its webhook deliveries with (names are case-insensitive).
WEBHOOK_HEADERS = {
    "auth_algo": "paypal-auth-algo",
    "cert_url": "paypal-cert-url",
    "transmission_id": "paypal-transmission-id",
    "transmission_sig": "paypal-transmission-sig",
    "transmission_time": "paypal-transmission-time",
}
_MAX_HEADER_LENGTH = 2048
# PayPal stores a PayPal-Request-Id of at most 108 characters.
_MAX_REQUEST_ID = 108

ORDER_STATUSES = {
    "CREATED": IntentStatus.PENDING,
    "SAVED": IntentStatus.PENDING,
    "PAYER_ACTION_REQUIRED": IntentStatus.PENDING,
    "APPROVED": IntentStatus.APPROVED,
    "COMPLETED": IntentStatus.SUCCEEDED,
    "VOIDED": IntentStatus.CANCELLED,
}
REFUND_STATUSES = {"COMPLETED": RefundStatus.SUCCEEDED, "PENDING": RefundStatus.PENDING}
# Capture errors that fail this attempt; the customer may approve another funding source.
DECLINE_ISSUES = frozenset(
    {"INSTRUMENT_DECLINED", "TRANSACTION_REFUSED", "PAYER_CANNOT_PAY", "CARD_EXPIRED"}
)
NOT_APPROVED_ISSUES = frozenset({"ORDER_NOT_APPROVED", "PAYER_ACTION_REQUIRED"})
_CAPTURE_LINK = re.compile(r"/v2/payments/captures/([A-Za-z0-9-]{1,64})/?$")


def paypal_money(amount: Decimal, currency: str) -> dict[str, str]:
    """PayPal's Money object: the value with exactly the currency's decimals ("12.50",
    "1000" for JPY); amounts finer than the currency's unit are refused."""
    try:
        to_minor_units(amount, currency)
    except ValueError:
        raise NotSupportedByProvider(
            f"PayPal cannot take {amount} {currency}: finer than the currency's smallest unit."
        ) from None
    exponent = currency_exponent(currency)
    return {
        "currency_code": currency.upper(),
        "value": str(amount.quantize(Decimal(1).scaleb(-exponent))),
    }


def parse_money(money: Any) -> Decimal | None:
    """A PayPal Money object as a Decimal with at least two places, None if absent."""
    if not isinstance(money, Mapping):
        return None
    try:
        value = Decimal(str(money.get("value")))
    except InvalidOperation:
        return None
    if not value.is_finite():
        return None
    places = max(currency_exponent(str(money.get("currency_code", ""))), 2)
    return value.quantize(Decimal(1).scaleb(-places))


def capture_request_id(order_id: str) -> str:
    """One capture per order: whoever captures (the customer's return, the webhook,
    reconciliation) sends the same id, so PayPal answers a repeat with the first capture."""
    return f"capture-{order_id}"


def _request_id(key: str) -> str:
    if len(key) <= _MAX_REQUEST_ID:
        return key
    return "sha256-" + hashlib.sha256(key.encode()).hexdigest()


def _link(resource: Mapping[str, Any], *rels: str) -> str | None:
    links = resource.get("links")
    if not isinstance(links, list):
        return None
    for rel in rels:
        for link in links:
            if isinstance(link, Mapping) and link.get("rel") == rel:
                href = link.get("href")
                if isinstance(href, str):
                    return href
    return None


def _captures(order: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    captures: list[Mapping[str, Any]] = []
    units = order.get("purchase_units")
    for unit in units if isinstance(units, list) else []:
        payments = unit.get("payments") if isinstance(unit, Mapping) else None
        found = payments.get("captures") if isinstance(payments, Mapping) else None
        captures += [c for c in found or [] if isinstance(c, Mapping)]
    return captures


def _related_order_id(resource: Mapping[str, Any]) -> str | None:
    """The order of a capture: `supplementary_data.related_ids.order_id`."""
    data = resource.get("supplementary_data")
    related = data.get("related_ids") if isinstance(data, Mapping) else None
    order_id = related.get("order_id") if isinstance(related, Mapping) else None
    return order_id if isinstance(order_id, str) and order_id else None


def _issue(body: Mapping[str, Any]) -> str | None:
    """The first `details[].issue` of a PayPal error (the machine-readable reason)."""
    details = body.get("details")
    if isinstance(details, list):
        for detail in details:
            if isinstance(detail, Mapping) and isinstance(detail.get("issue"), str):
                return str(detail["issue"])
    name = body.get("name") or body.get("error")
    return str(name) if name else None


def _json_object(response: httpx.Response) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


class PayPalProvider(PaymentProvider):
    name = PAYPAL

    def __init__(self, settings: Settings) -> None:
        if not settings.paypal_client_id or settings.paypal_client_secret is None:
            raise ProviderNotConfigured("PayPal needs a client id and a client secret.")
        self._client_id = settings.paypal_client_id
        self._client_secret = settings.paypal_client_secret
        self._webhook_id = settings.paypal_webhook_id
        self._return_url = settings.paypal_return_url
        self._cancel_url = settings.paypal_cancel_url
        self._retries = settings.payment_provider_retries
        self._http = httpx.AsyncClient(
            base_url=settings.paypal_api_base.rstrip("/"),
            timeout=httpx.Timeout(settings.payment_provider_timeout),
            headers={"Accept": "application/json"},
        )
        self._token: str | None = None
        self._token_renew_at = 0.0
        self._token_lock = asyncio.Lock()

    async def aclose(self) -> None:
        await self._http.aclose()

    # -----------------------------------------------------------------------------------------
    # Transport: retries, the access token, errors

    async def _send(self, request: httpx.Request, what: str) -> httpx.Response:
        """Send, retrying timeouts, network failures, 429 and 5xx. Callers give every POST
        that changes something a PayPal-Request-Id, so a retry of a call whose answer was
        lost replays the first result."""
        admission.leave()  # no place held while PayPal answers (core.admission)
        attempt = 0
        while True:
            debug_id: str | None = None
            try:
                response = await self._http.send(request)
            except (httpx.TimeoutException, httpx.NetworkError, httpx.RemoteProtocolError) as exc:
                failure = type(exc).__name__
            else:
                if response.status_code < 500 and response.status_code != 429:
                    return response
                failure = f"HTTP {response.status_code}"
                debug_id = response.headers.get("paypal-debug-id")
            if attempt >= self._retries:
                log.warning(
                    "paypal_call_failed",
                    call=what,
                    failure=failure,
                    attempts=attempt + 1,
                    debug_id=debug_id,
                )
                raise ProviderError(
                    f"PayPal did not answer {what} ({failure}) after {attempt + 1} attempts.",
                    provider=PAYPAL,
                )
            attempt += 1
            log.info(
                "paypal_call_retried",
                call=what,
                failure=failure,
                attempt=attempt,
                debug_id=debug_id,
            )
            await asyncio.sleep(min(2.0, 0.05 * 2**attempt))

    def _basic_credentials(self) -> str:
        pair = f"{self._client_id}:{self._client_secret.get_secret_value()}"
        return "Basic " + base64.b64encode(pair.encode()).decode()

    async def _access_token(self, *, stale: str | None = None) -> str:
        """The cached token, fetched when missing, about to expire, or equal to `stale` (the
        one PayPal just refused). One fetch at a time: concurrent callers share it."""
        async with self._token_lock:
            if (
                self._token is not None
                and self._token != stale
                and time.monotonic() < self._token_renew_at
            ):
                return self._token
            request = self._http.build_request(
                "POST",
                "/v1/oauth2/token",
                data={"grant_type": "client_credentials"},
                headers={"Authorization": self._basic_credentials()},
            )
            started = time.monotonic()
            response = await self._send(request, "the token request")
            body = _json_object(response)
            token = body.get("access_token")
            if response.status_code != 200 or not isinstance(token, str) or not token:
                raise ProviderError(
                    "PayPal refused the client credentials (BOXOFFICE_PAYPAL_CLIENT_ID and "
                    f"BOXOFFICE_PAYPAL_CLIENT_SECRET): {_issue(body) or response.status_code}.",
                    code="payment_provider_auth_failed",
                    provider=PAYPAL,
                )
            try:
                lifetime = float(body.get("expires_in", 0))
            except (TypeError, ValueError):
                lifetime = 0.0
            # Renewed a little before PayPal's expiry, so no call carries a dying token.
            self._token = token
            self._token_renew_at = started + lifetime - min(300.0, lifetime * 0.1)
            return token

    async def _call(
        self,
        method: str,
        path: str,
        what: str,
        *,
        json_body: Any = None,
        content: bytes | None = None,
        request_id: str | None = None,
        representation: bool = False,
    ) -> httpx.Response:
        """One API call with the bearer token (renewed once on 401), retried per `_send`.
        Answers 2xx and 4xx; the caller judges a 4xx."""
        token = await self._access_token()
        renewed = False
        while True:
            headers = {"Authorization": f"Bearer {token}"}
            if request_id is not None:
                headers["PayPal-Request-Id"] = _request_id(request_id)
            if representation:
                headers["Prefer"] = "return=representation"
            if content is not None:
                headers["Content-Type"] = "application/json"
            request = self._http.build_request(
                method, path, json=json_body, content=content, headers=headers
            )
            response = await self._send(request, what)
            if response.status_code == 401 and not renewed:
                renewed = True
                token = await self._access_token(stale=token)
                continue
            return response

    def _rejected(self, response: httpx.Response, what: str) -> ProviderError:
        """A 4xx answer as a clear error: PayPal's issue, message and debug id, no secrets."""
        body = _json_object(response)
        issue = _issue(body) or f"HTTP_{response.status_code}"
        message = body.get("message") or body.get("error_description") or ""
        if response.status_code == 401:
            code = "payment_provider_auth_failed"
        elif response.status_code == 404:
            code = "payment_provider_not_found"
        else:
            code = "payment_provider_rejected"
        log.warning("paypal_call_rejected", call=what, status=response.status_code, issue=issue)
        return ProviderError(
            f"PayPal refused {what}: {issue}{f' ({message})' if message else ''}.",
            code=code,
            provider=PAYPAL,
            providerStatus=response.status_code,
            providerIssue=issue,
            debugId=body.get("debug_id") or response.headers.get("paypal-debug-id"),
        )

    async def _get_json(self, path: str, what: str) -> dict[str, Any]:
        response = await self._call("GET", path, what)
        if response.status_code != 200:
            raise self._rejected(response, what)
        return _json_object(response)

    # -----------------------------------------------------------------------------------------
    # Orders, captures, refunds

    async def create_intent(
        self, amount: Decimal, currency: str, booking_id: uuid.UUID, idempotency_key: str
    ) -> IntentResult:
        order = {
            "intent": "CAPTURE",
            "purchase_units": [
                {
                    "reference_id": str(booking_id),
                    "custom_id": str(booking_id),
                    "amount": paypal_money(amount, currency),
                }
            ],
            "payment_source": {
                "paypal": {
                    "experience_context": {
                        "return_url": self._return_url,
                        "cancel_url": self._cancel_url,
                        "user_action": "PAY_NOW",
                        "shipping_preference": "NO_SHIPPING",
                    }
                }
            },
        }
        what = "the order"
        response = await self._call(
            "POST", "/v2/checkout/orders", what, json_body=order, request_id=idempotency_key
        )
        if response.status_code not in (200, 201):
            raise self._rejected(response, what)
        body = _json_object(response)
        order_id = body.get("id")
        if not isinstance(order_id, str) or not order_id:
            raise ProviderError("PayPal answered an order without an id.", provider=PAYPAL)
        return IntentResult(
            provider_ref=order_id,
            client_secret=None,
            status=IntentStatus.PENDING,
            approval_url=_link(body, "payer-action", "approve"),
        )

    async def confirm(self, provider_ref: str, card: str | None) -> ConfirmResult:
        """Capture the approved order (`card` is meaningless here: the customer chose the
        funding source at PayPal)."""
        what = "the capture"
        response = await self._call(
            "POST",
            f"/v2/checkout/orders/{_path(provider_ref)}/capture",
            what,
            content=b"{}",
            request_id=capture_request_id(provider_ref),
            representation=True,
        )
        if response.status_code in (200, 201):
            return _capture_outcome(_json_object(response))
        issue = _issue(_json_object(response)) if response.status_code == 422 else None
        if issue in DECLINE_ISSUES:
            return ConfirmResult(
                ConfirmStatus.DECLINED,
                issue.lower(),
                "PayPal declined the payment; the customer may approve another way to pay.",
            )
        if issue in NOT_APPROVED_ISSUES:
            return ConfirmResult(
                ConfirmStatus.REQUIRES_ACTION,
                "order_not_approved",
                "The customer has not approved the payment at PayPal yet.",
            )
        if issue == "ORDER_ALREADY_CAPTURED":
            # Captured by an earlier call: report that capture's outcome.
            order = await self._get_json(f"/v2/checkout/orders/{_path(provider_ref)}", "the order")
            return _capture_outcome(order)
        if issue in {"ORDER_EXPIRED", "ORDER_COMPLETED_OR_VOIDED"}:
            return ConfirmResult(
                ConfirmStatus.FAILED,
                issue.lower(),
                "The PayPal order can no longer be paid; create a new payment.",
            )
        raise self._rejected(response, what)

    async def retrieve(self, provider_ref: str) -> IntentResult:
        order = await self._get_json(f"/v2/checkout/orders/{_path(provider_ref)}", "the order")
        status = ORDER_STATUSES.get(str(order.get("status")))
        if status is None:
            raise ProviderError(
                f"PayPal answered an unknown order status {str(order.get('status'))[:40]!r}.",
                provider=PAYPAL,
            )
        if status == IntentStatus.SUCCEEDED:
            status = _completed_order_status(order)
        return IntentResult(
            provider_ref=provider_ref,
            client_secret=None,
            status=status,
            approval_url=_link(order, "payer-action", "approve"),
        )

    async def refund(
        self, provider_ref: str, amount: Decimal, currency: str, idempotency_key: str
    ) -> RefundResult:
        order = await self._get_json(f"/v2/checkout/orders/{_path(provider_ref)}", "the order")
        capture_id = next(
            (
                c["id"]
                for c in _captures(order)
                if isinstance(c.get("id"), str)
                and c.get("status") in {"COMPLETED", "PARTIALLY_REFUNDED", "REFUNDED"}
            ),
            None,
        )
        if capture_id is None:
            raise ProviderError(
                "The PayPal order has no completed capture to refund.",
                code="payment_provider_rejected",
                provider=PAYPAL,
            )
        what = "the refund"
        response = await self._call(
            "POST",
            f"/v2/payments/captures/{_path(capture_id)}/refund",
            what,
            json_body={"amount": paypal_money(amount, currency)},
            request_id=idempotency_key,
            representation=True,
        )
        if response.status_code == 422:
            issue = _issue(_json_object(response))
            log.warning("paypal_refund_refused", issue=issue)
            return RefundResult(provider_ref="", status=RefundStatus.FAILED)
        if response.status_code not in (200, 201):
            raise self._rejected(response, what)
        body = _json_object(response)
        return RefundResult(
            provider_ref=str(body.get("id", "")),
            status=REFUND_STATUSES.get(str(body.get("status")), RefundStatus.FAILED),
        )

    async def cancel(self, provider_ref: str) -> None:
        # Orders with intent CAPTURE cannot be voided through PayPal's API; an unpaid one
        # lapses on its own. Should the customer still pay it, the success finds a cancelled
        # payment and the service refunds it.
        return None

    # -----------------------------------------------------------------------------------------
    # Webhooks

    async def verify_webhook(self, headers: Mapping[str, str], raw_body: bytes) -> ProviderEvent:
        lowered = {key.lower(): value for key, value in headers.items()}
        signed: dict[str, str] = {}
        for field_name, header in WEBHOOK_HEADERS.items():
            value = lowered.get(header)
            if not value or len(value) > _MAX_HEADER_LENGTH:
                raise InvalidSignature(f"The {header.upper()} header is missing or malformed.")
            signed[field_name] = value
        try:
            text = raw_body.decode("utf-8")
            event = json.loads(text)
        except ValueError:  # UnicodeDecodeError included
            raise InvalidWebhookPayload("The body is not JSON in UTF-8.") from None
        if not isinstance(event, dict):
            raise InvalidWebhookPayload("The body is not a JSON object.")
        if not self._webhook_id:
            raise ProviderNotConfigured(
                "PayPal webhooks cannot be verified: BOXOFFICE_PAYPAL_WEBHOOK_ID is not set."
            )
        await self._verify_signature(signed, self._webhook_id, text)
        return await self._parse_event(event)

    async def _verify_signature(
        self, signed: Mapping[str, str], webhook_id: str, body: str
    ) -> None:
        """PayPal's verify-webhook-signature call. The event goes in as received:
        re-serialising it may change it (number formats, escapes) and fail the check."""
        envelope = json.dumps({**signed, "webhook_id": webhook_id})
        content = f'{envelope[:-1]}, "webhook_event": {body.strip()}}}'.encode()
        what = "the webhook verification"
        response = await self._call(
            "POST", "/v1/notifications/verify-webhook-signature", what, content=content
        )
        if response.status_code != 200:
            raise self._rejected(response, what)
        if _json_object(response).get("verification_status") != "SUCCESS":
            raise InvalidSignature("PayPal did not verify the webhook signature.")

    async def _parse_event(self, event: Mapping[str, Any]) -> ProviderEvent:
        event_id, event_type = event.get("id"), event.get("event_type")
        resource = event.get("resource")
        if (
            not isinstance(event_id, str)
            or not 0 < len(event_id) <= 120
            or not isinstance(event_type, str)
            or not 0 < len(event_type) <= 64
            or not isinstance(resource, Mapping)
        ):
            raise InvalidWebhookPayload('Expected {"id", "event_type", "resource": {...}}.')
        order_id: str | None = None
        amount: Decimal | None = None
        failure_code: str | None = None
        mapped = event_type
        if event_type == "CHECKOUT.ORDER.APPROVED":
            mapped, order_id = EventType.APPROVED, _str(resource.get("id"))
        elif event_type == "PAYMENT.CAPTURE.COMPLETED":
            mapped, order_id = EventType.SUCCEEDED, _related_order_id(resource)
            amount = parse_money(resource.get("amount"))
        elif event_type == "PAYMENT.CAPTURE.DENIED":
            mapped, order_id = EventType.PAYMENT_FAILED, _related_order_id(resource)
            failure_code = "capture_denied"
        elif event_type == "PAYMENT.CAPTURE.REFUNDED":
            mapped = EventType.REFUNDED
            order_id = await self._order_of_capture(_capture_id_from_link(resource))
            breakdown = resource.get("seller_payable_breakdown")
            if isinstance(breakdown, Mapping):
                # The total refunded so far, which the service compares with what it knows.
                amount = parse_money(breakdown.get("total_refunded_amount"))
        elif event_type == "CUSTOMER.DISPUTE.CREATED":
            mapped = EventType.DISPUTE_CREATED
            order_id = await self._order_of_capture(_disputed_capture_id(resource))
            amount = parse_money(resource.get("dispute_amount"))
        elif event_type.startswith("CHECKOUT.ORDER."):
            order_id = _str(resource.get("id"))
        elif event_type.startswith("PAYMENT.CAPTURE."):
            order_id = _related_order_id(resource)
        return ProviderEvent(
            event_id=event_id,
            type=mapped,
            provider_ref=order_id,
            amount=amount,
            failure_code=failure_code,
            data=dict(event),
        )

    async def _order_of_capture(self, capture_id: str | None) -> str | None:
        if capture_id is None:
            return None
        what = "the capture"
        response = await self._call("GET", f"/v2/payments/captures/{_path(capture_id)}", what)
        if response.status_code == 404:
            return None  # not one of ours: the event is stored only
        if response.status_code != 200:
            raise self._rejected(response, what)
        return _related_order_id(_json_object(response))


def _str(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def _path(segment: str) -> str:
    """An id as one URL path segment (PayPal ids are alphanumeric; anything else is refused
    rather than allowed to reach another path)."""
    if not re.fullmatch(r"[A-Za-z0-9_-]{1,64}", segment):
        raise ProviderError(
            f"{segment[:64]!r} is not a PayPal id.",
            code="payment_provider_not_found",
            provider=PAYPAL,
        )
    return segment


def _capture_id_from_link(refund: Mapping[str, Any]) -> str | None:
    """A refund's capture, from its `up` link (`.../v2/payments/captures/<id>`)."""
    href = _link(refund, "up")
    match = _CAPTURE_LINK.search(httpx.URL(href).path) if href else None
    return match.group(1) if match else None


def _disputed_capture_id(dispute: Mapping[str, Any]) -> str | None:
    transactions = dispute.get("disputed_transactions")
    for transaction in transactions if isinstance(transactions, list) else []:
        if isinstance(transaction, Mapping):
            capture_id = _str(transaction.get("seller_transaction_id"))
            if capture_id is not None:
                return capture_id
    return None


def _capture_outcome(order: Mapping[str, Any]) -> ConfirmResult:
    """What a capture answer (or a captured order) means for the payment."""
    captures = _captures(order)
    status = str(captures[0].get("status")) if captures else None
    if status in {"COMPLETED", "PARTIALLY_REFUNDED", "REFUNDED"}:
        return ConfirmResult(ConfirmStatus.SUCCEEDED)
    if status == "PENDING":
        # PayPal holds the money for review; PAYMENT.CAPTURE.COMPLETED confirms it later.
        return ConfirmResult(
            ConfirmStatus.REQUIRES_ACTION,
            "capture_pending",
            "PayPal is still processing the payment; the booking is confirmed when it clears.",
        )
    if status in {"DECLINED", "FAILED"}:
        return ConfirmResult(
            ConfirmStatus.DECLINED, "capture_declined", "PayPal declined the payment."
        )
    raise ProviderError(
        f"PayPal answered a capture in an unknown state ({str(status)[:40]}).", provider=PAYPAL
    )


def _completed_order_status(order: Mapping[str, Any]) -> str:
    """A COMPLETED order took the money unless its capture is still pending or was declined
    (then the order is spent and nothing will ever be paid through it)."""
    captures = _captures(order)
    status = str(captures[0].get("status")) if captures else "COMPLETED"
    if status == "PENDING":
        return IntentStatus.PENDING
    if status in {"DECLINED", "FAILED"}:
        return IntentStatus.CANCELLED
    return IntentStatus.SUCCEEDED
