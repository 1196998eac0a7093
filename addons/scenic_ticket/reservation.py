"""The lean path of timed reservation: hold, pay, cancel, expire.

A holiday rush books faster than the ORM creates records, so bookings are
set-based SQL through Tryton's transaction, writing the same rows the back
office shows. Capacity and per-ID rules are claimed by conditional writes
(`UPDATE … WHERE booked + n <= capacity`, upserts with a WHERE) that the
database makes atomic; a claim that fails raises BookingError, the
transaction rolls back, and nothing is half-written.

Every claim and release takes its row locks in one order (ID usages by hash,
then the slot, then daily counters by scope) so concurrent bookings never
deadlock; the hottest rows (the day's counters) come last so their locks
are held for the shortest time before commit.
"""
import datetime as dt
import hashlib
import json
import secrets
from collections import defaultdict
from dataclasses import dataclass, field
from decimal import Decimal

from sql import Conflict, For
from sql.conditionals import Case
from sql.operators import Exists

from scenic_common import idnumber, ticketcode

from trytond import backend
from trytond.model.fields import SQL_OPERATORS
from trytond.pool import Pool
from trytond.transaction import Transaction

from .catalogue import Catalogue
from .payment import get_provider

HOLD_MINUTES = 15
# Paid orders, before and after their tickets are admitted at the gates.
PAID_STATES = ('paid', 'partly_used', 'used')
REFERENCE_ALPHABET = 'ABCDEFGHJKLMNPQRSTUVWXYZ23456789'
REFERENCE_LENGTH = 16  # ~80 bits: the reference is also a capability
BOOKABLE_VALIDITIES = {'time_slot', 'fixed_date', 'days_from_first_use'}


class BookingError(Exception):
    "A refusal the API reports as {'error': {code, message, field}}."
    STATUS = {
        'sold_out': 409, 'id_limit': 409, 'daily_limit': 409,
        'idempotency_conflict': 409, 'not_payable': 409,
        'not_cancellable': 409,
        'invalid_id_number': 422, 'invalid_request': 422,
        'amount_mismatch': 422, 'payment_failed': 402,
        'unauthorized': 401, 'not_found': 404, 'internal_error': 500,
        }

    def __init__(self, code, message, field=None):
        super().__init__(message)
        self.code = code
        self.message = message
        self.field = field

    @property
    def status(self):
        return self.STATUS.get(self.code, 400)


@dataclass
class Visitor:
    name: str
    id_type: str
    id_number: str
    field: str  # where it came from in the request, for errors


@dataclass
class Item:
    ticket_type: str  # code
    visitors: list = field(default_factory=list)
    persons: int | None = None
    field: str = ''


@dataclass
class BookingRequest:
    slot: int
    items: list
    contact_name: str
    contact_phone: str

    def digest(self):
        "A stable hash of the request, for idempotent replays."
        data = {
            'slot': self.slot,
            'contact': [self.contact_name, self.contact_phone],
            'items': [[i.ticket_type, i.persons,
                    [[v.name, v.id_type, idnumber.normalize(
                                v.id_type, v.id_number)]
                        for v in i.visitors]] for i in self.items],
            }
        return hashlib.sha256(
            json.dumps(data, sort_keys=True).encode()).hexdigest()


def now_utc():
    return dt.datetime.now(dt.timezone.utc)


def _naive(value):
    "Tryton stores timestamps as naive UTC."
    return value.astimezone(dt.timezone.utc).replace(tzinfo=None)


def new_reference():
    return ''.join(
        secrets.choice(REFERENCE_ALPHABET) for _ in range(REFERENCE_LENGTH))


def use_read_committed():
    """Let conditional writes see the latest committed row.

    Tryton opens PostgreSQL transactions REPEATABLE READ, where two bookings
    updating the same counter make one fail with a serialization error;
    under READ COMMITTED the second re-checks its WHERE against the first's
    result instead. Only cache syncing has run in the transaction so far,
    so ending it here loses nothing.
    """
    if backend.name != 'postgresql':
        return
    from psycopg import IsolationLevel
    connection = Transaction().connection
    connection.rollback()
    connection.isolation_level = IsolationLevel.READ_COMMITTED


def _audit(values=None):
    "Columns every Tryton row carries."
    user = Transaction().user
    values = dict(values or {})
    values.update(create_uid=user, create_date=_naive(now_utc()))
    return values


