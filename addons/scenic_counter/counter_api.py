"""The window's JSON API, for the counter page (and the kiosk's later).

Authenticated as the Tryton user: the page logs in through Tryton's own
``common.db.login`` and sends ``Authorization: Session
base64(login:user_id:token)``, checked against ``ir.session`` like any
client. A cashier acts only on their own open shift.

    GET  /<db>/scenic/counter/v1/state      the user's shift, windows,
                                             today's slots and prices
    POST /<db>/scenic/counter/v1/shift      {"point", "float"}: open
    POST /<db>/scenic/counter/v1/sell       {"slot", "items", "method",
                                             "tendered"?, "trade_number"?,
                                             "payment_code"?, "key"}:
                                             sale + print jobs
    POST /<db>/scenic/counter/v1/close      {"counts": {"100": 3, …}}
    GET  /<db>/scenic/counter/v1/report     X (open) or Z (closed) job
    POST /<db>/scenic/counter/v1/drawer     open the drawer (audited)
    POST /<db>/scenic/counter/v1/reprint    {"order"}: jobs, counted
    POST /<db>/scenic/counter/v1/refund     {"order", "approve"?}: back by
                                             the original method; approve
                                             (supervisors) lifts the
                                             refund period and allows
                                             used tickets
    GET  /<db>/scenic/counter/v1/statement  ?provider&date: a wallet's
                                             settlement file (supervisor)
    POST /<db>/scenic/counter/v1/pickup     {"id_number"} (today's orders
                                             of that ID) or {"reference",
                                             "phone"}: their jobs

Errors are scenic_ticket's ``{"error": {"code", "message", "field"?}}``.
"""
import datetime as dt
import functools
import logging
from decimal import Decimal, InvalidOperation

from scenic_ticket import reservation
from scenic_ticket.api import PHONE_RE, money
from scenic_ticket.errors import CODES, ApiError
from scenic_ticket.slot import area_timezone
from scenic_ticket.web import database_pool, json_body, json_response

from trytond.exceptions import UserError
from trytond.model.exceptions import AccessError
from trytond.pool import Pool
from trytond.protocols.wrappers import Response
from trytond.transaction import Transaction
from trytond.wsgi import app

from . import txn, window
from .exceptions import CounterError
from .intent import RecordedProvider

PREFIX = '/<database_name>/scenic/counter/v1'
logger = logging.getLogger(__name__)
WINDOW_METHODS = ['cash', 'unionpay', 'simulated']
# Wallets take the visitor's payment code at the window (micropay) when
# their adapter is configured ([scenic_wechatpay] / [scenic_alipay]).
WALLET_METHODS = ['wechat', 'alipay']


def window_methods():
    "The providers a window may take now, in the page's order."
    from scenic_ticket.providers import PROVIDERS
    return WINDOW_METHODS + [name for name in WALLET_METHODS
        if isinstance(PROVIDERS.get(name), RecordedProvider)]


# The window's own refusals beside the booking API's codes (errors.CODES):
# code -> HTTP status.
COUNTER_CODES = {
    'no_shift': 409,
    'shift_open': 409,
    'shift_not_open': 409,
    'shift_not_pending': 409,
    'amount_short': 422,
    'forbidden': 403,
    }


class CounterHTTPError(Exception):
    "A refusal of the counter API: {'error': {code, message, field}}."

    def __init__(self, code, message, field=None):
        super().__init__(message)
        self.code, self.message, self.field = code, message, field

    @property
    def status(self):
        return COUNTER_CODES.get(self.code) or 422

    def as_json(self):
        body = {'code': self.code, 'message': self.message}
        if self.field:
            body['field'] = self.field
        return {'error': body}


def error_response(error):
    return json_response(error.as_json(), status=error.status)


def refuse(code, message, field=None):
    if code in COUNTER_CODES:
        return CounterHTTPError(code, message, field)
    return ApiError(code, message, field)


