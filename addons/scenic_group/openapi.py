"""The OpenAPI 3.1 description of the partner API, served unsigned at
/<db>/scenic/partner/v1/openapi.json and checked by the tests against the
routes. Visitor, item and order shapes are the booking API's."""
import copy

from scenic_common import partnercode
from scenic_ticket.openapi import DATETIME, MONEY, SCHEMAS as BOOKING

ERROR_CODES = [
    'bad_signature', 'stale_request', 'replayed_nonce', 'no_contract',
    'allotment_exhausted', 'credit_limit', 'deposit_insufficient',
    'sold_out', 'id_limit', 'daily_limit', 'idempotency_conflict',
    'not_payable', 'not_cancellable', 'not_refundable', 'invalid_id_number',
    'invalid_request', 'amount_mismatch', 'not_found', 'internal_error',
    'malformed_code', 'duplicate_code',
    ]

SIGNING = (
    "Every call but this document is signed. Send `X-Scenic-Key` (your key "
    "id), `X-Scenic-Timestamp` (Unix seconds), `X-Scenic-Nonce` (8–64 "
    "characters of `A-Z a-z 0-9 . _ ~ -`, new for each request) and "
    "`X-Scenic-Signature`: lowercase hex HMAC-SHA256(secret, canonical), "
    "where canonical is six lines joined by `\\n`: the method in upper "
    "case, the full request path as sent (e.g. "
    "`/demo/scenic/partner/v1/orders`), the query string as sent without "
    "`?` (empty if none), the timestamp, the nonce, and the lowercase hex "
    "SHA-256 of the raw body (of the empty string for no body). Refused "
    "with 401: outside ±300 s `stale_request`, a nonce seen before "
    "`replayed_nonce`, a wrong signature or unknown key `bad_signature`. "
    "Notices to your URL are signed the same way with your notice secret "
    "and carry `X-Scenic-Notice-Id`: de-duplicate by it.")


def _ref(name):
    return {'$ref': f'#/components/schemas/{name}'}


def _json(schema, description):
    return {'description': description,
        'content': {'application/json': {'schema': schema}}}


def _errors(*statuses):
    text = {
        401: "Signature refused: `bad_signature`, `stale_request`, "
        "`replayed_nonce`.",
        403: "`no_contract`: no active contract for that date.",
        404: "`not_found`: no order with this partner_order_id.",
        409: "Refused by a rule: `allotment_exhausted`, `credit_limit`, "
        "`deposit_insufficient`, `sold_out`, `id_limit`, `daily_limit`, "
        "`idempotency_conflict`, `not_payable`, `not_cancellable`, "
        "`not_refundable`.",
        422: "Invalid request: `invalid_request` (with `field`), "
        "`invalid_id_number`, `amount_mismatch`.",
        }
    return {str(s): _json(_ref('Error'), text[s]) for s in statuses}


