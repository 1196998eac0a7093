"""The booking engine: the booking API's rush routes without Tryton's
request handling, in front of trytond's WSGI application.

    gunicorn 'scenic_ticket.engine:make_app()'

serves every path trytond serves (sao, JSON-RPC, every other API route are
handed to trytond's application unchanged) and answers these ones itself on
PostgreSQL, with the same paths, fields and error codes:

    POST /<db>/scenic/v1/orders              book
    GET  /<db>/scenic/v1/orders/<reference>  an order
    POST /<db>/scenic/v1/orders/<reference>/pay
    GET  /<db>/scenic/v1/availability?date=  a day's slots, places, prices

What it skips is what the profile showed costs (bench/README.md): the
Tryton transaction per request and the ORM reads that rendered the answer.
What it keeps is every rule: it parses with api.parse_booking, plans with
reservation.plan_booking (the same Catalogue snapshot, pricing and ID
rules), checks holds with reservation.check_holds, writes with
reservation.write_booking_db and pays with reservation.check_payable /
ticket_code, and answers availability with reservation.availability and
api.availability_json, all on its own psycopg connection
(dbtools.Session) under READ COMMITTED, committing before it answers.
Order answers are api.order_json.

One round trip per write: the module's database functions (sql/engine.sql,
installed and upgraded with the module, checked at start) write what the
Python plan says. A booking is `scenic_book` (the idempotency replay
check, then order, lines, visitors, tickets and the claims, refusing with
the plan's codes); a payment is
`scenic_pay_lock` (the order locked, its key and tickets read) then, once
Python has checked it is payable and signed the codes, `scenic_pay`
(payment, tickets, order, the hooks' database functions, the answer); GET
and replays read `scenic_order_answer`. The hold counter is one statement
in a transaction of its own (`scenic_rate_add`, not durable).

Round trips: the connections are in autocommit and the engine opens its
transactions itself. A booking's reads before its write (the channel, the
slot, the holds: Engine.reads) go in one pipeline, outside a transaction:
under READ COMMITTED each statement reads its own snapshot and takes no
lock, inside a transaction or not. A write's transaction starts with the
write: BEGIN, `scenic_book_whole`, COMMIT and the hold counter's
statement go in one pipeline, one round trip (psycopg's implicit BEGIN
was a round trip of its own); the answer leaves once all came back, so
once the booking's commit is durable (Engine.write: a refusal is an error
that aborts the rest). A payment's BEGIN, channel and `scenic_pay_lock`
likewise, then `scenic_pay` and its COMMIT. 12 round trips an order
became 8 (bench/README.md, "sixth pass"), then 4 (the commits with the
writes, so that the hot rows are held for the server's time only, and
the booking's reads together).

HTTP: the engine's routes read the WSGI environ themselves (`Request`)
and write their answers themselves (`Answer`), without werkzeug's
request and response objects; the body is read and refused as
web.json_body does for every route (413 over web.MAX_BODY, 4xx for a
malformed one).

Freshness: the Catalogue snapshot is rebuilt (by catalogue._build, in a
Tryton transaction) when trytond clears its `scenic_ticket.catalogue`
cache: the engine LISTENs on trytond's cache channel (`[cache]
clean_timeout = 0`) and also reads the cache's `ir_cache` timestamp (the
other mode) each booking. Channels and slots are read per request.

State-change hook: bookings insert `reserved` rows (no move, as on the
Tryton path); a payment moves tickets to `valid` and the order to `paid`.
SQL listeners of those moves (`workflow.sql_hook`: the slot-sales rollup)
run in the engine's transaction: `scenic_pay` calls the database functions
they declare (`workflow.sql_hook_functions`), and a listener without one
runs in Python right after it, with the ids it moved; when a module
declares an ORM listener
for those states (`StateMachine._state_hooks`), the payment is handed to
the Tryton route, which runs the hook; today none does (scenic_group
listens on `used`).
Other cases handed to Tryton: SQLite, an area's first payment (which makes
its signing key), a payment with a provider the configuration does not
list for the channel (refusals, payment on a partner's account).
"""
import datetime as dt
import io
import json
import logging
import re
import threading
import time
from contextlib import contextmanager
from decimal import Decimal
from http import HTTPStatus
from types import SimpleNamespace
from urllib.parse import parse_qs
from zoneinfo import ZoneInfo