class Cashier:
    "The authenticated user of a counter request."

    def __init__(self, user):
        self.user = user


def authenticate(request):
    "The Tryton user of the session header; must be cashier or supervisor."
    pool = Pool()
    Session = pool.get('ir.session')
    User = pool.get('res.user')
    ModelData = pool.get('ir.model.data')
    session = request.session
    if not session or not session.token or not session.userid or \
            not Session.check(session.userid, session.token):
        raise refuse('unauthorized', "Log in as a cashier: "
            "'Authorization: Session <base64 login:user_id:token>'.")
    user = User(session.userid)
    with Transaction().set_user(user.id):
        groups = User.get_groups()
    allowed = {ModelData.get_id('scenic_ticket', g) for g in (
            'group_scenic_cashier', 'group_scenic_supervisor')}
    if not (set(groups) & allowed) or not user.company:
        raise refuse('unauthorized',
            "This user is not a cashier of a scenic area.")
    return Cashier(user), user.company.id


def counter_endpoint(path, methods, readonly=False):
    """Route handler(request, user, **kwargs) -> Response, run as the
    cashier in its own transaction (txn.run: locks, retries); refusals
    are the booking API's error shape."""
    def decorator(func):
        @app.route(PREFIX + path, methods=methods)
        @functools.wraps(func)
        def wrapper(request, database_name, **kwargs):
            try:
                pool = database_pool(database_name)
                if pool is None:
                    raise refuse('not_found', "No such database.")

                def work():
                    cashier, company = authenticate(request)
                    user = cashier.user
                    with Transaction().set_context(company=company,
                            companies=[company], language=(
                                user.language.code if user.language
                                else None)), \
                            Transaction().set_user(cashier.user.id):
                        return func(request, cashier.user, **kwargs)
                try:
                    # The request's address: sessions are bound to it.
                    return txn.run(database_name, 0, work, readonly,
                        context={'_request': request.context})
                except CounterError as error:
                    raise refuse(error.code if error.code in COUNTER_CODES
                        or error.code in CODES else 'invalid_request',
                        error.message)
                except AccessError as error:
                    raise refuse('forbidden', error.message)
                except UserError as error:
                    raise refuse('invalid_request', error.message)
            except (ApiError, CounterHTTPError) as error:
                return error_response(error)
            except Exception:
                logger.exception("counter %s failed", path)
                return error_response(ApiError('internal_error',
                        "The server could not handle this request; "
                        "nothing was changed."))
        return wrapper
    return decorator


def _shift_json(session):
    if not session:
        return None
    return {'id': session.id, 'point': session.point.id,
        'point_name': session.point.name, 'state': session.state,
        'cashier': session.cashier.name if session.cashier else None,
        'float': money(session.float_amount or Decimal(0)),
        'expected': money(session.get_expected_amount()),
        # the counter PC's box (ID card reader, printer) from the registry
        'box': session.point.box_url,
        }


def _my_shift(user):
    Session = Pool().get('sale.point.cash.session')
    sessions = Session.search([
            ('cashier', '=', user.id),
            ('state', '=', 'open'),
            ], limit=1)
    return sessions[0] if sessions else None


def _require_shift(user):
    session = _my_shift(user)
    if not session:
        raise refuse('no_shift',
            "You have no open shift: open one with the counted float.")
    return session


def _decimal(value, field):
    try:
        result = Decimal(str(value))
    except (InvalidOperation, ValueError):
        raise refuse('invalid_request', f"{field} must be an amount.",
            field)
    if not result.is_finite() or result < 0:
        raise refuse('invalid_request', f"{field} must be an amount.",
            field)
    return result