def _insert(table, rows):
    "Insert dict rows sharing keys; return their ids in order."
    if not rows:
        return []
    rows = [_audit(r) for r in rows]
    names = list(rows[0])
    cursor = Transaction().connection.cursor()
    columns = [getattr(table, n) for n in names]
    values = [[r[n] for n in names] for r in rows]
    if backend.name == 'postgresql':
        cursor.execute(*table.insert(
                columns, values, returning=[table.id]))
        return [r[0] for r in cursor.fetchall()]
    # SQLite refuses RETURNING on the aliased table python-sql writes.
    ids = []
    for row in values:
        cursor.execute(*table.insert(columns, [row]))
        ids.append(cursor.lastrowid)
    return ids


# --- claims ------------------------------------------------------------------

def _claim_id(company, date, id_hash, limit):
    "Count one more ticket for an ID on a day, within its limit."
    table = Pool().get('scenic.id_day_usage').__table__()
    cursor = Transaction().connection.cursor()
    where = (table.count < limit) if limit else None
    cursor.execute(*table.insert(
            [table.company, table.date, table.id_hash, table.count,
                table.create_uid, table.create_date],
            [[company, date, id_hash, 1, Transaction().user,
                    _naive(now_utc())]],
            on_conflict=Conflict(
                table, indexed_columns=[
                    table.company, table.date, table.id_hash],
                columns=[table.count], values=[table.count + 1],
                where=where)))
    return cursor.rowcount == 1


def _claim_slot(slot_id, persons):
    table = Pool().get('scenic.time_slot').__table__()
    cursor = Transaction().connection.cursor()
    cursor.execute(*table.update(
            [table.booked], [table.booked + persons],
            where=(table.id == slot_id)
            & (table.booked + persons <= table.capacity)))
    return cursor.rowcount == 1


def _claim_daily(company, date, scope, zone, persons, maximum):
    "Add persons to a day's counter unless it would pass the maximum."
    table = Pool().get('scenic.daily_load').__table__()
    cursor = Transaction().connection.cursor()
    where = ((table.company == company) & (table.date == date)
        & (table.scope == scope))

    def claim():
        cursor.execute(*table.update(
                [table.booked, table.maximum],
                [table.booked + persons, maximum],
                where=where & (table.booked + persons <= maximum)))
        return cursor.rowcount == 1
    # The counter exists but for the day's first booking: try it first, as
    # an insert would wait on whoever holds the row.
    if claim():
        return True
    cursor.execute(*table.select(table.id, where=where))
    if cursor.fetchone():
        return False
    cursor.execute(*table.insert(
            [table.company, table.date, table.scope, table.zone,
                table.booked, table.maximum, table.create_uid,
                table.create_date],
            [[company, date, scope, zone, 0, maximum, Transaction().user,
                    _naive(now_utc())]],
            on_conflict=Conflict(
                table, indexed_columns=[
                    table.company, table.date, table.scope])))
    return claim()


def _release(company, date, slot_id, id_hashes, scope_persons, persons):
    "Give back what a booking claimed, in the claiming lock order."
    pool = Pool()
    usage = pool.get('scenic.id_day_usage').__table__()
    slot = pool.get('scenic.time_slot').__table__()
    daily = pool.get('scenic.daily_load').__table__()
    cursor = Transaction().connection.cursor()
    for id_hash in sorted(id_hashes):
        cursor.execute(*usage.update(
                [usage.count], [usage.count - id_hashes[id_hash]],
                where=(usage.company == company) & (usage.date == date)
                & (usage.id_hash == id_hash)))
    if slot_id and persons:
        cursor.execute(*slot.update(
                [slot.booked], [slot.booked - persons],
                where=slot.id == slot_id))
    for scope in sorted(scope_persons):
        cursor.execute(*daily.update(
                [daily.booked], [daily.booked - scope_persons[scope]],
                where=(daily.company == company) & (daily.date == date)
                & (daily.scope == scope)))


# --- booking -----------------------------------------------------------------

