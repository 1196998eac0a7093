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

A booking is two public steps that every sales path calls (the booking API,
the box office counter, partner orders against allotments, remote sites):
`plan_booking` validates and prices a request into a BookingPlan, reading
only; `write_booking` inserts the plan and makes its claims. `book` is the
API's: an idempotent replay check, then both. Order and ticket states move
by `workflow.sql_transition`, within their declared transitions.
"""
import datetime as dt
import hashlib
import json
import secrets
from collections import defaultdict
from dataclasses import dataclass, field
from decimal import Decimal
from types import SimpleNamespace

from sql import Conflict, Select
from sql.aggregate import Count, Sum
from sql.conditionals import Case
from sql.operators import Exists, Not

from scenic_common import idnumber, ticketcode

from trytond import backend
from trytond.model.fields import SQL_OPERATORS
from trytond.pool import Pool

from .catalogue import Catalogue
from .dbtools import cursor as db_cursor
from .dbtools import forget, insert, lock, naive, now_utc, rendered
from .dbtools import table as sql_table
from .dbtools import user as db_user
from .errors import BookingError
from .providers import get_provider
from .vault import pii_vault
from .workflow import entered, sql_transition

HOLD_MINUTES = 15
# plan_booking's slot, when its caller did not read it
NOT_READ = object()
# Paid orders, before and after their tickets are admitted at the gates.
PAID_STATES = ('paid', 'partly_used', 'used')
REFERENCE_ALPHABET = 'ABCDEFGHJKLMNPQRSTUVWXYZ23456789'
REFERENCE_LENGTH = 16  # ~80 bits: the reference is also a capability
BOOKABLE_VALIDITIES = {'time_slot', 'fixed_date', 'days_from_first_use'}


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


def new_reference():
    return ''.join(
        secrets.choice(REFERENCE_ALPHABET) for _ in range(REFERENCE_LENGTH))


# --- claims ------------------------------------------------------------------

def _claim_id(company, date, id_hash, limit):
    "Count one more ticket for an ID on a day, within its limit."
    limited = bool(limit)

    def build(company, date, id_hash, limit, user, now):
        table = sql_table('scenic.id_day_usage')
        return table.insert(
            [table.company, table.date, table.id_hash, table.count,
                table.create_uid, table.create_date],
            [[company, date, id_hash, 1, user, now]],
            on_conflict=Conflict(
                table, indexed_columns=[
                    table.company, table.date, table.id_hash],
                columns=[table.count], values=[table.count + 1],
                where=(table.count < limit) if limited else None))
    cursor = db_cursor()
    cursor.execute(*rendered(('claim_id', limited), build,
            company=company, date=date, id_hash=id_hash,
            limit=limit, user=db_user(), now=naive(now_utc())))
    return cursor.rowcount == 1


def _claim_slot(slot_id, persons):
    def build(slot_id, persons):
        table = sql_table('scenic.time_slot')
        return table.update(
            [table.booked], [table.booked + persons],
            where=(table.id == slot_id)
            & (table.booked + persons <= table.capacity))
    cursor = db_cursor()
    cursor.execute(*rendered('claim_slot', build,
            slot_id=slot_id, persons=persons))
    return cursor.rowcount == 1


# The day's counter of an area or zone is DAILY_STRIPES rows, each with a
# share of the maximum: every booking of the day updates a counter and holds
# its lock until the commit is flushed, so one row would sell one booking
# per WAL flush. 16: the engine's pools hold 2 x 8 connections, so that many
# bookings can be between their claim and their commit. Constant: the
# shares of existing days depend on it.
DAILY_STRIPES = 16


def stripe_shares(maximum):
    "The daily maximum split over the stripes, the remainder on the first."
    base, extra = divmod(maximum, DAILY_STRIPES)
    return [base + (i < extra) for i in range(DAILY_STRIPES)]


def _share(table, maximum):
    "stripe_shares(maximum)[stripe] as an SQL expression."
    return _share_of(table, SimpleNamespace(**_share_values(maximum)))


def _add_stripes(company, date, scope, zone, maximum, booked=()):
    "Create a day's stripes (its first booking in that scope)."
    table = sql_table('scenic.daily_load.stripe')
    shares = stripe_shares(maximum)
    booked = list(booked) + [0] * (DAILY_STRIPES - len(booked))
    db_cursor().execute(*table.insert(
            [table.company, table.date, table.scope, table.zone,
                table.stripe, table.booked, table.maximum, table.create_uid,
                table.create_date],
            [[company, date, scope, zone, i, booked[i], shares[i],
                    db_user(), naive(now_utc())]
                for i in range(DAILY_STRIPES)],
            on_conflict=Conflict(
                table, indexed_columns=[
                    table.company, table.date, table.scope, table.stripe])))


def spread_daily(company, date, scope, zone, booked, maximum):
    """Turn a day's single counter (stripe 0, before striping) into its
    stripes, its count spread over their shares."""
    table = sql_table('scenic.daily_load.stripe')
    shares = stripe_shares(maximum)
    counts, left = [], booked
    for share in shares:
        counts.append(min(share, max(left, 0)))
        left -= counts[-1]
    counts[0] += left  # over the maximum already: kept, never lost
    db_cursor().execute(*table.update(
            [table.booked, table.maximum], [counts[0], shares[0]],
            where=(table.company == company) & (table.date == date)
            & (table.scope == scope) & (table.stripe == 0)))
    _add_stripes(company, date, scope, zone, maximum, booked=counts)


def _share_of(table, p):
    "_share with its numbers as parameters p.base, p.extra (_share_values)."
    return Case((table.stripe < p.extra, p.over), else_=p.base)


def _share_values(maximum):
    base, extra = divmod(maximum, DAILY_STRIPES)
    return {'base': base, 'over': base + 1, 'extra': extra}


def _stripe_day(table, company, date, scope):
    return ((table.company == company) & (table.date == date)
        & (table.scope == scope))


def _update_free_stripe(company, date, scope, start, shape, condition,
        values, params):
    """Update the first stripe from `start` on (wrapping) that meets
    `condition` and no other transaction holds; return whether one was.

    `condition(table, p)` and `values` ({column: f(table, p)}) read their
    numbers from p, `params` on a namespace; `shape` names them: the
    statement is built once per shape (dbtools.rendered).

    It never waits for a lock, so it holds at most the row it updated and
    never waits while holding one: the lock order stays deadlock-free (a
    conditional UPDATE that waits and then finds its row changed keeps the
    row locked under READ COMMITTED)."""
    def build(**marks):
        p = SimpleNamespace(**marks)
        table = sql_table('scenic.daily_load.stripe')
        free = sql_table('scenic.daily_load.stripe')
        query = free.select(free.id,
            where=_stripe_day(free, p.company, p.date, p.scope)
            & condition(free, p),
            order_by=[((free.stripe + p.offset) % DAILY_STRIPES).asc],
            limit=1)
        return table.update(
            [getattr(table, c) for c in values],
            [v(table, p) for v in values.values()],
            where=table.id == lock(query, skip_locked=True))
    cursor = db_cursor()
    cursor.execute(*rendered(('free_stripe', shape), build,
            company=company, date=date, scope=scope,
            offset=DAILY_STRIPES - start % DAILY_STRIPES, **params))
    return cursor.rowcount == 1


def _lock_stripes(company, date, scope):
    """[(id, stripe, booked)] of a day's scope, all locked, in stripe order
    (the only order in which a transaction waits for several)."""
    table = sql_table('scenic.daily_load.stripe')
    cursor = db_cursor()
    cursor.execute(*lock(table.select(table.id, table.stripe, table.booked,
                where=_stripe_day(table, company, date, scope),
                order_by=[table.stripe.asc])))
    return cursor.fetchall()


def _add_to_stripe(stripe_id, count, maximum=None):
    table = sql_table('scenic.daily_load.stripe')
    columns, values = [table.booked], [table.booked + count]
    if maximum is not None:
        columns.append(table.maximum)
        values.append(_share(table, maximum))
    db_cursor().execute(*table.update(columns, values,
            where=table.id == stripe_id))


def _wait_stripe(company, date, scope, stripe, condition, values, params):
    """Update one stripe if it meets `condition`, waiting for its holder.

    In a savepoint on PostgreSQL: a conditional UPDATE that waited and then
    finds the row changed keeps it locked under READ COMMITTED, and rolling
    back to the savepoint lets it go, so a claim moving on to the next
    stripe never holds one while waiting for another."""
    table = sql_table('scenic.daily_load.stripe')
    cursor = db_cursor()
    savepoint = backend.name == 'postgresql'
    if savepoint:
        cursor.execute('SAVEPOINT scenic_daily_stripe')
    p = SimpleNamespace(**params)
    cursor.execute(*table.update(
            [getattr(table, c) for c in values],
            [v(table, p) for v in values.values()],
            where=_stripe_day(table, company, date, scope)
            & (table.stripe == stripe) & condition(table, p)))
    done = cursor.rowcount == 1
    if savepoint:
        cursor.execute('RELEASE SAVEPOINT scenic_daily_stripe' if done
            else 'ROLLBACK TO SAVEPOINT scenic_daily_stripe')
    return done


def _stripe_counts(company, date, scope):
    "{stripe: booked} of a day's scope, read without locking."
    table = sql_table('scenic.daily_load.stripe')
    cursor = db_cursor()
    cursor.execute(*table.select(table.stripe, table.booked,
            where=_stripe_day(table, company, date, scope)))
    return dict(cursor.fetchall())


def _rotation(start):
    first = start % DAILY_STRIPES
    return [(first + i) % DAILY_STRIPES for i in range(DAILY_STRIPES)]


def _claim_daily(company, date, scope, zone, persons, maximum,
        force=False, start=0):
    """Add persons to a day's counter unless it would pass the maximum
    (always, when `force`: a sale already made elsewhere is counted).

    One statement claims the first stripe from `start` on (the order's id,
    so concurrent bookings start on different rows) with room for all the
    persons (any stripe, when forced) that no other booking holds. When
    every such stripe is held, the claim waits for them one at a time;
    when none has room alone (a group near the day's end), the stripes are
    locked in stripe order and the persons split over them. It refuses
    only when the stripes together have no room."""
    def room(table, p):
        return table.booked + p.persons <= _share_of(table, p)

    def anyone(table, p):
        return table.stripe >= 0
    condition = anyone if force else room
    values = {
        'booked': lambda t, p: t.booked + p.persons,
        'maximum': _share_of,
        }
    params = dict(_share_values(maximum), persons=persons)
    shape = 'claim_forced' if force else 'claim'
    if _update_free_stripe(company, date, scope, start, shape, condition,
            values, params):
        return True
    booked = _stripe_counts(company, date, scope)
    if not booked:
        _add_stripes(company, date, scope, zone, maximum)
        if _update_free_stripe(company, date, scope, start, shape,
                condition, values, params):
            return True
        booked = _stripe_counts(company, date, scope)
    shares = stripe_shares(maximum)
    for stripe in _rotation(start):
        if ((force or shares[stripe] - booked.get(stripe, 0) >= persons)
                and _wait_stripe(company, date, scope, stripe, condition,
                    values, params)):
            return True
    stripes = _lock_stripes(company, date, scope)
    order = {s: i for i, s in enumerate(_rotation(start))}
    stripes.sort(key=lambda s: order[s[1]])
    free = {i: max(0, shares[s] - b) for i, s, b in stripes}
    if sum(free.values()) < persons:
        return False
    left = persons
    for stripe_id, _, _ in stripes:
        count = min(left, free[stripe_id])
        if count:
            _add_to_stripe(stripe_id, count, maximum)
            left -= count
    return True


def _release_daily(company, date, scope, persons, start=0):
    """Give persons back to a day's counter: to a stripe holding them (one
    no other booking holds first), else from several, locked in stripe
    order (the stripes' sum is what counts: it stays equal to the live
    tickets)."""
    def holds(table, p):
        return table.booked >= p.persons
    values = {'booked': lambda t, p: t.booked - p.persons}
    params = {'persons': persons}
    if _update_free_stripe(company, date, scope, start, 'release', holds,
            values, params):
        return
    booked = _stripe_counts(company, date, scope)
    for stripe in _rotation(start):
        if (booked.get(stripe, 0) >= persons and _wait_stripe(
                    company, date, scope, stripe, holds, values, params)):
            return
    stripes = _lock_stripes(company, date, scope)
    left = persons
    for stripe_id, _, count in stripes:
        count = min(left, max(0, count))
        if count:
            _add_to_stripe(stripe_id, -count)
            left -= count
    if left and stripes:
        # more given back than counted (not from a claim): as before the
        # stripes, the counter goes down by what the tickets held
        _add_to_stripe(stripes[0][0], -left)


def _release(company, date, slot_id, id_hashes, scope_persons, persons,
        start=0):
    """Give back what a booking claimed, in the claiming lock order;
    `start` is the daily counters' stripe its claim started at."""
    usage = sql_table('scenic.id_day_usage')
    slot = sql_table('scenic.time_slot')
    cursor = db_cursor()
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
        if scope_persons[scope]:
            _release_daily(company, date, scope, scope_persons[scope],
                start=start)


