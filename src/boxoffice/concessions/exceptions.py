"""Concessions errors: the snack menu, stock and the pickup counter."""

from __future__ import annotations

from boxoffice.core.errors import Conflict, NotFound, Unprocessable


class SnackNotFound(NotFound):
    code = "snack_not_found"
    title = "No such snack"


class SnackInUse(Conflict):
    code = "snack_in_use"
    title = "The snack has been sold"


class SnackUnavailable(Conflict):
    code = "snack_unavailable"
    title = "The snack is not available"


class OutOfStock(Conflict):
    code = "out_of_stock"
    title = "Not enough of the snack left"


class InvalidSnackOrder(Unprocessable):
    code = "invalid_snack_order"
    title = "Invalid snack order"


class PickupNotFound(NotFound):
    code = "pickup_not_found"
    title = "No order with this pickup code"


class AlreadyCollected(Conflict):
    code = "already_collected"
    title = "The order was already collected"


class NotCollectable(Conflict):
    code = "not_collectable"
    title = "The order cannot be collected"
