"""The booking API: JSON over HTTP for the web page, kiosks, mini-programs
and OTA partners. Paths, fields and error codes are a contract (see
openapi.py): external clients code against them.
"""
import datetime as dt
import functools
import re
from decimal import Decimal

from scenic_common import idnumber, ticketcode

from trytond.pool import Pool
from trytond.protocols.wrappers import Response

from . import ratelimit, reservation, web
from .errors import BookingError
from .openapi import openapi_document
from .reservation import BookingRequest, Item, Visitor
from .web import json_body, json_response, release_claims

PREFIX = '/<database_name>/scenic/v1'
MAX_ITEMS = 20
MAX_VISITORS = 50
MAX_IDEMPOTENCY_KEY = 200
PHONE_RE = re.compile(r'^\+?[0-9][0-9 -]{4,19}$')


def authenticate(request):
    "The channel of a booking request and its area."
    Channel = Pool().get('scenic.channel')
    header = request.headers.get('Authorization', '')
    scheme, _, key = header.partition(' ')
    channel = None
    if scheme.lower() == 'bearer' and key.strip():
        channel = Channel.from_api_key(key.strip())
    if not channel or not channel.active:
        raise BookingError('unauthorized',
            "A valid channel key is required: "
            "'Authorization: Bearer <key>'.")
    return channel, channel.company.id


# Routes of the booking API, authenticated by channel key.
endpoint = functools.partial(
    web.endpoint, prefix=PREFIX, authenticate=authenticate)


# --- parsing ---------------------------------------------------------------------

def _text(data, name, where, required=True, max_length=100):
    value = data.get(name)
    if value is None and not required:
        return None
    if not isinstance(value, str) or not value.strip():
        raise BookingError('invalid_request',
            f"'{name}' must be a non-empty string.", where)
    if len(value) > max_length:
        raise BookingError('invalid_request',
            f"'{name}' is longer than {max_length} characters.", where)
    return value.strip()


MAX_INT = 2 ** 31 - 1     # ids and counts are INTEGER columns


def _positive_int(value, where, name):
    if (isinstance(value, bool) or not isinstance(value, int)
            or not 1 <= value <= MAX_INT):
        raise BookingError('invalid_request',
            f"'{name}' must be a positive integer (at most {MAX_INT}).",
            where)
    return value


def parse_booking(data):
    slot = _positive_int(data.get('slot'), 'slot', 'slot')
    items = data.get('items')
    if not isinstance(items, list) or not items:
        raise BookingError('invalid_request',
            "'items' must be a non-empty list.", 'items')
    if len(items) > MAX_ITEMS:
        raise BookingError('invalid_request',
            f"An order takes at most {MAX_ITEMS} items.", 'items')
    parsed, visitor_count = [], 0
    for i, raw in enumerate(items):
        where = f'items[{i}]'
        if not isinstance(raw, dict):
            raise BookingError('invalid_request',
                "Each item must be an object.", where)
        item = Item(
            ticket_type=_text(raw, 'ticket_type', f'{where}.ticket_type'),
            field=where)
        if raw.get('persons') is not None:
            item.persons = _positive_int(
                raw['persons'], f'{where}.persons', 'persons')
        visitors = raw.get('visitors', [])
        if not isinstance(visitors, list):
            raise BookingError('invalid_request',
                "'visitors' must be a list.", f'{where}.visitors')
        # counted before any visitor is read (a 1 MB body holds ~20 000)
        visitor_count += len(visitors)
        if visitor_count > MAX_VISITORS:
            raise BookingError('invalid_request',
                f"An order takes at most {MAX_VISITORS} visitors.", 'items')
        for j, person in enumerate(visitors):
            vwhere = f'{where}.visitors[{j}]'
            if not isinstance(person, dict):
                raise BookingError('invalid_request',
                    "Each visitor must be an object.", vwhere)
            id_type = person.get('id_type', idnumber.RESIDENT_ID)
            if id_type not in idnumber.ID_TYPES:
                raise BookingError('invalid_request',
                    f"'id_type' must be one of {', '.join(idnumber.ID_TYPES)}.",
                    f'{vwhere}.id_type')
            item.visitors.append(Visitor(
                    name=_text(person, 'name', f'{vwhere}.name'),
                    id_type=id_type,
                    id_number=_text(person, 'id_number',
                        f'{vwhere}.id_number', max_length=40),
                    field=vwhere))
        parsed.append(item)
    contact = data.get('contact')
    if not isinstance(contact, dict):
        raise BookingError('invalid_request',
            "'contact' must be an object with a name and a phone.",
            'contact')
    phone = _text(contact, 'phone', 'contact.phone', max_length=20)
    if not PHONE_RE.match(phone):
        raise BookingError('invalid_request',
            "'phone' must be a phone number.", 'contact.phone')
    return BookingRequest(
        slot=slot, items=parsed,
        contact_name=_text(contact, 'name', 'contact.name'),
        contact_phone=phone.replace(' ', '').replace('-', ''))