def _find_replay(channel_id, key, digest):
    table = Pool().get('scenic.order').__table__()
    cursor = Transaction().connection.cursor()
    cursor.execute(*table.select(table.id, table.request_hash,
            where=(table.channel == channel_id)
            & (table.idempotency_key == key)))
    row = cursor.fetchone()
    if not row:
        return None
    if row[1] != digest:
        raise BookingError('idempotency_conflict',
            "This Idempotency-Key was used with another request.",
            'Idempotency-Key')
    return row[0]


def _visitor_ids(company, visitors):
    "Find or create the visitor records; return {id_hash: visitor id}."
    from .visitor import pii_vault
    pool = Pool()
    table = pool.get('scenic.visitor').__table__()
    cursor = Transaction().connection.cursor()
    vault = pii_vault()
    result = {}
    for visitor, normalized, id_hash in visitors:
        if id_hash in result:
            continue
        cursor.execute(*table.insert(
                [table.company, table.name, table.id_type,
                    table.id_encrypted, table.id_masked, table.id_hash,
                    table.create_uid, table.create_date],
                [[company, visitor.name, visitor.id_type,
                        vault.encrypt(normalized),
                        idnumber.mask(normalized), id_hash,
                        Transaction().user, _naive(now_utc())]],
                on_conflict=Conflict(
                    table, indexed_columns=[table.company, table.id_hash])))
        cursor.execute(*table.select(table.id,
                where=(table.company == company)
                & (table.id_hash == id_hash)))
        result[id_hash] = cursor.fetchone()[0]
    return result