from sql import Flavor

from trytond import backend, config

from . import api, catalogue as catalogue_module, dbtools, providers
from . import reservation, sqlfunctions
from .errors import ApiError, BookingError
from .signing import signer_of
from .web import error_response, json_body, json_text
from .workflow import entered, sql_hook_functions

logger = logging.getLogger(__name__)

RETRIES = 3
ROUTES = [
    ('POST', re.compile(r'^/([^/]+)/scenic/v1/orders$'), 'book'),
    ('GET', re.compile(r'^/([^/]+)/scenic/v1/orders/([^/]+)$'), 'get'),
    ('POST', re.compile(r'^/([^/]+)/scenic/v1/orders/([^/]+)/pay$'),
        'pay'),
    ('GET', re.compile(r'^/([^/]+)/scenic/v1/availability$'),
        'availability'),
    ]
CATALOGUE_CACHE = 'scenic_ticket.catalogue'
# Every write's transaction (the connections are in autocommit).
BEGIN = 'BEGIN ISOLATION LEVEL READ COMMITTED'
# A booking's reads, in one round trip with CHANNEL (`Engine.reads`): the
# request's slot as catalogue.Catalogue.slot reads it, of the key's
# channel's area, and the slot's holds (reservation.hold_counts_statement)
SLOT = ("SELECT id, zone, date, start_time, end_time, capacity, booked "
    "FROM scenic_time_slot WHERE id = %s AND company = ("
    "SELECT company FROM scenic_channel WHERE api_key_hash = %s AND active)")
KEY_CHANNEL = ('(SELECT id FROM scenic_channel WHERE api_key_hash = %s '
    'AND active)')
# scenic_book_whole's error for any answer but a booking written whole
BOOK_UNFINISHED = 'scenic_book: not written whole'
# authenticate(): the active channel of a key's hash, with the catalogue
# cache's stamp (`Engine.catalogue`): one read
CHANNEL = ("SELECT id, company, code, hold_minutes, ("
    "SELECT timestamp FROM ir_cache WHERE name = %s) "
    "FROM scenic_channel WHERE api_key_hash = %s AND active")


@contextmanager
def pipeline(conn):
    """conn.pipeline(): its statements in one round trip, the first that
    fails raising its own error (the others do not run: the caller rolls
    back). psycopg raises a failure where it reads it, inside the block or
    at its end, and in the first case logs a warning when the block's end
    finds the pipeline aborted: every refusal of scenic_book_whole would
    log one."""
    import psycopg
    failed = []
    try:
        with conn.pipeline():
            try:
                yield
            except psycopg.Error as error:
                failed.append(error)
    except psycopg.errors.PipelineAborted:
        if not failed:
            raise
    if failed:
        raise failed[0]


class Delegate(Exception):
    "Hand this request to trytond's application."


