"""The self-service kiosk's JSON API, for the kiosk page (kiosk_page.py).

A kiosk is a ``sale.point`` of kind kiosk selling through a kiosk channel;
it authenticates with that channel's API key (``Authorization: Bearer
<key>``, the booking API's keys) and, when several kiosks share the
channel, names itself with ``X-Kiosk: <point id>``. Nobody is logged in:
the kiosk books like any channel (the same claims), is paid only by a
wallet's verified notification (a QR on screen, notify.py) and prints
through its own IoT box.

    GET  /<db>/scenic/kiosk/v1/state                slots, types, wallets
    POST /<db>/scenic/kiosk/v1/orders               {"slot", "items",
                                                     "key"}: book
    GET  /<db>/scenic/kiosk/v1/orders/<ref>         its state (polled)
    POST /<db>/scenic/kiosk/v1/orders/<ref>/qr      {"provider"}: code URL
                                                     and its QR as SVG
    POST /<db>/scenic/kiosk/v1/orders/<ref>/print   print jobs, once
    POST /<db>/scenic/kiosk/v1/pickup               {"id_number"}: today's
                                                     paid, unprinted orders
                                                     of that card, printed

Errors are the booking API's ``{"error": {"code", "message", "field"?}}``.
"""
import datetime as dt
import functools

from scenic_common import ticketcode
from scenic_ticket import reservation, web
from scenic_ticket.api import money
from scenic_ticket.errors import CODES, ApiError
from scenic_ticket.providers import PROVIDERS, allowed
from scenic_ticket.slot import area_timezone
from scenic_ticket.web import json_body, json_response, release_claims

from trytond.i18n import gettext
from trytond.pool import Pool

from . import window
from .counter_api import parse_items, sellable
from .exceptions import CounterError

PREFIX = '/<database_name>/scenic/kiosk/v1'
# The kiosk's languages: the page's choice, for the catalogue's names.
LANGUAGES = {'zh': 'zh_CN', 'en': 'en'}


class Kiosk:
    "The caller of a kiosk request: its channel and its sale point."

    def __init__(self, channel, point):
        self.channel, self.point = channel, point


def authenticate(request):
    pool = Pool()
    Channel = pool.get('scenic.channel')
    Point = pool.get('sale.point')
    scheme, _, key = request.headers.get('Authorization', '').partition(' ')
    channel = None
    if scheme.lower() == 'bearer' and key.strip():
        channel = Channel.from_api_key(key.strip())
    if not channel or not channel.active or channel.kind != 'kiosk':
        raise ApiError('unauthorized', "A kiosk channel's key is required: "
            "'Authorization: Bearer <key>'.")
    domain = [('company', '=', channel.company.id),
        ('scenic_kind', '=', 'kiosk'), ('scenic_channel', '=', channel.id)]
    named = request.headers.get('X-Kiosk', '').strip()
    if named:
        if not named.isdigit():
            raise ApiError('invalid_request',
                "X-Kiosk: the kiosk's sale point id.", 'X-Kiosk')
        domain.append(('id', '=', int(named)))
    points = Point.search(domain, order=[('id', 'ASC')], limit=1)
    if not points:
        raise ApiError('unauthorized', gettext('scenic_counter.msg_no_kiosk'))
    return Kiosk(channel, points[0]), channel.company.id


def kiosk_endpoint(path, methods, readonly=False):
    "scenic_ticket's endpoint with the window's refusals as API errors."
    def decorator(func):
        @functools.wraps(func)
        def handler(request, kiosk, **kwargs):
            try:
                return func(request, kiosk, **kwargs)
            except CounterError as error:
                raise ApiError(error.code if error.code in CODES
                    else 'invalid_request', error.message)
        return web.endpoint(path, methods, PREFIX, authenticate,
            readonly=readonly)(handler)
    return decorator


def _order(kiosk, reference):
    Order = Pool().get('scenic.order')
    orders = Order.search([('reference', '=', reference),
            ('channel', '=', kiosk.channel.id)], limit=1)
    if not orders:
        raise ApiError('not_found', "No such order of this kiosk.")
    return orders[0]


def _order_json(order):
    return {'order': order.reference, 'state': order.state,
        'total': money(order.total),
        'paid': order.state in ('paid', 'partly_used', 'used'),
        'tickets': len([t for t in order.tickets if t.state == 'valid'])}