def book(channel, request, idempotency_key, now=None):
    """Hold seats for a booking request; return the order id.

    `channel` is the scenic.channel record the request came through.
    """
    from .visitor import pii_vault
    pool = Pool()
    now = now or now_utc()
    company = channel.company.id
    digest = request.digest()
    replay = _find_replay(channel.id, idempotency_key, digest)
    if replay:
        return replay, True

    catalogue = Catalogue(company)
    slot = catalogue.slot(request.slot)
    if slot is None:
        raise BookingError('invalid_request', "This time slot does not "
            "exist.", 'slot')
    if slot.aware(slot.end_time) <= now:
        raise BookingError('invalid_request',
            "This time slot has already ended.", 'slot')
    vault = pii_vault()

    lines, tickets, id_claims = [], [], []
    visitors = []
    scope_persons = defaultdict(int)
    scope_info = {}
    total = Decimal(0)
    for item in request.items:
        ttype = catalogue.types.get(item.ticket_type)
        if (not ttype or not ttype.active or ttype.is_card
                or ttype.validity not in BOOKABLE_VALIDITIES
                or not ttype.sold_on(channel.id)):
            raise BookingError('invalid_request',
                f"Ticket type {item.ticket_type!r} is not sold on this "
                "channel.", f'{item.field}.ticket_type')
        if not ttype.admits(slot.zone):
            raise BookingError('invalid_request',
                f"Ticket type {item.ticket_type!r} does not admit to the "
                "zone of this time slot.", f'{item.field}.ticket_type')
        holders = []
        if ttype.real_name:
            if not item.visitors:
                raise BookingError('invalid_request',
                    "This ticket type is real-name: give one visitor per "
                    "person.", f'{item.field}.visitors')
            if item.persons not in (None, len(item.visitors)):
                raise BookingError('invalid_request',
                    "Real-name tickets take one visitor per person.",
                    f'{item.field}.persons')
            for visitor in item.visitors:
                try:
                    normalized = idnumber.validate(
                        visitor.id_type, visitor.id_number)
                except idnumber.InvalidIDNumber as exc:
                    raise BookingError('invalid_id_number', exc.message,
                        f'{visitor.field}.id_number')
                id_hash = vault.lookup_hash(visitor.id_type, normalized)
                visitors.append((visitor, normalized, id_hash))
                holders.append(
                    (id_hash, idnumber.mask(normalized), visitor.field))
            quantity = len(item.visitors)
            persons = quantity * ttype.persons
        else:
            persons = item.persons or ttype.persons
            if persons % ttype.persons:
                raise BookingError('invalid_request',
                    f"Ticket type {item.ticket_type!r} admits "
                    f"{ttype.persons} persons per ticket.",
                    f'{item.field}.persons')
            quantity = persons // ttype.persons
        quote = catalogue.quote(ttype, slot, channel.id)
        amount = quote.price * quantity
        total += amount
        valid_from, valid_until = catalogue.validity(ttype, slot)
        for scope, zone, maximum in catalogue.load_scopes(ttype):
            scope_persons[scope] += persons
            scope_info[scope] = (zone, maximum)
        line = {
            'ticket_type': ttype.id, 'quantity': quantity,
            'persons': persons, 'unit_price': quote.price,
            'amount': amount, 'price_explanation': quote.explanation(),
            }
        lines.append(line)
        for n in range(quantity):
            holder = holders[n] if holders else (None, None, None)
            tickets.append((line, ttype, holder, valid_from, valid_until))
            if holder[0]:
                id_claims.append((holder[0], ttype.id_limit, holder[2]))

    persons_total = sum(l['persons'] for l in lines)
    if not lines or not persons_total:
        raise BookingError('invalid_request', "The order has no tickets.",
            'items')

    # Rows no one else writes first; contended claims last.
    order_table = pool.get('scenic.order').__table__()
    line_table = pool.get('scenic.order.line').__table__()
    ticket_table = pool.get('scenic.ticket').__table__()
    hold_minutes = channel.hold_minutes or HOLD_MINUTES
    order_id, = _insert(order_table, [{
                'company': company, 'reference': new_reference(),
                'channel': channel.id, 'slot': slot.id,
                'visit_date': slot.date, 'state': 'reserved',
                'contact_name': request.contact_name,
                'contact_phone': request.contact_phone,
                'hold_expires_at': _naive(
                    now + dt.timedelta(minutes=hold_minutes)),
                'total': total, 'currency': catalogue.snapshot.currency,
                'idempotency_key': idempotency_key,
                'request_hash': digest,
                }])
    for line in lines:
        line['order'] = order_id
    line_ids = _insert(line_table, lines)
    for line, line_id in zip(lines, line_ids):
        line['id'] = line_id
    visitor_ids = _visitor_ids(company, visitors)
    _insert(ticket_table, [{
                'company': company, 'order': order_id, 'line': line['id'],
                'ticket_type': ttype.id, 'slot': slot.id,
                'visit_date': slot.date,
                'visitor': visitor_ids.get(holder[0]),
                'holder_hash': holder[0], 'holder_masked': holder[1],
                'persons': ttype.persons, 'entries_allowed': ttype.entries,
                'valid_from': _naive(valid_from),
                'valid_until': _naive(valid_until),
                'state': 'reserved',
                } for line, ttype, holder, valid_from, valid_until
            in tickets])

    for id_hash, limit, field_ in sorted(id_claims):
        if not _claim_id(company, slot.date, id_hash, limit):
            raise BookingError('id_limit',
                "This ID already holds the most tickets allowed for that "
                "day.", f'{field_}.id_number')
    if not _claim_slot(slot.id, persons_total):
        raise BookingError('sold_out',
            "Not enough places are left in this time slot.", 'slot')
    for scope in sorted(scope_persons):
        zone, maximum = scope_info[scope]
        if not _claim_daily(company, slot.date, scope, zone,
                scope_persons[scope], maximum):
            raise BookingError('daily_limit',
                "The daily maximum of visitors for that day is reached.",
                'slot')
    return order_id, False


# --- payment, cancellation, expiry ---------------------------------------------

def _lock_order(order_id):
    "Serialize payment, cancellation and expiry of one order."
    Order = Pool().get('scenic.order')
    table = Order.__table__()
    cursor = Transaction().connection.cursor()
    query = table.select(table.id, where=table.id == order_id)
    if backend.name == 'postgresql':
        query.for_ = For('UPDATE')
    cursor.execute(*query)
    if not cursor.fetchone():
        raise BookingError('not_found', "No such order.")
    Transaction().cache.clear()
    return Order(order_id)