def _schemas():
    schemas = {k: copy.deepcopy(BOOKING[k]) for k in (
            'Error', 'VisitorIn', 'ItemIn', 'Ticket', 'Order')}
    schemas['Error']['properties']['error']['properties']['code'][
        'enum'] = ERROR_CODES
    order_in = copy.deepcopy(BOOKING['OrderIn'])
    order_in['required'] = ['partner_order_id'] + order_in['required']
    order_in['properties']['partner_order_id'] = {
        'type': 'string', 'pattern': '^[A-Za-z0-9._:-]{1,64}$',
        'description': "Your order id: the same id and body return the "
        "same order; another body is `idempotency_conflict`."}
    order_in['properties']['leader'] = {
        'type': 'object', 'required': ['name', 'phone'],
        'description': "The group's leader or guide.",
        'properties': {'name': {'type': 'string'},
            'phone': {'type': 'string'}}}
    schemas['PartnerOrderIn'] = order_in
    order = schemas.pop('Order')
    order['required'] = order['required'] + ['partner_order_id']
    order['properties']['partner_order_id'] = {'type': 'string'}
    order['properties']['refunded'] = MONEY
    order['properties']['leader'] = {'type': 'object', 'properties': {
            'name': {'type': 'string'}}}
    schemas['PartnerOrder'] = order
    ticket = schemas['Ticket']
    ticket['required'] = [r for r in ticket['required'] if r != 'qr_svg_url']
    ticket['properties']['partner_code'] = {'type': 'boolean',
        'description': "The code is the one you issued."}
    schemas['Products'] = {
        'type': 'object', 'required': ['contract', 'currency', 'products'],
        'properties': {
            'contract': {'type': 'string'},
            'currency': {'type': 'string'},
            'products': {'type': 'array', 'items': {
                    'type': 'object',
                    'required': ['ticket_type', 'net_prices'],
                    'properties': {
                        'ticket_type': {'type': 'string'},
                        'name': {'type': 'string'},
                        'real_name': {'type': 'boolean'},
                        'persons': {'type': 'integer'},
                        'net_prices': {'type': 'array', 'items': {
                                'type': 'object', 'properties': {
                                    'from': {'type': ['string', 'null'],
                                        'format': 'date'},
                                    'to': {'type': ['string', 'null'],
                                        'format': 'date'},
                                    'price': MONEY}}},
                        }}},
            },
        }
    quota = {'type': ['object', 'null'],
        'properties': {
            'quota': {'type': 'integer'},
            'remaining': {'type': 'integer'},
            'release_at': DATETIME,
            'released': {'type': 'boolean'}}}
    schemas['Calendar'] = {
        'type': 'object', 'required': ['date', 'slots'],
        'properties': {
            'date': {'type': 'string', 'format': 'date'},
            'currency': {'type': 'string'},
            'day_allotment': dict(quota, description="Your quota of "
                "persons for the whole day, over all its slots (null: "
                "none)."),
            'slots': {'type': 'array', 'items': {
                    'type': 'object',
                    'required': ['slot', 'start', 'end', 'stock', 'prices'],
                    'properties': {
                        'slot': {'type': 'integer'},
                        'start': DATETIME, 'end': DATETIME,
                        'allotment': dict(quota, description="Your "
                            "allotment of this slot (null: none)."),
                        'area_available': {'type': 'integer',
                            'description': "Places left in the general "
                            "pool of the slot."},
                        'stock': {'type': 'integer', 'description':
                            "What you can book now: the smaller of what "
                            "your allotments (slot and day) leave and the "
                            "places the slot has for you (your slot "
                            "allotment, or the general pool when you have "
                            "none there and a day quota or a contract "
                            "that lets you sell beyond your allotments)."},
                        'prices': {'type': 'array', 'items': {
                                'type': 'object', 'properties': {
                                    'ticket_type': {'type': 'string'},
                                    'price': MONEY}}},
                        }}},
            },
        }
    schemas['PayIn'] = {
        'type': 'object', 'required': ['amount'],
        'properties': {
            'amount': MONEY,
            'codes': {'type': 'array', 'items': {'type': 'string',
                    'minLength': partnercode.MIN_LENGTH,
                    'maxLength': partnercode.MAX_LENGTH,
                    'pattern': '^[A-Za-z0-9._-]+$'},
                'description': "Your own codes, one per ticket in ticket "
                "order, when your contract says you issue codes: each "
                "follows the contract's rule (its characters: digits, "
                "letters and digits, or those and `-`, `_`, `.`; its "
                "length) and is used by no other ticket of the area. A "
                "code breaking the rule is `malformed_code` (422), a code "
                "repeated in the request or already taken `duplicate_code` "
                "(409), with the code's index in `field` (`codes[i]`); "
                "nothing is paid then. The tickets carry these codes "
                "(`partner_code: true`) instead of signed ones and the "
                "gates admit them, offline too, once the area's boxes have "
                "synced (about a minute). A retried payment must bring the "
                "same codes (else `idempotency_conflict`)."},
            },
        }
    schemas['RefundIn'] = {
        'type': 'object',
        'properties': {'tickets': {'type': 'array', 'items': {
                    'type': 'integer'}, 'description':
                "Ticket ids to refund (one per visitor); all valid "
                "tickets when left out."}},
        }
    return schemas