def qr_providers(channel):
    "The channel's wallets that can show a QR to pay, in config order."
    return [name for name in allowed(channel.code)
        if hasattr(getattr(PROVIDERS[name], 'inner', PROVIDERS[name]),
            'native_qr')]


@kiosk_endpoint('/state', ['GET'], readonly=True)
def get_state(request, kiosk):
    language = LANGUAGES.get(request.args.get('lang', 'zh'), 'zh_CN')
    slots, types = sellable(kiosk.channel, language)
    return json_response({'kiosk': kiosk.point.name,
            'box': kiosk.point.box_url, 'slots': slots, 'types': types,
            'providers': qr_providers(kiosk.channel)})


@kiosk_endpoint('/orders', ['POST'])
def post_order(request, kiosk):
    data = json_body(request)
    key = data.get('key')
    if not isinstance(key, str) or not 8 <= len(key) <= 64:
        raise ApiError('invalid_request',
            "key: one random string per purchase (8 to 64 characters).",
            'key')
    slot = data.get('slot')
    if not isinstance(slot, int) or isinstance(slot, bool):
        raise ApiError('invalid_request', "slot must be a slot id.", 'slot')
    order_id, _ = reservation.book(kiosk.channel,
        window._request(slot, parse_items(data)),
        f'kiosk-{kiosk.point.id}-{key}', client=f'kiosk-{kiosk.point.id}')
    release_claims()
    order = Pool().get('scenic.order')(order_id)
    return json_response(_order_json(order), status=201)


@kiosk_endpoint('/orders/<reference>', ['GET'], readonly=True)
def get_order(request, kiosk, reference):
    return json_response(_order_json(_order(kiosk, reference)))


@kiosk_endpoint('/orders/<reference>/qr', ['POST'])
def post_qr(request, kiosk, reference):
    data = json_body(request)
    provider = data.get('provider')
    if not isinstance(provider, str) \
            or provider not in qr_providers(kiosk.channel):
        raise ApiError('invalid_request', "provider: one of "
            f"{', '.join(qr_providers(kiosk.channel)) or '(none)'}.",
            'provider')
    order = _order(kiosk, reference)
    code_url = window.native_qr(order, provider)
    return json_response({'order': order.reference, 'provider': provider,
            'total': money(order.total), 'code_url': code_url,
            'svg': ticketcode.qr_svg(code_url, scale=6)})


def _printed(kiosk, order):
    Event = Pool().get('scenic.counter.event')
    return bool(Event.search([('order', '=', order.id),
                ('kind', '=', 'print')], limit=1))


def _print(kiosk, order):
    "The order's tickets printed at this kiosk, once (reprints: a window)."
    jobs = window.print_order(kiosk.point, order)
    return {'jobs': jobs, 'printed': window.simulated_print(jobs)}


@kiosk_endpoint('/orders/<reference>/print', ['POST'])
def post_print(request, kiosk, reference):
    order = _order(kiosk, reference)
    if not _order_json(order)['paid']:
        raise ApiError('not_payable' if order.state == 'reserved'
            else 'invalid_request', "The order is not paid.")
    if _printed(kiosk, order):
        return json_response({'order': order.reference, 'jobs': [],
                'printed': 0, 'already': True})
    return json_response(dict(_print(kiosk, order),
            order=order.reference, already=False))


@kiosk_endpoint('/pickup', ['POST'])
def post_pickup(request, kiosk):
    """The card on the kiosk's reader picks up today's paid orders with a
    ticket for it that were never printed; already printed ones are only
    counted (a reprint is the window's, audited)."""
    data = json_body(request)
    number = data.get('id_number')
    if not isinstance(number, str) or not number.strip():
        raise ApiError('invalid_request', "Tap the ID card on the reader.",
            'id_number')
    company = kiosk.channel.company
    today = dt.datetime.now(area_timezone(company)).date()
    orders = window.find_by_id(company.id, number.strip(), today)
    jobs, printed, already = [], 0, 0
    picked = []
    for order in orders:
        if _printed(kiosk, order):
            already += 1
            continue
        result = _print(kiosk, order)
        jobs.extend(result['jobs'])
        printed += result['printed']
        picked.append(order.reference)
    return json_response({'orders': picked, 'already': already,
            'jobs': jobs, 'printed': printed})