# --- booking -----------------------------------------------------------------

def _find_replay(channel_id, key, digest):
    def build(channel_id, idempotency_key):
        table = sql_table('scenic.order')
        return table.select(table.id, table.request_hash,
            where=(table.channel == channel_id)
            & (table.idempotency_key == idempotency_key))
    if key is None:  # `= NULL` is not `IS NULL`: built each time
        statement = build(channel_id, key)
    else:
        statement = rendered('find_replay', build,
            channel_id=channel_id, idempotency_key=key)
    cursor = db_cursor()
    cursor.execute(*statement)
    row = cursor.fetchone()
    if not row:
        return None
    if row[1] != digest:
        raise idempotency_conflict()
    return row[0]


def idempotency_conflict():
    "The BookingError of a key used with another request (_find_replay's)."
    return BookingError('idempotency_conflict',
        "This Idempotency-Key was used with another request.",
        'Idempotency-Key')


class Replayed(Exception):
    """write_booking_db found the order its Idempotency-Key already booked
    with the same request (nothing was written)."""

    def __init__(self, order_id):
        super().__init__(order_id)
        self.order_id = order_id


def _visitor_ids(company, visitors):
    "Find or create the visitor records; return {id_hash: visitor id}."
    vault = pii_vault()
    # one order for every transaction (by hash): two bookings naming the
    # same visitors in opposite orders cannot wait on each other's rows
    rows = {}
    for visitor, normalized, id_hash in sorted(visitors,
            key=lambda v: v[2]):
        rows.setdefault(id_hash, (visitor, normalized))
    if not rows:
        return {}
    count = len(rows)
    values = {'company': company, 'user': db_user(),
        'now': naive(now_utc())}
    for i, (id_hash, (visitor, normalized)) in enumerate(rows.items()):
        values.update({f'name{i}': visitor.name,
                f'id_type{i}': visitor.id_type,
                f'id_encrypted{i}': vault.encrypt(normalized),
                f'id_masked{i}': idnumber.mask(normalized),
                f'id_hash{i}': id_hash})

    def insert_visitors(**m):
        table = sql_table('scenic.visitor')
        return table.insert(
            [table.company, table.name, table.id_type, table.id_encrypted,
                table.id_masked, table.id_hash, table.create_uid,
                table.create_date],
            [[m['company'], m[f'name{i}'], m[f'id_type{i}'],
                    m[f'id_encrypted{i}'], m[f'id_masked{i}'],
                    m[f'id_hash{i}'], m['user'], m['now']]
                for i in range(count)],
            on_conflict=Conflict(
                table, indexed_columns=[table.company, table.id_hash]))

    def select_visitors(**m):
        table = sql_table('scenic.visitor')
        return table.select(table.id_hash, table.id,
            where=(table.company == m['company'])
            & table.id_hash.in_([m[f'id_hash{i}'] for i in range(count)]))
    cursor = db_cursor()
    # one statement inserts the new ones (in hash order), a second one,
    # with a snapshot that sees bookings committed meanwhile, reads them all
    cursor.execute(*rendered(('visitors_insert', count), insert_visitors,
            **values))
    cursor.execute(*rendered(('visitors_select', count), select_visitors,
            **values))
    return dict(cursor.fetchall())


