from trytond.exceptions import UserError, UserWarning
from trytond.model.exceptions import ValidationError


class ContractError(ValidationError):
    pass


class AllotmentError(UserError):
    pass


class ImportError_(UserError):
    "A visitor file that cannot be read at all."


class CreditLimitWarning(UserWarning):
    pass


class GroupOrderError(UserError):
    pass


class InvoiceError(UserError):
    pass


class AmendError(UserError):
    pass


class DepositError(UserError):
    pass


class LedgerAccountError(UserError):
    pass