class Engine:
    "One database: its connection pool, caches and cache listener."

    def __init__(self, database_name, min_size=1, max_size=8):
        import psycopg
        from psycopg.conninfo import make_conninfo
        from psycopg.types.json import set_json_loads
        from psycopg_pool import ConnectionPool

        from .web import database_pool
        self.database_name = database_name
        pool = database_pool(database_name)
        if pool is None:
            raise ApiError('not_found', "No such database.")
        self.pool = pool
        self.Order = pool.get('scenic.order')
        self.Ticket = pool.get('scenic.ticket')
        self.conninfo = make_conninfo(
            config.get('database', 'uri'), dbname=database_name)

        def configure(connection):
            # the engine sends BEGIN itself, with its first write (BEGIN)
            connection.autocommit = True
            # the database functions' JSON answers, without the hooks
            # trytond registers for its own JSON columns
            set_json_loads(json.loads, connection)
        with psycopg.connect(self.conninfo) as conn:
            # the database functions this code calls (sql/engine.sql)
            sqlfunctions.check(conn.cursor())
        self.connections = ConnectionPool(self.conninfo, min_size=min_size,
            max_size=max_size, configure=configure, open=True,
            name=f'scenic-engine-{database_name}')
        self.generation = 0
        self.closed = False
        self.catalogues = {}  # company: (generation, stamp, Catalogue)
        self.lock = threading.Lock()
        self.listener = threading.Thread(target=self._listen, daemon=True,
            name=f'scenic-engine-listen-{database_name}')
        self.listener.start()

    def close(self):
        self.closed = True
        self.listener.join(5)
        self.connections.close()

    # --- freshness -------------------------------------------------------

    def _listen(self):
        "Bump the generation when trytond clears the catalogue's cache."
        import psycopg
        while not self.closed:
            try:
                with psycopg.connect(self.conninfo, autocommit=True) as conn:
                    conn.execute('LISTEN "ir_cache"')
                    self.generation += 1  # what passed while not listening
                    while not self.closed:
                        for notify in conn.notifies(timeout=0.5):
                            try:
                                names = json.loads(notify.payload or '[]')
                            except ValueError:
                                names = []
                            if not names or CATALOGUE_CACHE in names:
                                self.generation += 1
            except Exception:
                logger.warning("booking engine: cache listener lost; "
                    "reconnecting", exc_info=True)
                time.sleep(1)

    def catalogue(self, channel):
        """The area's Catalogue, rebuilt when the back office changed it:
        `channel.stamp` is the cache's `ir_cache` timestamp, read with the
        channel (`channel()`) in this request's transaction."""
        company, stamp = channel.company.id, channel.stamp
        generation = self.generation
        cached = self.catalogues.get(company)
        if cached and cached[0] == generation and cached[1] == stamp:
            return cached[2]
        snapshot = self._build(company)
        result = catalogue_module.Catalogue(company, snapshot=snapshot)
        self.catalogues[company] = (generation, stamp, result)
        return result

    def _build(self, company):
        from trytond.transaction import Transaction
        token = dbtools._session.set(None)  # the ORM's own transaction
        try:
            with Transaction().start(self.database_name, 0, readonly=True,
                    context={'company': company, 'companies': [company]}):
                return catalogue_module._build(company)
        finally:
            dbtools._session.reset(token)
            Flavor.set(backend.Database.flavor)

    # --- requests --------------------------------------------------------

    @staticmethod
    def key_hash(request):
        "The hash of the request's channel key (None: no bearer key)."
        from .area import Channel
        header = request.headers.get('Authorization', '')
        scheme, _, key = header.partition(' ')
        if scheme.lower() == 'bearer' and key.strip():
            return Channel.hash_key(key.strip())
        return None

    def channel(self, conn, request):
        "authenticate(): the active channel of the request's key."
        key_hash = self.key_hash(request)
        row = conn.execute(CHANNEL, (CATALOGUE_CACHE, key_hash)).fetchone() \
            if key_hash else None
        return self.channel_of(row)

    @staticmethod
    def channel_of(row):
        "The channel of CHANNEL's row; 401 without one."
        if not row:
            raise BookingError('unauthorized',
                "A valid channel key is required: "
                "'Authorization: Bearer <key>'.")
        return SimpleNamespace(id=row[0], code=row[2], hold_minutes=row[3],
            company=SimpleNamespace(id=row[1]), stamp=row[4])

    def run(self, func, request, *args):
        "func(conn, request, *args) on a pooled connection, with retries."
        import psycopg
        for attempt in range(RETRIES + 1):
            with self.connections.connection() as conn:
                token = dbtools.use_session(dbtools.Session(conn, 0))
                Flavor.set(backend.Database.flavor)
                try:
                    return func(conn, request, *args)
                except (psycopg.errors.IntegrityError,
                        psycopg.errors.SerializationFailure,
                        psycopg.errors.DeadlockDetected):
                    conn.rollback()
                    if attempt == RETRIES:
                        raise
                except BaseException:
                    conn.rollback()
                    raise
                finally:
                    dbtools.end_session(token)

    def book(self, conn, request):
        try:
            key = api.idempotency_key(request)
            booking = api.parse_booking(json_body(request))
        except ApiError:
            self.channel(conn, request)  # a wrong key is refused first
            raise
        client = request.remote_addr or 'unknown'
        now = dbtools.now_utc()
        channel, slot, counts = self.reads(conn, request, booking, client,
            now)
        catalogue = self.catalogue(channel)
        try:
            plan = reservation.plan_booking(channel, booking, now=now,
                catalogue=catalogue, slot=catalogue.slot_from_row(slot))
            reservation.check_holds(channel, plan, client=client, now=now,
                counts=counts)
            self.write(conn, channel, plan, key, client, now)
        except reservation.Replayed as replayed:
            return self.replay(conn, replayed.order_id)
        except BookingError:
            # A replay answers its order whatever the rules say now (the
            # slot sold out since, the client's holds counting its own):
            # the key is looked up first on this path only.
            conn.rollback()
            replay = reservation._find_replay(channel.id, key,
                booking.digest())
            if replay:
                return self.replay(conn, replay)
            raise
        return Answer(api.order_json(
                self.planned_order(plan, catalogue, now),
                self.database_name, tz=catalogue.timezone), status=201)

    def reads(self, conn, request, booking, client, now):
        """A booking's reads before its write, in one round trip: its
        channel (authenticate(): refused here unless active), the slot's
        row (SLOT) and its holds (None without a slot of the channel's
        area: plan_booking refuses it, check_holds is not reached). Each
        reads its own snapshot, as when they were sent one by one."""
        key_hash = self.key_hash(request)
        if key_hash is None:
            self.channel_of(None)
        with pipeline(conn):
            channel = conn.execute(CHANNEL, (CATALOGUE_CACHE, key_hash))
            slot = conn.execute(SLOT, (booking.slot, key_hash))
            holds = conn.execute(*reservation.hold_counts_statement(
                    (KEY_CHANNEL, (key_hash,)), booking.slot,
                    booking.contact_phone, client, now))
        return (self.channel_of(channel.fetchone()), slot.fetchone(),
            holds.fetchone()[0])

    def write(self, conn, channel, plan, key, client, now):
        """Write and commit a booking's plan, then count the hold: raise
        its refusal (BookingError) or Replayed.

        The transaction's BEGIN, the replay check, the plan's rows and
        claims (scenic_book_whole), the COMMIT, and the per-address hold
        counter after it, in a transaction of its own that does not wait
        for the disk, in one round trip: the slot's row and the day's
        stripe are held for the server's time only, not until this
        thread runs again to send the COMMIT. The pipeline's end waits
        for the commit, so the answer leaves once it is durable. Every
        booking from one address (a NAT) updates the counter's row, and
        holding its lock through the booking's commit serialised them at
        one disk flush each. A crash may forget a few counts; never a
        booking. Any answer but a booking written whole aborts the
        transaction: the COMMIT and the count, after it, do not run, and
        the answer is acted on as scenic_book's (book_result) after the
        rollback; the day's counters it left to the Python claim (no free
        stripe with room) are claimed by the same steps in a transaction
        that commits once they are."""
        import psycopg
        try:
            with pipeline(conn):
                conn.execute(BEGIN)
                conn.execute(*reservation.book_statement(plan, key,
                        now=now, whole=True))
                conn.execute('COMMIT')
                reservation.count_hold(channel, client, now=now,
                    durable=False)
            return
        except psycopg.errors.RaiseException as error:
            if error.diag.message_primary != BOOK_UNFINISHED:
                raise
            conn.rollback()
            result = json.loads(error.diag.message_detail)
        if 'daily_from' not in result:
            reservation.book_result(plan, result)
        # the Python claim of the day's counters, then the commit
        with pipeline(conn):
            conn.execute(BEGIN)
            cursor = conn.execute(*reservation.book_statement(plan, key,
                    now=now))
        reservation.book_result(plan, cursor.fetchone()[0])
        with pipeline(conn):
            conn.execute('COMMIT')
            reservation.count_hold(channel, client, now=now, durable=False)

    def replay(self, conn, order_id):
        "The answer to a replayed booking: its order as it is now."
        order = self.load_order(conn, order_id=order_id)
        conn.commit()   # the book's transaction, if scenic_book answered
        return Answer(api.order_json(order, self.database_name,
                tz=order.tz), status=201,
            headers={'Idempotent-Replayed': 'true'})

    @staticmethod
    def planned_order(plan, catalogue, now):
        "The order just written, as order_json reads it: from the plan."
        types = {t.id: t for t in catalogue.snapshot.types}
        return SimpleNamespace(reference=plan.reference, state='reserved',
            total=plan.total,
            currency=SimpleNamespace(code=catalogue.currency_code),
            visit_date=plan.slot.date, slot=plan.slot,
            contact_name=plan.request.contact_name,
            hold_expires_at=dbtools.naive(
                now + dt.timedelta(minutes=plan.hold_minutes)),
            lines=[SimpleNamespace(ticket_type=types[l['ticket_type']],
                    quantity=l['quantity'], persons=l['persons'],
                    unit_price=l['unit_price'], amount=l['amount'])
                for l in plan.lines],
            tickets=[])

    def availability(self, conn, request):
        "The trytond route's answer: its rules, read on this connection."
        channel = self.channel(conn, request)
        date = api.parse_date(request.args.get('date'))
        catalogue = self.catalogue(channel)
        return Answer(api.availability_json(date,
            *reservation.availability(channel, date, catalogue=catalogue)))

    def get(self, conn, request, reference):
        channel = self.channel(conn, request)
        order = self.load_order(conn, reference=reference,
            channel=channel.id)
        return Answer(api.order_json(order, self.database_name,
                tz=order.tz))

    def pay(self, conn, request, reference):
        Order, Ticket = self.Order, self.Ticket
        if ({'paid'} & Order._state_hooks) or (
                {'valid'} & Ticket._state_hooks):
            raise Delegate
        key_hash = self.key_hash(request)
        try:
            provider_name, amount = self.payment(request)
        except ApiError:
            self.channel(conn, request)  # a wrong key is refused first
            raise
        if key_hash is None:
            self.channel_of(None)
        now = dbtools.now_utc()
        sources = Ticket.sources('valid')
        # the transaction's BEGIN, the channel of the key and the order
        # locked, with its payments, its area's signing key and its tickets
        # that may become valid: one round trip (a wrong key finds no
        # order, locks nothing and is refused below; run() rolls back)
        with pipeline(conn):
            conn.execute(BEGIN)
            channel_cursor = conn.execute(CHANNEL,
                (CATALOGUE_CACHE, key_hash))
            cursor = conn.execute('SELECT scenic_pay_lock(%s, ('
                'SELECT id FROM scenic_channel WHERE api_key_hash = %s '
                'AND active), %s)', (reference, key_hash, sources))
        channel = self.channel_of(channel_cursor.fetchone())
        if provider_name not in providers.configured(channel.code):
            # refusals, and providers that consult the database (payment
            # on a partner's account), are the Tryton route's
            raise Delegate
        row = cursor.fetchone()[0]
        if row is None:
            raise BookingError('not_found', "No such order.")
        order_id, company = row['id'], row['company']
        if not reservation.check_payable(Order, row['state'],
                Decimal(row['paid'] or 0), _timestamp(row['expires']),
                Decimal(row['total']), amount, now):
            if row['key_id'] is None:
                raise Delegate  # the area's first payment makes its key
            provider = providers.get_provider(provider_name, channel.code)
            if not provider.engine_safe:
                raise Delegate  # it records or calls out through Tryton
            charged = provider.charge(reference, amount, row['code'])
            signer = signer_of(company, row['key_id'], row['key'])
            tickets = row['tickets']
            ticket_hooks = sql_hook_functions(Ticket.__name__, 'valid')
            order_hooks = sql_hook_functions(Order.__name__, 'paid')
            written = dbtools.naive(now)
            statement = ('SELECT scenic_pay(%s::json)', (
                    json.dumps({
                        'order': order_id, 'company': company,
                        'provider': provider_name,
                        'provider_reference': charged,
                        'amount': amount, 'currency': row['currency'],
                        'now': written, 'uid': dbtools.user(),
                        'key_id': signer.key_id,
                        'tickets': [t[0] for t in tickets],
                        'codes': [reservation.ticket_code(signer, company,
                                t[0], t[1], _timestamp(t[2]),
                                _timestamp(t[3]), t[4], t[5], t[6])
                            for t in tickets],
                        'ticket_sources': sources,
                        'order_sources': Order.sources('paid'),
                        # listeners without a database function run here
                        'ticket_hooks': ticket_hooks or [],
                        'order_hooks': order_hooks or [],
                        }, default=str),))
            if ticket_hooks is None or order_hooks is None:
                result = conn.execute(*statement).fetchone()[0]
                if ticket_hooks is None:
                    entered(Ticket, 'valid', result['tickets'])
                if order_hooks is None:
                    entered(Order, 'paid', result['orders'])
                answer = self.answer(conn, order_id)  # after the hooks
            else:
                # payment, tickets with their codes, the order, the SQL
                # state hooks (slot-sales rollup), the answer and the
                # COMMIT: one round trip, so the order's and the rollup's
                # rows are held for the server's time only, not until
                # this thread runs again to send the COMMIT (the
                # pipeline's end waits for it: the answer leaves once the
                # commit is durable; a failed payment aborts the
                # pipeline, so the COMMIT is not run and run() rolls
                # back)
                with pipeline(conn):
                    cursor = conn.execute(*statement)
                    conn.execute('COMMIT')
                answer = cursor.fetchone()[0]['answer']
        else:
            answer = self.answer(conn, order_id)  # a retry: as it is
        order = order_from(answer)
        # the answer sent once the commit is durable (a no-op when the
        # COMMIT went with scenic_pay)
        conn.commit()
        return Answer(api.order_json(order, self.database_name,
                tz=order.tz))

    @staticmethod
    def payment(request):
        "The payment's provider name and amount, from the body."
        data = json_body(request)
        provider_name = data.get('provider')
        if not isinstance(provider_name, str):
            raise BookingError('invalid_request',
                "'provider' must name a payment provider.", 'provider')
        if 'amount' not in data:
            raise BookingError('invalid_request',
                "'amount' is required.", 'amount')
        return provider_name, api.parse_amount(data['amount'])

    @staticmethod
    def answer(conn, order_id):
        return conn.execute('SELECT scenic_order_answer(%s)',
            (order_id,)).fetchone()[0]

    def load_order(self, conn, order_id=None, reference=None,
            channel=None):
        "An order as order_json reads it, in one statement."
        if order_id is None:
            row = conn.execute('SELECT scenic_order_answer(o.id) '
                'FROM scenic_order o WHERE o.reference = %s '
                'AND o.channel = %s', (reference, channel)).fetchone()
        else:
            row = conn.execute('SELECT scenic_order_answer(%s)',
                (order_id,)).fetchone()
        if not row or row[0] is None:
            raise BookingError('not_found', "No such order.")
        return order_from(row[0])