@dataclass
class PlannedTicket:
    line: int  # index in BookingPlan.lines
    ticket_type: object  # catalogue.TypeInfo
    holder_hash: str | None
    holder_masked: str | None
    valid_from: dt.datetime
    valid_until: dt.datetime
    # A site's sale (scenic_gate.site): the id reserved from the ticket
    # sequence and signed into its code, and the persons and entries it
    # signed; None takes a new id and the type's.
    ticket_id: int | None = None
    persons: int | None = None
    entries: int | None = None


@dataclass
class BookingPlan:
    """A booking request validated and priced: what `write_booking` writes.

    `lines` are the order lines' values; `tickets` one PlannedTicket each;
    `visitors` (visitor, normalized ID, ID hash) the visitor records to
    find or create; `id_claims` (ID hash, limit, request field) the per-ID
    limits to claim; `scope_persons` the persons per daily-load scope and
    `scope_info` its (zone, maximum).
    """
    company: int
    channel: int
    slot: object  # catalogue.SlotInfo
    request: BookingRequest
    digest: str
    currency: int
    hold_minutes: int
    lines: list = field(default_factory=list)
    tickets: list = field(default_factory=list)
    visitors: list = field(default_factory=list)
    id_claims: list = field(default_factory=list)
    scope_persons: dict = field(default_factory=lambda: defaultdict(int))
    scope_info: dict = field(default_factory=dict)
    total: Decimal = Decimal(0)
    reference: str | None = None  # the order's, once written
    # Persons per scope already counted on the day's counter by a holder's
    # quota (a partner's day quota): write_booking claims only the rest.
    held_scopes: dict = field(default_factory=dict)

    @property
    def persons(self):
        return sum(l['persons'] for l in self.lines)


