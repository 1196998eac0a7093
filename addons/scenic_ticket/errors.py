"""The errors of Scenic's HTTP APIs: one code table, one exception.

Every refusal an API answers is `{'error': {code, message, field}}` with the
HTTP status the code maps to in CODES. The booking API's OpenAPI error enum
is generated from CODES (openapi.py), the gate API uses the same table, and
a test checks that the booking page's JavaScript knows each code a booking
can meet. The codes are a contract: clients branch on them, so add codes,
never rename them.
"""

# code -> HTTP status. Order: as documented in the OpenAPI description.
CODES = {
    'sold_out': 409,
    'id_limit': 409,
    'daily_limit': 409,
    'idempotency_conflict': 409,
    'not_payable': 409,
    'not_cancellable': 409,
    'hold_limit': 409,
    'invalid_id_number': 422,
    'invalid_request': 422,
    'amount_mismatch': 422,
    'payment_failed': 402,
    'unauthorized': 401,
    'not_found': 404,
    'method_not_allowed': 405,
    'internal_error': 500,
    # issue 15: look-ups over their rate limit (Retry-After), big bodies
    'too_many_requests': 429,
    'payload_too_large': 413,
    # The gate protocol: a revoked box's requests.
    'revoked': 409,
    # A box that is not a site uploading sales (issue 12).
    'not_a_site': 403,
    # The database went away under the request (a failover, a restart) or
    # stayed too contended: come back after Retry-After (issue 12).
    'unavailable': 503,
    }

# What only the gate API (boxes, not browsers) answers.
GATE_ONLY_CODES = frozenset({'revoked', 'not_a_site'})


class ApiError(Exception):
    "A refusal an API reports as {'error': {code, message, field}}."

    def __init__(self, code, message, field=None):
        if code not in CODES:
            raise ValueError(f"Unknown API error code {code!r}")
        super().__init__(message)
        self.code = code
        self.message = message
        self.field = field

    @property
    def status(self):
        return CODES[self.code]

    def as_json(self):
        body = {'code': self.code, 'message': self.message}
        if self.field:
            body['field'] = self.field
        return {'error': body}


class Unavailable(ApiError):
    "503 unavailable, with the seconds to wait (Retry-After)."

    def __init__(self, message, retry_after):
        super().__init__('unavailable', message)
        self.retry_after = max(1, int(retry_after))


# The name the booking code and its callers have used since the start.
BookingError = ApiError