def _timestamp(value):
    "A timestamp from a database function's JSON (naive UTC)."
    return dt.datetime.fromisoformat(value) if value is not None else None


def order_from(data):
    """An order as order_json reads it, from scenic_order_answer's JSON
    (sql/engine.sql)."""
    tz = ZoneInfo(data['timezone'] or 'Asia/Shanghai')
    slot_id, zone, date, start, end, capacity, booked = data['slot']
    slot = catalogue_module.SlotInfo(slot_id, zone,
        dt.date.fromisoformat(date), dt.time.fromisoformat(start),
        dt.time.fromisoformat(end), capacity, booked or 0, tz)
    lines = [SimpleNamespace(
            ticket_type=SimpleNamespace(code=code, name=name),
            quantity=quantity, persons=persons,
            unit_price=Decimal(unit_price), amount=Decimal(amount))
        for code, name, quantity, persons, unit_price, amount
        in data['lines']]
    tickets = [SimpleNamespace(id=t[0],
            ticket_type=SimpleNamespace(code=t[1]), state=t[2], code=t[3],
            holder_masked=t[4], persons=t[5], entries_allowed=t[6],
            valid_from=_timestamp(t[7]), valid_until=_timestamp(t[8]))
        for t in data['tickets']]
    return SimpleNamespace(id=data['id'], reference=data['reference'],
        state=data['state'], total=Decimal(data['total']),
        currency=SimpleNamespace(code=data['currency']),
        visit_date=dt.date.fromisoformat(data['visit_date']),
        contact_name=data['contact_name'],
        hold_expires_at=_timestamp(data['hold_expires_at']),
        slot=slot, lines=lines, tickets=tickets, tz=tz)