def sellable(channel, language=None):
    """(slots, types) the channel sells now: today's slots still to come,
    then tomorrow's (evening sales), with places left; the types with
    their prices, names in `language`, adults first. The counter
    and the kiosk pages show these."""
    pool = Pool()
    TicketType = pool.get('scenic.ticket.type')
    Zone = pool.get('scenic.zone')
    company = channel.company
    today = dt.datetime.now(area_timezone(company)).date()
    slots = []
    for day in (today, today + dt.timedelta(days=1)):
        slots.extend(reservation.availability(channel, day)[1])
    now = dt.datetime.now(dt.timezone.utc)
    result, types = [], {}
    for slot, prices in slots:
        if slot.aware(slot.end_time) <= now or not prices:
            continue
        # A slot sells only the types that admit to its zone, at its own
        # prices (demand pricing may differ per slot): the pages offer a
        # type in the slots that sell it.
        result.append({'id': slot.id,
                'date': slot.date.isoformat(),
                'start': slot.start_time.strftime('%H:%M'),
                'end': slot.end_time.strftime('%H:%M'),
                'left': slot.capacity - slot.booked,
                'zone': slot.zone,
                'prices': {t.code: money(p) for t, p in prices}})
        for ttype, price in prices:
            types.setdefault(ttype.code, {'code': ttype.code,
                    'name': ttype.name, 'price': money(price),
                    'real_name': ttype.real_name,
                    'persons': ttype.persons})
    # Names in the page's language (the catalogue keeps one).
    with Transaction().set_context(language=language):
        names = {t.code: t.name for t in TicketType.search([
                    ('company', '=', company.id),
                    ('code', 'in', list(types))])}
        zones = {z.id: z.name for z in Zone.browse(
                list({s['zone'] for s in result if s['zone']}))}
    for code, entry in types.items():
        entry['name'] = names.get(code, entry['name'])
    for entry in result:
        entry['zone'] = zones.get(entry['zone'])
    return result, sorted(types.values(),
        key=lambda t: (not t['code'].startswith('ADULT'), t['code']))


@counter_endpoint('/state', ['GET'])
def get_state(request, user):
    pool = Pool()
    Point = pool.get('sale.point')
    Method = pool.get('sale.point.payment.method')
    company = user.company
    session = _my_shift(user)
    points = Point.search([('company', '=', company.id),
            ('scenic_kind', '=', 'window')])
    result = {
        'user': user.name, 'shift': _shift_json(session),
        'points': [{'id': p.id, 'name': p.name} for p in points],
        # Cash first: the default of the payment step.
        'methods': [{'id': m.id, 'name': m.name,
                'provider': m.scenic_provider}
            for m in sorted(Method.search([('company', '=', company.id),
                        ('scenic_provider', 'in', window_methods())]),
                key=lambda m: window_methods().index(m.scenic_provider))],
        'slots': [], 'types': [],
        }
    if session:
        result['slots'], result['types'] = sellable(
            session.point.scenic_channel,
            user.language.code if user.language else None)
    return json_response(result)


@counter_endpoint('/shift', ['POST'])
def post_shift(request, user):
    Session = Pool().get('sale.point.cash.session')
    Point = Pool().get('sale.point')
    data = json_body(request)
    points = Point.search([('id', '=', data.get('point')),
            ('company', '=', user.company.id)])
    if not points:
        raise refuse('invalid_request', "No such window.", 'point')
    session = Session.open_shift(points[0],
        _decimal(data.get('float', '0'), 'float'))
    return json_response({'shift': _shift_json(session)}, status=201)


def parse_items(data):
    items = data.get('items')
    if not isinstance(items, list) or not items:
        raise refuse('invalid_request', "items must be a list.",
            'items')
    for i, item in enumerate(items):
        if not isinstance(item, dict) or not isinstance(
                item.get('ticket_type'), str):
            raise refuse('invalid_request',
                "Each item needs a ticket_type.", f'items[{i}]')
        visitors = item.get('visitors') or []
        if not isinstance(visitors, list) or not all(
                isinstance(v, dict) for v in visitors):
            raise refuse('invalid_request',
                "visitors must be a list of {name, id_number}.",
                f'items[{i}].visitors')
    return items


