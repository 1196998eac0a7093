from trytond.exceptions import UserError
from trytond.model.exceptions import ValidationError


class GateValidationError(ValidationError):
    pass


class RuleValidationError(ValidationError):
    pass


class CardValidationError(ValidationError):
    pass


class CardStateError(UserError):
    pass


class BoxStateError(UserError):
    pass


class DeletionError(UserError):
    pass


class SiteError(UserError):
    pass


class GateConfigurationError(UserError):
    pass
