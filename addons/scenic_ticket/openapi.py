"""The OpenAPI 3.1 description of the booking API, served at
/<db>/scenic/v1/openapi.json and checked by the tests against the routes.
"""

from .errors import CODES, GATE_ONLY_CODES

# Generated from the one code table: what the booking API may answer.
ERROR_CODES = [c for c in CODES if c not in GATE_ONLY_CODES]

MONEY = {'type': 'string', 'pattern': r'^[0-9]+\.[0-9]{2}$',
    'examples': ['120.00']}
DATETIME = {'type': 'string', 'format': 'date-time'}


def _ref(name):
    return {'$ref': f'#/components/schemas/{name}'}


def _json(schema, description):
    return {'description': description,
        'content': {'application/json': {'schema': schema}}}


STATUS_TEXT = {
    401: "No or unknown channel key",
    404: "No such order or database",
    409: "Refused by a rule",
    422: "Invalid request (`invalid_request` names the `field`)",
    405: "Not this method",
    413: "Body too large",
    429: "Too many look-ups: wait for `Retry-After` seconds",
    }


def _errors(*statuses):
    def text(status):
        codes = ', '.join(
            f'`{c}`' for c in ERROR_CODES if CODES[c] == status)
        return f"{STATUS_TEXT[status]}: {codes}."
    return {str(s): _json(_ref('Error'), text(s)) for s in statuses}


MAX_INT = 2 ** 31 - 1


def TEXT(max_length):
    "A string the API strips and refuses empty (api._text)."
    return {'type': 'string', 'minLength': 1, 'maxLength': max_length,
        'pattern': r'\S'}


PHONE = {'type': 'string', 'minLength': 5, 'maxLength': 20,
    'pattern': r'^\+?[0-9][0-9 -]{4,19}$'}