def plan_booking(channel, request, now=None, catalogue=None, held=False,
        slot=NOT_READ):
    """Validate and price a booking request; return its BookingPlan.

    The plan step: the slot must exist and not have ended; each ticket type
    must be sold on the channel and admit to the slot's zone; real-name
    types take one valid ID per person; persons are whole tickets; prices
    come from the channel's price rules. It reads only (the catalogue, the
    key vault) and raises BookingError naming the request field at fault.
    `channel` is the scenic.channel record the request came through (the
    box office and partners have theirs).

    `held`: the booking's places come from places held for its seller on
    the slot (a partner's allotment, whose own claim refuses beyond its
    quota). Those count as booked on the slot for everyone but their
    holder, so the slot's free places are not checked here.

    `slot`: the request's slot as catalogue.slot reads it (Catalogue.
    slot_from_row: None, not of the area), if read already.
    """
    now = now or now_utc()
    company = channel.company.id
    catalogue = catalogue or Catalogue(company)
    if slot is NOT_READ:
        slot = catalogue.slot(request.slot)
    if slot is None:
        raise BookingError('invalid_request', "This time slot does not "
            "exist.", 'slot')
    if slot.aware(slot.end_time) <= now:
        raise BookingError('invalid_request',
            "This time slot has already ended.", 'slot')
    plan = BookingPlan(
        company=company, channel=channel.id, slot=slot, request=request,
        digest=request.digest(), currency=catalogue.snapshot.currency,
        hold_minutes=channel.hold_minutes or HOLD_MINUTES)
    vault = None
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
            vault = vault or pii_vault()
            for visitor in item.visitors:
                try:
                    normalized = idnumber.validate(
                        visitor.id_type, visitor.id_number)
                except idnumber.InvalidIDNumber as exc:
                    raise BookingError('invalid_id_number', exc.message,
                        f'{visitor.field}.id_number')
                id_hash = vault.lookup_hash(visitor.id_type, normalized)
                plan.visitors.append((visitor, normalized, id_hash))
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
        # bounded before any ticket row is built (a huge `persons` would
        # otherwise build that many rows before the capacity check)
        maximum = limit(channel.code, 'max_persons_item')
        if persons > maximum:
            raise BookingError('invalid_request', f"An item takes at most "
                f"{maximum} persons on this channel.",
                f'{item.field}.persons')
        ordered = plan.persons + persons
        maximum = limit(channel.code, 'max_persons_order')
        if ordered > maximum:
            raise BookingError('invalid_request', f"An order takes at most "
                f"{maximum} persons on this channel.", 'items')
        if not held and ordered > slot.capacity - slot.booked:
            raise BookingError('sold_out', "Not enough places are left in "
                "this time slot.", 'slot')
        quote = catalogue.quote(ttype, slot, channel.id)
        amount = quote.price * quantity
        plan.total += amount
        valid_from, valid_until = catalogue.validity(ttype, slot)
        for scope, zone, maximum in catalogue.load_scopes(ttype):
            plan.scope_persons[scope] += persons
            plan.scope_info[scope] = (zone, maximum)
        plan.lines.append({
                'ticket_type': ttype.id, 'quantity': quantity,
                'persons': persons, 'unit_price': quote.price,
                'amount': amount, 'price_explanation': quote.explanation(),
                })
        for n in range(quantity):
            holder = holders[n] if holders else (None, None, None)
            plan.tickets.append(PlannedTicket(
                    line=len(plan.lines) - 1, ticket_type=ttype,
                    holder_hash=holder[0], holder_masked=holder[1],
                    valid_from=valid_from, valid_until=valid_until))
            if holder[0]:
                plan.id_claims.append((holder[0], ttype.id_limit, holder[2]))
    if not plan.lines or not plan.persons:
        raise BookingError('invalid_request', "The order has no tickets.",
            'items')
    return plan


def _order_row(plan, slot, now, idempotency_key):
    "The order's columns as both writes (Python and scenic_book) insert them."
    return {
        'company': plan.company, 'reference': plan.reference,
        'channel': plan.channel, 'slot': slot.id,
        'contact_name': plan.request.contact_name,
        'contact_phone': plan.request.contact_phone,
        'hold_expires_at': naive(
            now + dt.timedelta(minutes=plan.hold_minutes)),
        'total': plan.total, 'currency': plan.currency,
        'idempotency_key': idempotency_key,
        'request_hash': plan.digest,
        }


def write_booking(plan, idempotency_key=None, now=None, held=False):
    """Write a BookingPlan as a held order; return the order id.

    The write step: inserts the order, its lines, visitors and tickets
    (state `reserved`, held for the channel's hold minutes), then claims the
    per-ID limits, the slot's places and the daily maxima, each a
    conditional write; a claim that fails raises BookingError (`id_limit`,
    `sold_out`, `daily_limit`) and the caller's transaction must roll back.
    Run it under READ COMMITTED (dbtools.use_read_committed) on PostgreSQL.

    `held`: the sale was made already from places held on the slot (a
    remote site's allotment): the slot is not claimed again and the daily
    counters count the persons without refusing them.
    """
    now = now or now_utc()
    slot = plan.slot
    # Rows no one else writes first; contended claims last.
    order_table = sql_table('scenic.order')
    line_table = sql_table('scenic.order.line')
    plan.reference = new_reference()
    order_id, = insert(order_table, [dict(
                _order_row(plan, slot, now, idempotency_key),
                visit_date=slot.date, state='reserved')])
    line_ids = insert(line_table,
        [dict(line, order=order_id) for line in plan.lines])
    insert_tickets(plan, order_id, line_ids)
    claim_plan(plan, held=held, start=order_id)
    return order_id


