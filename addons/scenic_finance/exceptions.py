from trytond.exceptions import UserError
from trytond.model.exceptions import ValidationError


class PostingRuleError(ValidationError):
    pass


class PostingError(UserError):
    pass


class SettlementError(UserError):
    pass


class CloseError(UserError):
    pass


class ImportError_(UserError):
    pass