SCHEMAS = {
    'LookupIn': {
        'type': 'object', 'required': ['id_number', 'phone', 'reference'],
        'properties': {
            'id_number': {'type': 'string', 'minLength': 1, 'maxLength': 40,
                'pattern': r'\S',
                'description': "The ID number of one of the visitors."},
            'phone': {'type': 'string', 'minLength': 5, 'maxLength': 20,
                'pattern': r'^\+?[0-9][0-9 -]{4,19}$',
                'description': "The order's contact phone."},
            'reference': {'type': 'string', 'minLength': 1,
                'maxLength': 40, 'pattern': r'\S',
                'description': "The order reference (the second factor: "
                "the visitor has it from the booking)."},
            }},
    'Error': {
        'type': 'object', 'required': ['error'],
        'properties': {'error': {
                'type': 'object', 'required': ['code', 'message'],
                'properties': {
                    'code': {'type': 'string', 'enum': ERROR_CODES},
                    'message': {'type': 'string'},
                    'field': {'type': 'string', 'description':
                        "Where in the request the problem is, e.g. "
                        "`items[0].visitors[1].id_number`."},
                    }}},
        },
    'Price': {
        'type': 'object',
        'required': ['ticket_type', 'price', 'currency'],
        'properties': {
            'ticket_type': {'type': 'string', 'description': "Its code."},
            'name': {'type': 'string'},
            'real_name': {'type': 'boolean'},
            'persons': {'type': 'integer', 'minimum': 1},
            'price': MONEY,
            'currency': {'type': 'string', 'examples': ['CNY']},
            },
        },
    'Slot': {
        'type': 'object',
        'required': ['id', 'start', 'end', 'capacity', 'available',
            'prices'],
        'properties': {
            'id': {'type': 'integer'},
            'zone': {'type': ['string', 'null']},
            'start': DATETIME, 'end': DATETIME,
            'capacity': {'type': 'integer', 'minimum': 0},
            'available': {'type': 'integer', 'minimum': 0},
            'prices': {'type': 'array', 'items': _ref('Price')},
            },
        },
    'Availability': {
        'type': 'object', 'required': ['date', 'slots'],
        'properties': {
            'date': {'type': 'string', 'format': 'date'},
            'slots': {'type': 'array', 'items': _ref('Slot')},
            },
        },
    'VisitorIn': {
        'type': 'object', 'required': ['name', 'id_number'],
        'properties': {
            'name': TEXT(100),
            'id_type': {'type': 'string', 'default': 'resident_id',
                'enum': ['resident_id', 'passport', 'hk_macau_permit',
                    'taiwan_permit']},
            'id_number': TEXT(40),
            },
        },
    'ItemIn': {
        'type': 'object', 'required': ['ticket_type'],
        'properties': {
            'ticket_type': TEXT(100),
            'visitors': {'type': 'array', 'items': _ref('VisitorIn'),
                'maxItems': 50,
                'description': "Real-name types: one visitor per person."},
            'persons': {'type': 'integer', 'minimum': 1,
                'maximum': MAX_INT,
                'description': "Types that are not real-name, e.g. "
                "groups: how many persons."},
            },
        },
    'OrderIn': {
        'type': 'object', 'required': ['slot', 'items', 'contact'],
        'properties': {
            'slot': {'type': 'integer', 'minimum': 1, 'maximum': MAX_INT},
            'items': {'type': 'array', 'minItems': 1, 'maxItems': 20,
                'items': _ref('ItemIn')},
            'contact': {
                'type': 'object', 'required': ['name', 'phone'],
                'properties': {
                    'name': TEXT(100),
                    'phone': PHONE,
                    }},
            },
        },
    'PaymentIn': {
        'type': 'object', 'required': ['provider', 'amount'],
        'properties': {
            'provider': {'type': 'string', 'examples': ['simulated']},
            'amount': MONEY,
            },
        },
    'Ticket': {
        'type': 'object',
        'required': ['id', 'ticket_type', 'state', 'code', 'qr_svg_url',
            'holder', 'persons', 'valid_from', 'valid_until'],
        'properties': {
            'id': {'type': 'integer'},
            'ticket_type': {'type': 'string'},
            'state': {'type': 'string', 'enum': [
                    'reserved', 'valid', 'used', 'cancelled', 'revoked',
                    'expired']},
            'code': {'type': ['string', 'null'], 'description':
                "The signed code to show as a QR code."},
            'qr_svg_url': {'type': 'string'},
            'holder': {'type': ['string', 'null'],
                'description': "Masked ID number."},
            'persons': {'type': 'integer'},
            'entries': {'type': 'integer',
                'description': "0 means unlimited within validity."},
            'valid_from': DATETIME, 'valid_until': DATETIME,
            },
        },
    'Order': {
        'type': 'object',
        'required': ['order', 'state', 'total', 'currency', 'lines',
            'slot', 'visit_date'],
        'properties': {
            'order': {'type': 'string', 'description': "Its reference."},
            'state': {'type': 'string', 'enum': [
                    'reserved', 'paid', 'partly_used', 'used', 'done',
                    'cancelled', 'refunded', 'expired']},
            'hold_expires_at': DATETIME,
            'total': MONEY,
            'currency': {'type': 'string'},
            'visit_date': {'type': 'string', 'format': 'date'},
            'slot': {'type': 'object', 'properties': {
                    'id': {'type': 'integer'},
                    'start': DATETIME, 'end': DATETIME}},
            'contact': {'type': 'object', 'properties': {
                    'name': {'type': 'string'}}},
            'lines': {'type': 'array', 'items': {
                    'type': 'object', 'properties': {
                        'ticket_type': {'type': 'string'},
                        'name': {'type': 'string'},
                        'quantity': {'type': 'integer'},
                        'persons': {'type': 'integer'},
                        'unit_price': MONEY,
                        'amount': MONEY}}},
            'tickets': {'type': 'array', 'items': _ref('Ticket')},
            },
        },
    }

REFERENCE = {'name': 'order', 'in': 'path', 'required': True,
    'schema': {'type': 'string'}}