def insert_tickets(plan, order_id, line_ids):
    """Insert a plan's tickets (state `reserved`) and their visitors in an
    order; `line_ids` are the order lines of the plan's lines. Return the
    ticket ids."""
    company, slot = plan.company, plan.slot
    ticket_table = sql_table('scenic.ticket')
    visitor_ids = _visitor_ids(company, plan.visitors)
    return insert(ticket_table, [dict(_ticket_row(t),
                company=company, order=order_id, line=line_ids[t.line],
                slot=slot.id, visit_date=slot.date,
                visitor=visitor_ids.get(t.holder_hash), state='reserved',
                **({'id': t.ticket_id} if t.ticket_id else {}))
            for t in plan.tickets])


def _ticket_row(t):
    """A planned ticket's own columns as both writes (insert_tickets and
    scenic_book's payload) insert them; the order's, line's, slot's and
    visitor's are the writer's."""
    return {
        'ticket_type': t.ticket_type.id,
        'holder_hash': t.holder_hash,
        'holder_masked': t.holder_masked,
        'persons': t.persons or t.ticket_type.persons,
        'entries_allowed': (t.ticket_type.entries
            if t.entries is None else t.entries),
        'valid_from': naive(t.valid_from),
        'valid_until': naive(t.valid_until),
        }


# The day's counter for other modules (scenic_group's day quotas hold and
# give back places on it): the stripes are this module's business.
def claim_daily(company, date, scope, zone, persons, maximum, force=False,
        start=0):
    return _claim_daily(company, date, scope, zone, persons, maximum,
        force=force, start=start)


def release_daily(company, date, scope, persons, start=0):
    _release_daily(company, date, scope, persons, start=start)


def claim_plan(plan, held=False, start=0):
    """Claim a plan's per-ID limits, its slot's places and the daily
    maxima, each a conditional write, in the lock order; raise BookingError
    (`id_limit`, `sold_out`, `daily_limit`) when one fails. `start` is the
    daily counter's first stripe to try (the order's id)."""
    company, slot = plan.company, plan.slot
    for id_hash, limit, field_ in sorted(plan.id_claims):
        if not _claim_id(company, slot.date, id_hash, limit):
            raise claim_refused('id_limit', field_)
    if not held and not _claim_slot(slot.id, plan.persons):
        raise claim_refused('sold_out')
    _claim_scopes(plan, sorted(plan.scope_persons), held=held, start=start)


def _claim_scopes(plan, scopes, held=False, start=0):
    "Claim the daily counters of these scopes (in this order)."
    for scope in scopes:
        zone, maximum = plan.scope_info[scope]
        persons = plan.scope_persons[scope] - plan.held_scopes.get(scope, 0)
        if persons > 0 and not _claim_daily(plan.company, plan.slot.date,
                scope, zone, persons, maximum, force=held, start=start):
            raise claim_refused('daily_limit')


def claim_refused(code, field_=None):
    "The BookingError of a claim that failed (Python's or the database's)."
    if code == 'id_limit':
        return BookingError('id_limit', "This ID already holds the most "
            "tickets allowed for that day.", f'{field_}.id_number')
    if code == 'sold_out':
        return BookingError('sold_out',
            "Not enough places are left in this time slot.", 'slot')
    if code == 'idempotency_conflict':
        return idempotency_conflict()
    if code == 'daily_limit':
        return BookingError('daily_limit',
            "The daily maximum of visitors for that day is reached.",
            'slot')
    raise ValueError(f"unknown claim refusal {code!r}")


def write_booking_db(plan, idempotency_key=None, now=None):
    """write_booking on PostgreSQL in one round trip (`book_statement`, then
    `book_result` on its answer): the database function
    `scenic_book` (sql/engine.sql) inserts the plan's rows and claims what
    it says, in write_booking's order and lock order; a refusal raises the
    same BookingError (the caller rolls back). The day's counters the
    function found no free stripe with room on are claimed here, in the
    same transaction (`_claim_daily`: waits, splits, a day's first
    stripes). Not for held sales (partners' allotments, remote sites) nor
    tickets with ids of their own: those use write_booking. Return the
    order id.

    The idempotency replay check (_find_replay's rule) is the function's
    first step: a key the channel already used raises Replayed with that
    order when the request is the same, BookingError idempotency_conflict
    when not; nothing is written."""
    cursor = db_cursor()
    cursor.execute(*book_statement(plan, idempotency_key, now=now))
    return book_result(plan, cursor.fetchone()[0])


def book_statement(plan, idempotency_key=None, now=None, whole=False):
    """scenic_book's call for a BookingPlan: (SQL, parameters). The
    booking engine sends it in one round trip with its transaction's
    BEGIN and COMMIT (`whole`: scenic_book_whole, which raises instead of
    answering anything but a booking written whole, with that answer as
    the error's detail) and hands the answer to book_result."""
    now = now or now_utc()
    slot = plan.slot
    plan.reference = new_reference()
    vault = pii_vault() if plan.visitors else None
    visitors = {}
    for visitor, normalized, id_hash in plan.visitors:
        visitors.setdefault(id_hash, {
                'name': visitor.name, 'id_type': visitor.id_type,
                'id_encrypted': vault.encrypt(normalized),
                'id_masked': idnumber.mask(normalized), 'id_hash': id_hash,
                })
    claims = sorted(plan.id_claims)
    scopes = sorted(plan.scope_persons)
    daily = []
    for scope in scopes:
        zone, maximum = plan.scope_info[scope]
        shares = _share_values(maximum)
        daily.append([scope,
                plan.scope_persons[scope] - plan.held_scopes.get(scope, 0),
                shares['base'],
                shares['over'], shares['extra']])
    payload = {
        'order': _order_row(plan, slot, now, idempotency_key),
        'lines': plan.lines,
        'visitors': list(visitors.values()),
        'tickets': [dict(_ticket_row(t), line=t.line)
            for t in plan.tickets],
        'id_claims': [[h, limit] for h, limit, _ in claims],
        'slot': slot.id, 'date': slot.date, 'persons': plan.persons,
        'daily': daily, 'stripes': DAILY_STRIPES,
        'uid': db_user(), 'now': naive(now_utc()),
        }
    return ('SELECT scenic_book_whole(%s::json)' if whole
        else 'SELECT scenic_book(%s::json)'), (
        json.dumps(payload, default=str),)