class Headers:
    "A request's headers as the routes read them: get(name, default)."
    __slots__ = ('environ',)

    def __init__(self, environ):
        self.environ = environ

    def get(self, name, default=None):
        key = name.upper().replace('-', '_')
        if key not in {'CONTENT_TYPE', 'CONTENT_LENGTH'}:
            key = 'HTTP_' + key
        return self.environ.get(key, default)


class Request:
    """What the engine's routes read of a request, from the WSGI environ
    (werkzeug's Request, which trytond's wraps, cost ~6 % of the engine's
    Python): headers, remote_addr, args, content_length and get_data as
    web.json_body, api.idempotency_key and the routes use them, read as
    werkzeug reads them."""
    __slots__ = ('environ', 'headers', '_data')

    def __init__(self, environ):
        self.environ = environ
        self.headers = Headers(environ)
        self._data = None

    @property
    def remote_addr(self):
        return self.environ.get('REMOTE_ADDR')

    @property
    def args(self):
        "The query string's parameters: get(name) is the first value."
        return {name: values[0] for name, values in parse_qs(
                self.environ.get('QUERY_STRING', ''),
                keep_blank_values=True).items()}

    @property
    def content_length(self):
        "Content-Length as werkzeug reads it (None: absent, chunked, bad)."
        environ = self.environ
        if environ.get('HTTP_TRANSFER_ENCODING', '') == 'chunked':
            return None
        try:
            return max(0, int(environ.get('CONTENT_LENGTH') or ''))
        except ValueError:
            return None

    def get_data(self, cache=True):
        """The body: Content-Length bytes, or without it what a server
        that ends the input (`wsgi.input_terminated`, chunked bodies) has,
        at most one byte over web.MAX_BODY (json_body refuses it, 413);
        nothing otherwise, as werkzeug."""
        if self._data is None:
            from .web import MAX_BODY
            environ = self.environ
            stream = environ.get('wsgi.input')
            length = self.content_length
            if stream is None:
                data = b''
            elif length is not None:
                data = stream.read(min(length, MAX_BODY + 1)) if length \
                    else b''
            elif environ.get('wsgi.input_terminated'):
                data = stream.read(MAX_BODY + 1)
            else:
                data = b''
            self._data = data
        return self._data