AMOUNT_RE = re.compile(r'^[0-9]{1,12}(\.[0-9]{1,2})?$')


def parse_amount(value):
    "Money is a decimal string (a JSON number is taken as written)."
    text = value if isinstance(value, str) else (
        str(value) if isinstance(value, (int, Decimal))
        and not isinstance(value, bool) else '')
    if not AMOUNT_RE.match(text):
        raise BookingError('invalid_request',
            "'amount' must be a decimal string such as \"120.00\".",
            'amount')
    return Decimal(text)


def parse_date(value):
    try:
        return dt.date.fromisoformat(value or '')
    except ValueError:
        raise BookingError('invalid_request',
            "'date' must be a date as YYYY-MM-DD.", 'date')


# --- rendering -------------------------------------------------------------------

def _iso(value, tz):
    "Naive UTC from the database → ISO 8601 in the area's timezone."
    if value is None:
        return None
    return value.replace(tzinfo=dt.timezone.utc).astimezone(tz).isoformat()


def money(value):
    return str(value.quantize(Decimal('0.01')))


def order_json(order, database_name, tz=None):
    """The answer about an order: `order` a scenic.order record, or what
    the booking engine read or wrote, with the same attributes."""
    from .slot import area_timezone
    tz = tz or area_timezone(order.company)
    slot = order.slot
    data = {
        'order': order.reference,
        'state': order.state,
        'total': money(order.total),
        'currency': order.currency.code,
        'visit_date': order.visit_date.isoformat(),
        'slot': {
            'id': slot.id,
            'start': slot.aware(slot.start_time).isoformat(),
            'end': slot.aware(slot.end_time).isoformat(),
            },
        'contact': {'name': order.contact_name},
        'lines': [{
                'ticket_type': line.ticket_type.code,
                'name': line.ticket_type.name,
                'quantity': line.quantity,
                'persons': line.persons,
                'unit_price': money(line.unit_price),
                'amount': money(line.amount),
                } for line in order.lines],
        }
    if order.state == 'reserved':
        data['hold_expires_at'] = _iso(order.hold_expires_at, tz)
    if order.state not in {'reserved', 'expired', 'cancelled'}:
        data['tickets'] = [{
                'id': ticket.id,
                'ticket_type': ticket.ticket_type.code,
                'state': ticket.state,
                'code': ticket.code if ticket.state in {'valid', 'used'}
                else None,
                'qr_svg_url': (f'/{database_name}/scenic/v1/orders/'
                    f'{order.reference}/tickets/{ticket.id}/qr.svg'),
                'holder': ticket.holder_masked,
                'persons': ticket.persons,
                'entries': ticket.entries_allowed,
                'valid_from': _iso(ticket.valid_from, tz),
                'valid_until': _iso(ticket.valid_until, tz),
                } for ticket in sorted(order.tickets, key=lambda t: t.id)]
    return data


def _order_of_channel(channel, reference):
    Order = Pool().get('scenic.order')
    orders = Order.search([
            ('reference', '=', reference),
            ('channel', '=', channel.id),
            ], limit=1)
    if not orders:
        raise BookingError('not_found', "No such order.")
    return orders[0]


# --- routes ----------------------------------------------------------------------

@endpoint('/availability', ['GET'], readonly=True)
def get_availability(request, channel):
    date = parse_date(request.args.get('date'))
    return json_response(availability_json(date,
            *reservation.availability(channel, date)))


def availability_json(date, catalogue, slots):
    "The answer of GET /availability (also the booking engine's)."
    currency = catalogue.currency_code
    return {
        'date': date.isoformat(),
        'slots': [{
                'id': slot.id,
                'zone': slot.zone_code,
                'start': slot.aware(slot.start_time).isoformat(),
                'end': slot.aware(slot.end_time).isoformat(),
                'capacity': slot.capacity,
                'available': slot.available,
                'prices': [{
                        'ticket_type': ttype.code,
                        'name': ttype.name,
                        'real_name': bool(ttype.real_name),
                        'persons': ttype.persons,
                        'price': money(price),
                        'currency': currency,
                        } for ttype, price in prices],
                } for slot, prices in slots],
        }


def idempotency_key(request):
    "The booking request's Idempotency-Key header, checked."
    key = (request.headers.get('Idempotency-Key') or '').strip()
    if not key:
        raise BookingError('invalid_request',
            "Send an Idempotency-Key header (at most "
            f"{MAX_IDEMPOTENCY_KEY} characters) so that a retried request "
            "does not book twice.", 'Idempotency-Key')
    if len(key) > MAX_IDEMPOTENCY_KEY:
        raise BookingError('invalid_request',
            f"The Idempotency-Key header is longer than "
            f"{MAX_IDEMPOTENCY_KEY} characters.", 'Idempotency-Key')
    return key