def book_result(plan, result):
    """What scenic_book answered for a plan (book_statement): raise its
    refusal (BookingError) or Replayed, claim the day's counters it left
    (in the same transaction); return the order id."""
    refused = result.get('refused')
    if refused:
        index = result.get('index')
        raise claim_refused(refused, sorted(plan.id_claims)[index][2]
            if index is not None else None)
    order_id = result['order']
    if result.get('replayed'):
        raise Replayed(order_id)
    if 'daily_from' in result:
        _claim_scopes(plan, sorted(plan.scope_persons)[
                result['daily_from']:], start=order_id)
    return order_id


def book(channel, request, idempotency_key, now=None, client=None):
    """Hold seats for a booking request; return (order id, replayed).

    A request replayed with its Idempotency-Key answers the first order;
    otherwise plan_booking, the unpaid-hold limits (`check_holds`, with
    the client's address when the caller knows it), then write_booking.
    """
    replay = _find_replay(channel.id, idempotency_key, request.digest())
    if replay:
        return replay, True
    plan = plan_booking(channel, request, now=now)
    check_holds(channel, plan, client=client, now=now)
    order_id = write_booking(plan, idempotency_key, now=now)
    count_hold(channel, client, now=now)
    return order_id, False


# --- bounds and unpaid-hold limits (issue 15) ----------------------------------
# [scenic_booking] in the server configuration; an option prefixed with a
# channel code ("web.max_persons_order = 20") overrides it for that channel.
LIMITS = {
    'max_persons_item': 100,     # persons of one item (a group ticket line)
    'max_persons_order': 200,    # persons of one order
    'max_holds_phone': 3,        # unpaid orders of one phone on one slot
    'max_unpaid_percent': 50,    # a channel's unpaid persons on a slot, %
    'max_holds_client': 20,      # orders held from one address an hour
    }


def limit(channel_code, name):
    "The booking limit `name` of a channel (LIMITS, overridden by config)."
    from trytond import config
    for option in (f'{(channel_code or "").lower()}.{name}', name):
        value = config.get('scenic_booking', option, default=None)
        if value not in (None, ''):
            return int(value)
    return LIMITS[name]


def hold_counts_statement(channel, slot_id, phone, client, now):
    """check_holds' read on PostgreSQL: scenic_hold_counts' call, (SQL,
    parameters). `channel`: the channel's id, or (SQL, parameters) of a
    scalar query of it (the booking engine sends the read in one round
    trip with the channel's). The function's plans are generic
    (sql/engine.sql): planned for each call's values, this read cost
    0.3-0.4 ms a booking (bench/README.md)."""
    from . import ratelimit
    rate_key = window = None
    if client:
        rate_key, window, _ = ratelimit.window_of('hold-client', client,
            3600, now)
    channel_sql, channel_params = (channel if isinstance(channel, tuple)
        else ('%s', (channel,)))
    return (f'SELECT scenic_hold_counts(%s, %s, %s, {channel_sql}, %s, %s)',
        (slot_id, naive(now), phone, *channel_params, rate_key, window))


def check_holds(channel, plan, client=None, now=None, counts=None):
    """Unpaid holds cost nothing, so they are limited: per phone and slot
    (409 hold_limit), per channel and slot as a share of the capacity (409
    hold_limit: a public booking page cannot hold a whole slot), and per
    client address an hour (429, counted in scenic.rate_limit).
    `counts`: what hold_counts_statement read for this plan, if read
    already (PostgreSQL)."""
    from . import ratelimit
    now = now or now_utc()
    cursor = db_cursor()
    phone = plan.request.contact_phone
    values = dict(slot=plan.slot.id, now=naive(now), phone=phone,
        channel=channel.id)
    if client:
        rate_key, window, end = ratelimit.window_of('hold-client', client,
            3600, now)
        values.update(rate_key=rate_key, window=window)
    if counts is not None:
        phone_holds, unpaid, *rate = counts
    elif backend.name == 'postgresql':
        cursor.execute(*hold_counts_statement(channel.id, plan.slot.id,
                phone, client, now))
        phone_holds, unpaid, *rate = cursor.fetchone()[0]
    else:
        def counts(**marks):
            """One read: the phone's holds, the channel's unpaid persons,
            the address's holds this hour (with a client)."""
            p = SimpleNamespace(**marks)
            order = sql_table('scenic.order')
            held = ((order.slot == p.slot) & (order.state == 'reserved')
                & (order.hold_expires_at > p.now))
            line = sql_table('scenic.order.line')
            queries = [
                order.select(Count(order.id),
                    where=held & (order.contact_phone == p.phone)),
                order.join(line, condition=line.order == order.id
                    ).select(Sum(line.persons),
                        where=held & (order.channel == p.channel)),
                ]
            if client:
                queries.append(ratelimit.select_count(p.rate_key,
                        p.window))
            return Select(queries)
        # `= NULL` is not `IS NULL`: without a phone, built with the values
        cursor.execute(*(counts(**values) if phone is None
                else rendered(('hold_counts', bool(client)), counts,
                    **values)))
        phone_holds, unpaid, *rate = cursor.fetchone()
    maximum = limit(channel.code, 'max_holds_phone')
    if phone_holds >= maximum:
        raise BookingError('hold_limit', f"This phone already holds "
            f"{maximum} unpaid orders for this time slot: pay or cancel "
            "one first.", 'contact.phone')
    unpaid = unpaid or 0
    share = limit(channel.code, 'max_unpaid_percent')
    if (unpaid + plan.persons) * 100 > plan.slot.capacity * share:
        raise BookingError('hold_limit', "Too many places of this time "
            "slot are held unpaid on this channel: try again in a few "
            "minutes.", 'slot')
    if client:
        ratelimit.refuse(rate[0] or 0,
            limit(channel.code, 'max_holds_client'), end,
            "Too many bookings from this address: pay the ones held, or "
            "try again later.", now)


