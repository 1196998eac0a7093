"""Errors the gate API answers as {'error': {code, message, field}}."""
from scenic_ticket.reservation import BookingError


class GateError(BookingError):
    "The booking API's error shape, with the gate protocol's codes."
    STATUS = dict(BookingError.STATUS, revoked=409, internal_error=500)