def openapi_document():
    return {
        'openapi': '3.1.0',
        'info': {
            'title': "Scenic booking API",
            'version': '1.0.0',
            'description': "Real-name timed reservation for scenic areas. "
            "Money is a decimal string; times are ISO 8601 with offset. "
            "Each channel authenticates with its own key.",
            },
        'servers': [{'url': '/{database}/scenic/v1', 'variables': {
                    'database': {'default': 'demo'}}}],
        'security': [{'channelKey': []}],
        'components': {
            'securitySchemes': {'channelKey': {
                    'type': 'http', 'scheme': 'bearer'}},
            'schemas': SCHEMAS,
            },
        'paths': {
            '/availability': {'get': {
                    'operationId': 'getAvailability',
                    'summary': "Slots of a day with what is left and prices",
                    'parameters': [{'name': 'date', 'in': 'query',
                            'required': True, 'schema': {
                                'type': 'string', 'format': 'date'}}],
                    'responses': {
                        '200': _json(_ref('Availability'), "The slots."),
                        **_errors(401, 422)},
                    }},
            '/orders': {
                'post': {
                    'operationId': 'createOrder',
                    'summary': "Hold places for named visitors or a group",
                    'parameters': [{'name': 'Idempotency-Key',
                            'in': 'header', 'required': True,
                            'schema': {'type': 'string', 'maxLength': 200},
                            'description': "The same key and body again "
                            "returns the same order."}],
                    'requestBody': {'required': True, 'content': {
                            'application/json': {
                                'schema': _ref('OrderIn')}}},
                    'responses': {
                        '201': _json(_ref('Order'), "Held (reserved)."),
                        **_errors(401, 409, 422)},
                    },
                'get': {
                    'operationId': 'findOrdersByQuery',
                    'deprecated': True,
                    'summary': "Gone: ID numbers and phones never go in a "
                    "URL; use POST /orders/lookup",
                    'responses': {**_errors(401, 405)},
                    },
                },
            '/orders/lookup': {
                'post': {
                    'operationId': 'findOrdersForPickup',
                    'summary': "On-site pickup: the order of this reference "
                    "if one of its visitors has this ID number and its "
                    "contact this phone (all three must match). At most "
                    "30 look-ups a minute per client address and 10 "
                    "failed ones an hour per phone (429 with Retry-After).",
                    'requestBody': {'required': True, 'content': {
                            'application/json': {
                                'schema': _ref('LookupIn')}}},
                    'responses': {
                        '200': _json({'type': 'object',
                                'required': ['orders'], 'properties': {
                                    'orders': {'type': 'array',
                                        'items': _ref('Order')}}},
                            "Matching orders (none: nothing matched)."),
                        '429': {'description': STATUS_TEXT[429] + '.',
                            'headers': {'Retry-After': {
                                    'schema': {'type': 'integer'},
                                    'description': "Seconds to wait."}},
                            'content': {'application/json': {
                                    'schema': _ref('Error')}}},
                        **_errors(401, 413, 422)},
                    },
                },
            '/orders/{order}': {'get': {
                    'operationId': 'getOrder',
                    'parameters': [REFERENCE],
                    'responses': {
                        '200': _json(_ref('Order'), "The order."),
                        **_errors(401, 404)},
                    }},
            '/orders/{order}/pay': {'post': {
                    'operationId': 'payOrder',
                    'parameters': [REFERENCE],
                    'requestBody': {'required': True, 'content': {
                            'application/json': {
                                'schema': _ref('PaymentIn')}}},
                    'responses': {
                        '200': _json(_ref('Order'),
                            "Paid, with its tickets."),
                        **_errors(401, 404, 409, 422)},
                    }},
            '/orders/{order}/cancel': {'post': {
                    'operationId': 'cancelOrder',
                    'summary': "Cancel a hold, or refund as the ticket "
                    "types allow; places come back, codes are revoked",
                    'parameters': [REFERENCE],
                    'responses': {
                        '200': _json(_ref('Order'), "The new state."),
                        **_errors(401, 404, 409)},
                    }},
            '/orders/{order}/tickets/{ticket}/qr.svg': {'get': {
                    'operationId': 'getTicketQr',
                    'security': [],
                    'summary': "A ticket's QR code; the order reference "
                    "is the credential",
                    'parameters': [REFERENCE, {'name': 'ticket',
                            'in': 'path', 'required': True,
                            'schema': {'type': 'integer', 'minimum': 0}}],
                    'responses': {
                        '200': {'description': "SVG image", 'content': {
                                'image/svg+xml': {}}},
                        **_errors(404)},
                    }},
            '/openapi.json': {'get': {
                    'operationId': 'getOpenAPI',
                    'security': [],
                    'responses': {'200': {
                            'description': "This document."}},
                    }},
            },
        }