def count_hold(channel, client, now=None, durable=True):
    """Count a hold written for the client address (check_holds' limit).

    Last before commit: every booking from one address (a NAT, a campus)
    updates that counter row, so its lock is held the shortest time.
    `durable`: see ratelimit.add."""
    from . import ratelimit
    if client:
        ratelimit.add('hold-client', client, 3600, now=now,
            durable=durable)


# --- payment, cancellation, expiry ---------------------------------------------

def _lock_order(order_id):
    "Serialize payment, cancellation and expiry of one order."
    Order = Pool().get('scenic.order')
    table = Order.__table__()
    cursor = db_cursor()
    cursor.execute(*lock(table.select(table.id, where=table.id == order_id)))
    if not cursor.fetchone():
        raise BookingError('not_found', "No such order.")
    forget()
    return Order(order_id)


def check_payable(Order, state, paid, hold_expires_at, total, amount, now):
    """The rules of paying an order: True when it is a retry of a payment
    that went through (answer the order again), None when it may be paid;
    else BookingError. `paid` is what its payments took, hold_expires_at
    naive UTC. The API's path and the booking engine both call it."""
    if state in PAID_STATES and paid == amount:
        return True
    if not Order.may_enter(state, 'paid'):
        raise BookingError('not_payable',
            f"This order is {state} and cannot be paid.")
    if hold_expires_at.replace(tzinfo=dt.timezone.utc) <= now:
        raise BookingError('not_payable',
            "The hold on this order has expired.")
    if amount != total:
        raise BookingError('amount_mismatch',
            f"The amount must be the order's total, {total}.",
            'amount')


def ticket_code(signer, company_id, ticket_id, ticket_type_id, valid_from,
        valid_until, persons, entries, holder_hash):
    "The signed code of a paid ticket (valid_from/until naive UTC)."
    payload = ticketcode.TicketPayload(
        ticket_id=ticket_id, area_id=company_id,
        ticket_type_id=ticket_type_id,
        valid_from=valid_from.replace(tzinfo=dt.timezone.utc),
        valid_until=valid_until.replace(tzinfo=dt.timezone.utc),
        persons=persons, entries=entries, key_id=signer.key_id,
        holder_hash=(pii_vault().code_holder_hash(holder_hash)
            if holder_hash else b''))
    return ticketcode.encode(payload, signer)


def sign_tickets(order, tickets, now):
    "Sign the codes of an order's tickets: they become valid."
    pool = Pool()
    SigningKey = pool.get('scenic.signing_key')
    Ticket = pool.get('scenic.ticket')
    signer = SigningKey.active_signer(order.company)
    ticket_table = Ticket.__table__()
    cursor = db_cursor()
    signed = []
    for ticket in tickets:
        # One statement a ticket, as each has its own code; the allowed
        # states are the declared table's.
        cursor.execute(*ticket_table.update(
                [ticket_table.state, ticket_table.code,
                    ticket_table.key_id, ticket_table.write_date,
                    ticket_table.write_uid],
                ['valid', ticket_code(signer, order.company.id, ticket.id,
                        ticket.ticket_type.id, ticket.valid_from,
                        ticket.valid_until, ticket.persons,
                        ticket.entries_allowed, ticket.holder_hash),
                    signer.key_id, naive(now), db_user()],
                where=(ticket_table.id == ticket.id)
                & ticket_table.state.in_(Ticket.sources('valid'))))
        if cursor.rowcount:
            signed.append(ticket.id)
    entered(Ticket, 'valid', signed)
    return signed


def pay(order_id, provider_name, amount, now=None):
    "Charge a held order and sign its tickets."
    Order = Pool().get('scenic.order')
    now = now or now_utc()
    order = _lock_order(order_id)
    paid = sum(p.amount for p in order.payments if p.kind == 'payment')
    if check_payable(Order, order.state, paid, order.hold_expires_at,
            order.total, amount, now):
        return order  # a retried payment: the same answer again
    provider = get_provider(provider_name, order.channel.code)
    reference = provider.charge(order.reference, amount, order.currency.code)

    table = sql_table('scenic.payment')
    insert(table, [{
                'company': order.company.id, 'order': order.id,
                'kind': 'payment', 'provider': provider_name,
                'provider_reference': reference, 'amount': amount,
                'currency': order.currency.id, 'date': naive(now),
                }])
    sign_tickets(order, order.tickets, now)
    order_table = Order.__table__()
    sql_transition(Order, order_table, 'paid', order_table.id == order.id,
        [order_table.paid_at], [naive(now)])
    forget()
    return Order(order.id)


def refundable(ticket_type, slot, now):
    rule = ticket_type.refund_rule
    if rule == 'never':
        return False
    start = slot.aware(slot.start_time)
    if rule == 'until_day_before':
        return now < start.replace(hour=0, minute=0, second=0)
    return now < start