class Answer:
    "A JSON answer, written to the WSGI server as it is."
    __slots__ = ('status', 'body', 'headers')

    def __init__(self, data, status=200, headers=None):
        self.status = status
        self.body = json_text(data).encode()
        self.headers = headers

    def get_data(self):
        return self.body

    def __call__(self, environ, start_response):
        headers = [('Content-Type', 'application/json'),
            ('Content-Length', str(len(self.body)))]
        if self.headers:
            headers.extend(self.headers.items())
        start_response(_status_line(self.status), headers)
        return [self.body]


_STATUS_LINES = {}


def _status_line(status):
    line = _STATUS_LINES.get(status)
    if line is None:
        line = _STATUS_LINES[status] = (
            f'{status} {HTTPStatus(status).phrase.upper()}')
    return line


class EngineApp:
    "WSGI: the engine's routes on PostgreSQL, trytond's app for the rest."

    def __init__(self, application):
        self.application = application
        self.engines = {}
        self.lock = threading.Lock()

    def engine(self, database_name):
        engine = self.engines.get(database_name)
        if engine is None:
            with self.lock:
                engine = self.engines.get(database_name)
                if engine is None:
                    engine = Engine(database_name)
                    self.engines[database_name] = engine
        return engine

    def close(self):
        for engine in self.engines.values():
            engine.close()
        self.engines.clear()

    def route(self, environ):
        method = environ.get('REQUEST_METHOD')
        path = environ.get('PATH_INFO', '')
        for route_method, pattern, name in ROUTES:
            if method == route_method:
                match = pattern.match(path)
                if match:
                    return name, match.groups()
        return None, None

    def __call__(self, environ, start_response):
        if backend.name != 'postgresql':
            return self.application(environ, start_response)
        name, groups = self.route(environ)
        if name is None:
            return self.application(environ, start_response)
        request = Request(environ)
        database_name, *args = groups
        try:
            try:
                engine = self.engine(database_name)
                response = engine.run(
                    getattr(engine, name), request, *args)
            except ApiError as error:
                response = error_response(error, respond=Answer)
        except Delegate:
            # the body may have been read: hand it on as it came
            data = request.get_data(cache=True)
            environ['wsgi.input'] = io.BytesIO(data)
            environ['CONTENT_LENGTH'] = str(len(data))
            return self.application(environ, start_response)
        except Exception:
            logger.exception("booking engine: %s %s failed",
                environ.get('REQUEST_METHOD'), name)
            response = error_response(ApiError('internal_error',
                    "The server could not handle this request; "
                    "nothing was changed."), respond=Answer)
        return response(environ, start_response)


def make_app():
    """The WSGI application to serve: trytond's (its pools initialised as
    trytond.application does) behind the engine.

        gunicorn 'scenic_ticket.engine:make_app()'
    """
    from trytond.application import app as application
    return EngineApp(application)
