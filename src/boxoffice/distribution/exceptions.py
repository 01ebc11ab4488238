"""Distribution errors (problem codes)."""

from __future__ import annotations

from boxoffice.core.errors import Conflict, NotFound, Unprocessable


class DistributorNotFound(NotFound):
    code = "distributor_not_found"


class ContractNotFound(NotFound):
    code = "contract_not_found"


class SettlementEntryNotFound(NotFound):
    code = "settlement_entry_not_found"


class InvalidContract(Unprocessable):
    code = "invalid_contract"


class DistributorInUse(Conflict):
    code = "distributor_in_use"


class ContractInUse(Conflict):
    code = "contract_in_use"


class DistributorNameTaken(Conflict):
    code = "distributor_name_taken"


class NoValidContract(Conflict):
    code = "no_valid_contract"
    title = "No valid rental contract"


class AlreadyPaid(Conflict):
    code = "settlement_already_paid"
