from trytond.exceptions import UserError
from trytond.model.exceptions import AccessError


class CounterError(UserError):
    "A refusal at the window, with a stable code for the counter page."

    def __init__(self, code, message, *args, **kwargs):
        super().__init__(message, *args, **kwargs)
        self.code = code


class ShiftAccessError(AccessError):
    pass