def pay(order_id, provider_name, amount, now=None):
    "Charge a held order and sign its tickets."
    pool = Pool()
    SigningKey = pool.get('scenic.signing_key')
    now = now or now_utc()
    order = _lock_order(order_id)
    if order.state in PAID_STATES:
        paid = sum(p.amount for p in order.payments if p.kind == 'payment')
        if paid == amount:
            return order  # a retried payment: the same answer again
    if order.state != 'reserved':
        raise BookingError('not_payable',
            f"This order is {order.state} and cannot be paid.")
    if order.hold_expires_at.replace(tzinfo=dt.timezone.utc) <= now:
        raise BookingError('not_payable',
            "The hold on this order has expired.")
    if amount != order.total:
        raise BookingError('amount_mismatch',
            f"The amount must be the order's total, {order.total}.",
            'amount')
    provider = get_provider(provider_name)
    reference = provider.charge(order.reference, amount, order.currency.code)

    table = pool.get('scenic.payment').__table__()
    _insert(table, [{
                'company': order.company.id, 'order': order.id,
                'kind': 'payment', 'provider': provider_name,
                'provider_reference': reference, 'amount': amount,
                'currency': order.currency.id, 'date': _naive(now),
                }])
    signer = SigningKey.active_signer(order.company)
    ticket_table = pool.get('scenic.ticket').__table__()
    cursor = Transaction().connection.cursor()
    for ticket in order.tickets:
        payload = ticketcode.TicketPayload(
            ticket_id=ticket.id, area_id=order.company.id,
            ticket_type_id=ticket.ticket_type.id,
            valid_from=ticket.valid_from.replace(tzinfo=dt.timezone.utc),
            valid_until=ticket.valid_until.replace(tzinfo=dt.timezone.utc),
            persons=ticket.persons, entries=ticket.entries_allowed,
            key_id=signer.key_id,
            holder_hash=(bytes.fromhex(ticket.holder_hash)[:8]
                if ticket.holder_hash else b''))
        cursor.execute(*ticket_table.update(
                [ticket_table.state, ticket_table.code,
                    ticket_table.key_id, ticket_table.write_date,
                    ticket_table.write_uid],
                ['valid', ticketcode.encode(payload, signer),
                    signer.key_id, _naive(now), Transaction().user],
                where=ticket_table.id == ticket.id))
    order_table = pool.get('scenic.order').__table__()
    cursor.execute(*order_table.update(
            [order_table.state, order_table.paid_at],
            ['paid', _naive(now)], where=order_table.id == order.id))
    Transaction().cache.clear()
    return pool.get('scenic.order')(order.id)


def refundable(ticket_type, slot, now):
    rule = ticket_type.refund_rule
    if rule == 'never':
        return False
    start = slot.aware(slot.start_time)
    if rule == 'until_day_before':
        return now < start.replace(hour=0, minute=0, second=0)
    return now < start


def _release_order(order, ticket_state, now):
    pool = Pool()
    ticket_table = pool.get('scenic.ticket').__table__()
    order_table = pool.get('scenic.order').__table__()
    id_hashes = defaultdict(int)
    for ticket in order.tickets:
        if ticket.holder_hash:
            id_hashes[ticket.holder_hash] += 1
    company = order.company
    catalogue = Catalogue(company.id)
    types = {t.id: t for t in catalogue.snapshot.types}
    scope_persons = defaultdict(int)
    for line in order.lines:
        for scope, _, _ in catalogue.load_scopes(types[line.ticket_type.id]):
            scope_persons[scope] += line.persons
    persons = sum(l.persons for l in order.lines)
    _release(company.id, order.visit_date, order.slot.id, id_hashes,
        scope_persons, persons)
    cursor = Transaction().connection.cursor()
    cursor.execute(*ticket_table.update(
            [ticket_table.state, ticket_table.revoked_at,
                ticket_table.write_date, ticket_table.write_uid],
            [ticket_state, _naive(now) if ticket_state == 'revoked'
                else None, _naive(now), Transaction().user],
            where=(ticket_table.order == order.id)))
    return order_table, cursor