POID = {'name': 'partner_order_id', 'in': 'path', 'required': True,
    'schema': {'type': 'string'}}


def _order_call(operation, summary, body=None, errors=(401, 404, 409)):
    call = {'operationId': operation, 'summary': summary,
        'parameters': [POID],
        'responses': {'200': _json(_ref('PartnerOrder'), "The order."),
            **_errors(*errors)}}
    if body:
        call['requestBody'] = {'required': True, 'content': {
                'application/json': {'schema': _ref(body)}}}
    return {'post': call}


def openapi_document():
    return {
        'openapi': '3.1.0',
        'info': {
            'title': "Scenic partner API",
            'version': '1.0.0',
            'description': "For OTA platforms and agencies on contract: "
            "products at net prices, calendar with stock, orders "
            "idempotent by partner_order_id, payment on account, "
            "cancellation and refunds by visitor. " + SIGNING,
            },
        'servers': [{'url': '/{database}/scenic/partner/v1',
                'variables': {'database': {'default': 'demo'}}}],
        'security': [{'key': [], 'timestamp': [], 'nonce': [],
                'signature': []}],
        'components': {
            'securitySchemes': {
                'key': {'type': 'apiKey', 'in': 'header',
                    'name': 'X-Scenic-Key'},
                'timestamp': {'type': 'apiKey', 'in': 'header',
                    'name': 'X-Scenic-Timestamp'},
                'nonce': {'type': 'apiKey', 'in': 'header',
                    'name': 'X-Scenic-Nonce'},
                'signature': {'type': 'apiKey', 'in': 'header',
                    'name': 'X-Scenic-Signature',
                    'description': SIGNING},
                },
            'schemas': _schemas(),
            },
        'paths': {
            '/products': {'get': {
                    'operationId': 'getProducts',
                    'summary': "Ticket types with your net prices",
                    'responses': {
                        '200': _json(_ref('Products'), "Your products."),
                        **_errors(401, 403)}}},
            '/calendar': {'get': {
                    'operationId': 'getCalendar',
                    'summary': "Slots of a day with price and stock",
                    'parameters': [{'name': 'date', 'in': 'query',
                            'required': True, 'schema': {
                                'type': 'string', 'format': 'date'}}],
                    'responses': {
                        '200': _json(_ref('Calendar'), "The slots."),
                        **_errors(401, 403, 422)}}},
            '/orders': {'post': {
                    'operationId': 'createOrder',
                    'summary': "Hold places; idempotent by "
                    "partner_order_id",
                    'requestBody': {'required': True, 'content': {
                            'application/json': {
                                'schema': _ref('PartnerOrderIn')}}},
                    'responses': {
                        '201': _json(_ref('PartnerOrder'),
                            "Held (reserved); the same again carries "
                            "`Idempotent-Replayed: true`."),
                        **_errors(401, 403, 409, 422)}}},
            '/orders/{partner_order_id}': {'get': {
                    'operationId': 'getOrder', 'parameters': [POID],
                    'responses': {
                        '200': _json(_ref('PartnerOrder'), "The order."),
                        **_errors(401, 404)}}},
            '/orders/{partner_order_id}/pay': _order_call(
                'payOrder', "Confirm on your account (the amount is the "
                "order's total at your net prices); codes are issued",
                'PayIn', (401, 404, 409, 422)),
            '/orders/{partner_order_id}/cancel': _order_call(
                'cancelOrder', "Cancel a hold, or refund a paid order as "
                "the ticket types allow"),
            '/orders/{partner_order_id}/refund': _order_call(
                'refundOrder', "Refund some tickets (by visitor) as the "
                "ticket types allow", 'RefundIn', (401, 404, 409, 422)),
            '/openapi.json': {'get': {
                    'operationId': 'getOpenAPI', 'security': [],
                    'responses': {'200': {
                            'description': "This document."}}}},
            },
        }