@endpoint('/orders', ['POST'])
def post_order(request, channel):
    key = idempotency_key(request)
    booking = parse_booking(json_body(request))
    order_id, replayed = reservation.book(channel, booking, key,
        client=request.remote_addr or 'unknown')
    release_claims()
    order = Pool().get('scenic.order')(order_id)
    headers = {'Idempotent-Replayed': 'true'} if replayed else None
    return json_response(
        order_json(order, Pool().database_name), status=201,
        headers=headers)


# Pickup look-ups (issue 15): failed ones per phone per hour, all of them
# per client address per minute.
PICKUP_FAILURES_PER_PHONE = (10, 3600)
PICKUP_PER_ADDRESS = (30, 60)


@endpoint('/orders', ['GET'], readonly=True)
def get_orders_for_pickup(request, channel):
    "The old look-up by query string: ID numbers must not be in URLs."
    raise BookingError('method_not_allowed', "Look orders up with POST "
        "/orders/lookup and a JSON body: ID numbers and phones never go "
        "in a URL.")


@endpoint('/orders/lookup', ['POST'])
def post_orders_lookup(request, channel):
    """On-site pickup: the orders of a visitor's ID number and the
    contact phone, with the order reference as the second factor the
    visitor holds. Rate-limited per phone (failures) and per client."""
    data = json_body(request)
    id_number = _text(data, 'id_number', 'id_number', max_length=40)
    phone = _text(data, 'phone', 'phone', max_length=20)
    if not PHONE_RE.match(phone):
        raise BookingError('invalid_request',
            "'phone' must be a phone number.", 'phone')
    phone = phone.replace(' ', '').replace('-', '')
    reference = _text(data, 'reference', 'reference', max_length=40)
    address = request.remote_addr or 'unknown'
    limit, seconds = PICKUP_PER_ADDRESS
    ratelimit.check('pickup-address', address, limit, seconds,
        "Too many look-ups from this address: wait a minute.")
    limit, seconds = PICKUP_FAILURES_PER_PHONE
    ratelimit.check('pickup-phone', phone, limit, seconds,
        "Too many failed look-ups for this phone: try again later, or "
        "ask at the ticket office.")
    ratelimit.add('pickup-address', address, PICKUP_PER_ADDRESS[1])
    orders = reservation.find_for_pickup(
        channel.company.id, id_number, phone, reference)
    if not orders:
        ratelimit.add('pickup-phone', phone, PICKUP_FAILURES_PER_PHONE[1])
    database_name = Pool().database_name
    return json_response(
        {'orders': [order_json(o, database_name) for o in orders]})


@endpoint('/orders/<reference>', ['GET'], readonly=True)
def get_order(request, channel, reference):
    order = _order_of_channel(channel, reference)
    return json_response(order_json(order, Pool().database_name))


@endpoint('/orders/<reference>/pay', ['POST'])
def post_pay(request, channel, reference):
    data = json_body(request)
    provider = data.get('provider')
    if not isinstance(provider, str):
        raise BookingError('invalid_request',
            "'provider' must name a payment provider.", 'provider')
    if 'amount' not in data:
        raise BookingError('invalid_request',
            "'amount' is required.", 'amount')
    amount = parse_amount(data['amount'])
    order = _order_of_channel(channel, reference)
    order = reservation.pay(order.id, provider, amount)
    release_claims()
    return json_response(order_json(order, Pool().database_name))


@endpoint('/orders/<reference>/cancel', ['POST'])
def post_cancel(request, channel, reference):
    order = _order_of_channel(channel, reference)
    order = reservation.cancel(order.id)
    release_claims()
    return json_response(order_json(order, Pool().database_name))


@endpoint('/orders/<reference>/tickets/<int:ticket>/qr.svg', ['GET'],
    readonly=True, auth=False)
def get_ticket_qr(request, channel, reference, ticket):
    "The order's reference is the capability: no channel key needed."
    if ticket > MAX_INT:           # beyond the column: no such ticket
        raise BookingError('not_found', "No such valid ticket.")
    Ticket = Pool().get('scenic.ticket')
    tickets = Ticket.search([
            ('id', '=', ticket),
            ('order.reference', '=', reference),
            ('state', 'in', ['valid', 'used']),
            ], limit=1)
    if not tickets:
        raise BookingError('not_found', "No such valid ticket.")
    return Response(ticketcode.qr_svg(tickets[0].code, scale=5),
        content_type='image/svg+xml',
        headers={'Cache-Control': 'private, max-age=3600'})


@endpoint('/openapi.json', ['GET'], readonly=True, auth=False)
def get_openapi(request, channel):
    return json_response(openapi_document())