def cancel(order_id, now=None, by_back_office=False):
    """Cancel a hold, or refund a paid order as its ticket types allow.

    Seats and per-ID counts come back; paid tickets' codes are revoked.
    """
    now = now or now_utc()
    order = _lock_order(order_id)
    if order.state == 'reserved':
        order_table, cursor = _release_order(order, 'cancelled', now)
        new_state = 'cancelled'
    elif order.state in PAID_STATES:
        if (order.state != 'paid'
                or any(t.state != 'valid' for t in order.tickets)):
            raise BookingError('not_cancellable',
                "Tickets of this order have been used: it cannot be "
                "refunded.")
        if not by_back_office and not all(
                refundable(l.ticket_type, order.slot, now)
                for l in order.lines):
            raise BookingError('not_cancellable',
                "The refund period of these tickets is over.")
        payment_table = Pool().get('scenic.payment').__table__()
        for payment in order.payments:
            if payment.kind != 'payment':
                continue
            provider = get_provider(payment.provider)
            reference = provider.refund(
                payment.provider_reference, payment.amount,
                payment.currency.code)
            _insert(payment_table, [{
                        'company': order.company.id, 'order': order.id,
                        'kind': 'refund', 'provider': payment.provider,
                        'provider_reference': reference,
                        'amount': payment.amount,
                        'currency': payment.currency.id,
                        'date': _naive(now),
                        }])
        order_table, cursor = _release_order(order, 'revoked', now)
        new_state = 'refunded'
    else:
        raise BookingError('not_cancellable',
            f"This order is {order.state} and cannot be cancelled.")
    cursor.execute(*order_table.update(
            [order_table.state, order_table.closed_at],
            [new_state, _naive(now)], where=order_table.id == order.id))
    Transaction().cache.clear()
    return Pool().get('scenic.order')(order.id)


def expire_holds(now=None, limit=500):
    "Release the seats of holds that passed their expiry; return how many."
    pool = Pool()
    table = pool.get('scenic.order').__table__()
    now = now or now_utc()
    cursor = Transaction().connection.cursor()
    query = table.select(table.id,
        where=(table.state == 'reserved')
        & (table.hold_expires_at <= _naive(now)),
        order_by=[table.hold_expires_at.asc], limit=limit)
    if backend.name == 'postgresql':
        query.for_ = For('UPDATE', skip_locked=True)
    cursor.execute(*query)
    ids = [r[0] for r in cursor.fetchall()]
    for order_id in ids:
        order = _lock_order(order_id)
        order_table, cursor = _release_order(order, 'cancelled', now)
        cursor.execute(*order_table.update(
                [order_table.state, order_table.closed_at],
                ['expired', _naive(now)], where=order_table.id == order_id))
    Transaction().cache.clear()
    return len(ids)


def mark_orders_used(order_ids, now=None):
    """Move paid orders along as their tickets are admitted: `partly_used`
    while a ticket of the order is not used yet, `used` once all are.

    One statement for any number of orders, for the gates' uploads; the
    caller has set the tickets' states and holds the orders' locks (as
    `_lock_order` takes them), so a refund cannot slip in between.
    """
    if not order_ids:
        return
    pool = Pool()
    order = pool.get('scenic.order').__table__()
    ticket = pool.get('scenic.ticket').__table__()
    now = now or now_utc()
    unused = ticket.select(ticket.id,
        where=(ticket.order == order.id) & (ticket.state != 'used'))
    cursor = Transaction().connection.cursor()
    cursor.execute(*order.update(
            [order.state, order.write_date, order.write_uid],
            [Case((Exists(unused), 'partly_used'), else_='used'),
                _naive(now), Transaction().user],
            where=SQL_OPERATORS['in'](order.id, sorted(set(order_ids)))
            & order.state.in_(['paid', 'partly_used'])))
    Transaction().cache.clear()


# --- reading -----------------------------------------------------------------

def availability(channel, date):
    "The bookable slots of a day with what is left and the prices."
    TimeSlot = Pool().get('scenic.time_slot')
    catalogue = Catalogue(channel.company.id)
    types = [t for t in catalogue.types.values()
        if t.active and not t.is_card
        and t.validity in BOOKABLE_VALIDITIES and t.sold_on(channel.id)]
    slots = TimeSlot.search([
            ('company', '=', channel.company.id),
            ('date', '=', date),
            ])
    result = []
    for slot in slots:
        zone = slot.zone.id if slot.zone else None
        prices = [(t, catalogue.quote(t, slot, channel.id).price)
            for t in types if t.admits(zone)]
        result.append((slot, prices))
    return catalogue, result


def find_for_pickup(company, id_number, phone):
    "Orders whose contact phone matches and one ticket holds this ID."
    from .visitor import id_hashes
    pool = Pool()
    Order = pool.get('scenic.order')
    hashes = id_hashes(id_number)
    if not hashes or not phone:
        return []
    return Order.search([
            ('company', '=', company),
            ('contact_phone', '=', phone),
            ('tickets.holder_hash', 'in', hashes),
            ('state', 'in', ['reserved', 'paid', 'partly_used', 'used']),
            ])