def release_order(order, ticket_state, now):
    "Give back the order's claims and move its tickets to ticket_state."
    pool = Pool()
    Ticket = pool.get('scenic.ticket')
    ticket_table = Ticket.__table__()
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
        scope_persons, persons, start=order.id)
    columns, values = [], []
    if ticket_state == 'revoked':
        columns, values = [ticket_table.revoked_at], [naive(now)]
    sql_transition(Ticket, ticket_table, ticket_state,
        ticket_table.order == order.id, columns, values)


def _close_order(order_id, state, now):
    Order = Pool().get('scenic.order')
    table = Order.__table__()
    sql_transition(Order, table, state, table.id == order_id,
        [table.closed_at], [naive(now)])


def cancel(order_id, now=None, by_back_office=False, used_approved=False):
    """Cancel a hold, or refund a paid order as its ticket types allow.

    Seats and per-ID counts come back; paid tickets' codes are revoked.
    `used_approved`: a supervisor approved refunding an order whose
    tickets were used (the caller checks who approves); without it such
    an order is refused.
    """
    pool = Pool()
    Order = pool.get('scenic.order')
    Ticket = pool.get('scenic.ticket')
    now = now or now_utc()
    order = _lock_order(order_id)
    if Order.may_enter(order.state, 'cancelled'):
        release_order(order, 'cancelled', now)
        _close_order(order.id, 'cancelled', now)
    elif order.state in PAID_STATES:
        used = any(t.state == 'used' for t in order.tickets)
        if (not Order.may_enter(order.state, 'refunded')
                or not all(Ticket.may_enter(t.state, 'revoked')
                    for t in order.tickets)
                or (used and not used_approved)):
            raise BookingError('not_cancellable',
                "Tickets of this order have been used: it cannot be "
                "refunded.")
        if not by_back_office and not all(
                refundable(l.ticket_type, order.slot, now)
                for l in order.lines):
            raise BookingError('not_cancellable',
                "The refund period of these tickets is over.")
        payment_table = sql_table('scenic.payment')
        # A payment given back already (a wallet trade that came too late,
        # refunded on arrival) is not given back twice.
        refunded = {p.refund_of.id for p in order.payments
            if p.kind == 'refund' and p.refund_of}
        for payment in order.payments:
            if payment.kind != 'payment' or payment.id in refunded:
                continue
            provider = get_provider(payment.provider, refund=True)
            reference = provider.refund(
                payment.provider_reference, payment.amount,
                payment.currency.code)
            insert(payment_table, [{
                        'company': order.company.id, 'order': order.id,
                        'kind': 'refund', 'provider': payment.provider,
                        'provider_reference': reference,
                        'amount': payment.amount,
                        'currency': payment.currency.id,
                        'date': naive(now), 'refund_of': payment.id,
                        }])
        release_order(order, 'revoked', now)
        _close_order(order.id, 'refunded', now)
    else:
        raise BookingError('not_cancellable',
            f"This order is {order.state} and cannot be cancelled.")
    forget()
    return Order(order.id)


def expire_holds(now=None, limit=500):
    "Release the seats of holds that passed their expiry; return how many."
    pool = Pool()
    Order = pool.get('scenic.order')
    table = Order.__table__()
    now = now or now_utc()
    cursor = db_cursor()
    cursor.execute(*lock(table.select(table.id,
                where=(table.state == 'reserved')
                & (table.hold_expires_at <= naive(now)),
                order_by=[table.hold_expires_at.asc], limit=limit),
            skip_locked=True))
    ids = [r[0] for r in cursor.fetchall()]
    expired = 0
    for order_id in ids:
        order = _lock_order(order_id)
        if order.state != 'reserved':
            continue  # paid meanwhile (SQLite does not skip locked rows)
        release_order(order, 'cancelled', now)
        _close_order(order_id, 'expired', now)
        expired += 1
    forget()
    return expired


def mark_orders_used(order_ids, now=None):
    """Move paid orders along as their tickets are admitted: `partly_used`
    while a ticket of the order is not used yet, `used` once all are.

    Set-based for any number of orders, for the gates' uploads; the caller
    has set the tickets' states and holds the orders' locks (as
    `_lock_order` takes them), so a refund cannot slip in between.
    """
    if not order_ids:
        return
    Order = Pool().get('scenic.order')
    order = Order.__table__()
    ticket = sql_table('scenic.ticket')
    unused = Exists(ticket.select(ticket.id,
        where=(ticket.order == order.id) & (ticket.state != 'used')))
    these = SQL_OPERATORS['in'](order.id, sorted(set(order_ids)))
    sql_transition(Order, order, 'used', these & Not(unused))
    sql_transition(Order, order, 'partly_used', these & unused)


# --- reading -----------------------------------------------------------------

def availability(channel, date, catalogue=None):
    """The bookable slots of a day (catalogue.SlotInfo) with what is left
    and the prices; SQL reads only, so that the booking engine answers it
    with the trytond route's rules (`catalogue`: the engine's snapshot)."""
    if catalogue is None:
        catalogue = Catalogue(channel.company.id)
    types = [t for t in catalogue.types.values()
        if t.active and not t.is_card
        and t.validity in BOOKABLE_VALIDITIES and t.sold_on(channel.id)]
    result = []
    for slot in catalogue.day_slots(date):
        prices = [(t, catalogue.quote(t, slot, channel.id).price)
            for t in types if t.admits(slot.zone)]
        result.append((slot, prices))
    return catalogue, result


def find_for_pickup(company, id_number, phone, reference):
    """The order `reference` if its contact phone matches and one of its
    tickets holds this ID (all three factors, so that neither an ID and a
    phone nor a reference alone lists tickets)."""
    from .visitor import id_hashes
    pool = Pool()
    Order = pool.get('scenic.order')
    hashes = id_hashes(id_number)
    if not hashes or not phone:
        return []
    return Order.search([
            ('company', '=', company),
            ('reference', '=', reference),
            ('contact_phone', '=', phone),
            ('tickets.holder_hash', 'in', hashes),
            ('state', 'in', ['reserved', 'paid', 'partly_used', 'used']),
            ])