@counter_endpoint('/sell', ['POST'])
def post_sell(request, user):
    pool = Pool()
    Method = pool.get('sale.point.payment.method')
    Order = pool.get('scenic.order')
    data = json_body(request)
    session = _require_shift(user)
    methods = Method.search([('id', '=', data.get('method')),
            ('company', '=', user.company.id)])
    if not methods:
        raise refuse('invalid_request', "No such payment method.",
            'method')
    key = data.get('key')
    if not isinstance(key, str) or not 8 <= len(key) <= 64:
        raise refuse('invalid_request',
            "key: one random string per sale (8 to 64 characters).", 'key')
    tendered = data.get('tendered')
    if tendered not in (None, ''):
        tendered = _decimal(tendered, 'tendered')
    else:
        tendered = None
    slot = data.get('slot')
    if not isinstance(slot, int) or isinstance(slot, bool):
        raise refuse('invalid_request', "slot must be a slot id.",
            'slot')
    code = data.get('payment_code')
    if code is not None and (not isinstance(code, str)
            or not code.isdigit() or not 10 <= len(code) <= 32):
        raise refuse('invalid_request', "payment_code: the digits of the "
            "visitor's payment code, as scanned.", 'payment_code')
    result = window.sell(session, slot, parse_items(data),
        methods[0], tendered=tendered,
        trade_number=data.get('trade_number') or None,
        idempotency_key=f'counter-{session.id}-{key}',
        payment_code=code)
    order = Order(result['order_id'])
    if result['replay']:
        # The page lost the first answer: the same jobs, not a new print.
        jobs = window.ticket_jobs(order, result['receipt'])
    else:
        jobs = window.print_order(session, order, result['receipt'])
    body = {
        'order': result['order'], 'receipt': result['receipt'],
        'total': money(result['total']),
        'change': money(result['change'])
        if result['change'] is not None else None,
        'tickets': len(result['tickets']), 'jobs': jobs,
        'printed': window.simulated_print(jobs),
        'shift': _shift_json(session),
        }
    return json_response(body, status=201)


@counter_endpoint('/close', ['POST'])
def post_close(request, user):
    data = json_body(request)
    session = _require_shift(user)
    counts = data.get('counts')
    if not isinstance(counts, dict):
        raise refuse('invalid_request',
            "counts: {denomination: quantity}.", 'counts')
    try:
        counts = {Decimal(k): int(v) for k, v in counts.items()}
    except (InvalidOperation, ValueError, TypeError):
        raise refuse('invalid_request',
            "counts: {denomination: quantity}.", 'counts')
    closed = session.close_shift(counts)
    return json_response({'state': closed.state,
            'expected': money(closed.expected_amount),
            'counted': money(closed.counted_amount),
            'difference': money(closed.difference),
            'report': closed.report_job()})


@counter_endpoint('/report', ['GET'])
def get_report(request, user):
    session = _require_shift(user)
    return json_response(session.report_job('X'))


@counter_endpoint('/drawer', ['POST'])
def post_drawer(request, user):
    window.open_drawer(_require_shift(user))
    return json_response({'ok': True})


@counter_endpoint('/reprint', ['POST'])
def post_reprint(request, user):
    Order = Pool().get('scenic.order')
    data = json_body(request)
    session = _require_shift(user)
    orders = Order.search([('reference', '=', data.get('order')),
            ('company', '=', user.company.id)])
    if not orders:
        raise refuse('not_found', "No such order.", 'order')
    jobs = window.print_order(session, orders[0], reprint=True)
    return json_response({'jobs': jobs,
            'printed': window.simulated_print(jobs)})


