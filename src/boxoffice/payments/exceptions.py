"""Payment errors: providers, intents, card attempts, state transitions and refunds."""

from __future__ import annotations

from boxoffice.core.errors import (
    BadRequest,
    BoxofficeError,
    Conflict,
    Gone,
    NotFound,
    ServiceUnavailable,
    Unprocessable,
)


class InvalidSignature(BadRequest):
    code = "invalid_signature"
    title = "The webhook signature is missing, invalid or too old"


class InvalidWebhookPayload(BadRequest):
    code = "invalid_webhook_payload"
    title = "The webhook body is not a valid event"


class UnknownProvider(NotFound):
    code = "unknown_provider"
    title = "No such payment provider is configured"


class ProviderNotConfigured(ServiceUnavailable):
    code = "payment_provider_not_configured"
    title = "The payment provider is not configured"


class ProviderError(BoxofficeError):
    """The provider failed or answered something unexpected (after its own retries)."""

    status = 502
    code = "payment_provider_error"
    title = "The payment provider failed"


class NotSupportedByProvider(Unprocessable):
    code = "not_supported_by_provider"
    title = "The payment provider does not support this operation"


class PaymentNotFound(NotFound):
    pass


class BookingNotFound(NotFound):
    pass


class BookingNotPayable(Conflict):
    code = "booking_not_payable"
    title = "The booking cannot be paid"


class BookingExpired(Gone):
    code = "booking_expired"
    title = "The booking's payment deadline has passed"


class NothingToPay(Conflict):
    code = "nothing_to_pay"
    title = "The booking has nothing to pay"


class CardDeclined(BoxofficeError):
    """A failed card attempt: the intent stays pending and may be confirmed again. The
    failure code recorded on the payment is kept although the request fails."""

    status = 402
    code = "card_declined"
    title = "The card was declined"
    commit = True


class IllegalPaymentTransition(Conflict):
    code = "illegal_payment_transition"
    title = "The payment is not in a state that allows this"


class BookingNotPaid(Conflict):
    code = "booking_not_paid"
    title = "The booking has no payment to refund"


class RefundExceedsPayment(Conflict):
    code = "refund_exceeds_payment"
    title = "The refund exceeds what is left of the payment"


class InvalidRefundAmount(Unprocessable):
    code = "invalid_refund_amount"
    title = "The refund amount must be positive"


class RefundFailed(BoxofficeError):
    status = 502
    code = "refund_failed"
    title = "The payment provider refused the refund"


class PaymentFailed(Conflict):
    """The provider will never take money on this intent (e.g. an expired PayPal order); the
    payment is recorded failed and `create-intent` makes a new one."""

    code = "payment_failed"
    title = "The payment can no longer be completed"
    commit = True


class PaymentNotApproved(Conflict):
    """A redirect-based payment (PayPal) the customer has not approved yet: nothing was taken."""

    code = "payment_not_approved"
    title = "The payment has not been approved by the customer yet"
