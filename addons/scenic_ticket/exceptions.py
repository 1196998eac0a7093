from trytond.exceptions import UserError
from trytond.model.exceptions import ValidationError


class ZoneValidationError(ValidationError):
    pass


class SlotValidationError(ValidationError):
    pass


class TicketTypeValidationError(ValidationError):
    pass


class PriceRuleValidationError(ValidationError):
    pass


class IDNumberError(ValidationError):
    pass


class PIIConfigurationError(UserError):
    pass


class SlotGenerationError(UserError):
    pass


class SigningKeyError(UserError):
    pass


class ChannelKeyError(UserError):
    pass


class StateError(UserError):
    pass