@counter_endpoint('/refund', ['POST'])
def post_refund(request, user):
    Order = Pool().get('scenic.order')
    data = json_body(request)
    session = _require_shift(user)
    approve = data.get('approve', False)
    if not isinstance(approve, bool):
        raise refuse('invalid_request', "approve: true or false.",
            'approve')
    orders = Order.search([('reference', '=', data.get('order')),
            ('company', '=', user.company.id)])
    if not orders:
        raise refuse('not_found', "No such order.", 'order')
    order, refunds = window.refund(session, orders[0], approved=approve)
    return json_response({'order': order.reference, 'state': order.state,
            'refunds': [{'method': r.method.scenic_provider,
                    'amount': money(-r.amount),
                    'trade_number': r.trade_number} for r in refunds],
            'shift': _shift_json(session)})


@counter_endpoint('/pickup', ['POST'])
def post_pickup(request, user):
    """Today's paid orders of the ID card on the desk reader, or the order
    of a reference with its contact phone (the visitor without the card:
    the two factors a visitor holds, checked by the cashier); their
    tickets printed."""
    Order = Pool().get('scenic.order')
    data = json_body(request)
    session = _require_shift(user)
    number = data.get('id_number')
    reference = data.get('reference')
    if isinstance(reference, str) and reference.strip():
        phone = data.get('phone')
        phone = phone.replace(' ', '').replace('-', '') if isinstance(
            phone, str) else ''
        if not PHONE_RE.match(phone):
            raise refuse('invalid_request',
                "The order's contact phone is needed with its reference.",
                'phone')
        orders = Order.search([('company', '=', user.company.id),
                ('reference', '=', reference.strip()),
                ('contact_phone', '=', phone),
                ('state', 'in', ['paid', 'partly_used'])])
        if not orders:
            raise refuse('not_found', "No paid order with this reference "
                "and phone.", 'reference')
    elif isinstance(number, str) and number.strip():
        today = dt.datetime.now(area_timezone(user.company)).date()
        orders = window.find_by_id(user.company.id, number.strip(), today)
    else:
        raise refuse('invalid_request', "Read the visitor's ID card, or "
            "give the order reference and phone.", 'id_number')
    jobs = []
    for order in orders:
        jobs.extend(window.print_order(session, order))
    return json_response({'orders': [o.reference for o in orders],
            'jobs': jobs, 'printed': window.simulated_print(jobs)})


@counter_endpoint('/statement', ['GET'], readonly=True)
def get_statement(request, user):
    """A wallet's settlement file for a past day (WeChat Pay's trade bill
    CSV, Alipay's zip), as the provider serves it, for finance to import:
    supervisors only. ?provider=wechat|alipay&date=YYYY-MM-DD"""
    from scenic_ticket.providers import PROVIDERS

    from .counter import is_supervisor
    from .wallets import ProviderError
    if not is_supervisor():
        raise refuse('forbidden',
            "Only a supervisor downloads the wallets' statements.")
    name = request.args.get('provider', '')
    provider = PROVIDERS.get(name)
    inner = getattr(provider, 'inner', None)
    if name not in WALLET_METHODS or not hasattr(inner, 'statement'):
        raise refuse('invalid_request', "provider: a configured wallet "
            f"({', '.join(WALLET_METHODS)}).", 'provider')
    try:
        day = dt.date.fromisoformat(request.args.get('date', ''))
    except ValueError:
        raise refuse('invalid_request', "date: YYYY-MM-DD.", 'date')
    if day >= dt.datetime.now(area_timezone(user.company)).date():
        raise refuse('invalid_request',
            "A day's statement exists from the next day on.", 'date')
    try:
        content = inner.statement(day)
    except (ProviderError, OSError) as error:
        raise refuse('payment_failed', str(error))
    suffix = 'zip' if name == 'alipay' else 'csv'
    return Response(content, content_type=(
            'application/zip' if suffix == 'zip'
            else 'text/csv; charset=utf-8'), headers={
            'Content-Disposition':
            f'attachment; filename="{name}-{day.isoformat()}.{suffix}"',
            'Cache-Control': 'no-store'})
