"""What a box downloads: a full snapshot or what changed since a watermark.

Set-based SQL, no ORM: a fresh box of a busy area takes 100 000 tickets and
cards in one answer.

The watermark is `<ISO time>#<format>.<generation>`: the time the answer
was read, the format of the snapshot and the area's current gate-hash
generation (a box holding another format or generation gets a full
snapshot: after a rotation every ticket's hash is new). Records are picked by their change time: `create_date`,
`write_date` and, for tickets, their order's `paid_at` and their
`revoked_at` (the booking path writes those, not `write_date`). A writer
that started before a sync and committed after it stamps its rows before
the watermark, so the next sync looks `OVERLAP` back: an incremental answer
may repeat a record changed just before the last watermark, never miss it.
Boxes upsert, so repeats are harmless.

Deleted things reach boxes as states: revoked tickets in `revoked`, cards
with their state, inactive gates with `active: false`; gates and cards
cannot be deleted once boxes may hold them.
"""
import base64
import datetime as dt
import json

from sql import Cast, Literal, Null
from sql.conditionals import Case
from sql.functions import AtTimeZone, Substring
from sql.operators import Concat

from scenic_common import protocol
from scenic_ticket.dbtools import aware, from_db, naive, now_utc
from scenic_ticket.slot import area_timezone

from trytond import backend, config
from trytond.pool import Pool
from trytond.transaction import Transaction

from .gatehash import generation_answer, live_generations, ticket_window


SYNC_FORMAT = 1
UTC = dt.timezone.utc


def overlap():
    return dt.timedelta(seconds=config.getint(
            'scenic_gate', 'sync_overlap', default=120))


def max_age():
    return dt.timedelta(days=config.getint(
            'scenic_gate', 'sync_max_days', default=7))


def make_watermark(now, generation=1):
    return (f"{now.astimezone(UTC).isoformat(timespec='microseconds')}"
        f"#{SYNC_FORMAT}.{generation}")


def parse_watermark(text, now, generation=1):
    """The aware time of a watermark, or None when a full snapshot is due:
    no watermark, an unknown one, one of another format, or too old."""
    if not text or not isinstance(text, str) or len(text) > 100:
        return None
    # A '+' sent unencoded in the query string arrives as a space.
    moment, _, version = text.replace(' ', '+').partition('#')
    if version != f'{SYNC_FORMAT}.{generation}':
        return None
    try:
        moment = dt.datetime.fromisoformat(moment)
    except ValueError:
        return None
    if moment.utcoffset() is None:
        return None
    if moment > now + dt.timedelta(minutes=5) or moment < now - max_age():
        return None
    return moment


class _Clock:
    "Naive UTC from the database → ISO 8601 in the area's timezone, cached."

    def __init__(self, tz):
        self.tz = tz
        self.cache = {}

    def __call__(self, value):
        if value is None:
            return None
        text = self.cache.get(value)
        if text is None:
            text = aware(value).astimezone(
                self.tz).isoformat()
            self.cache[value] = text
        return text


class RawJSON(str):
    "JSON text made by the database, spliced into the answer as it is."


def dumps(data):
    "The answer's JSON, splicing the database's lists."
    parts = []
    for key, value in data.items():
        if not isinstance(value, RawJSON):
            value = json.dumps(
                value, ensure_ascii=False, separators=(',', ':'))
        parts.append(f'{json.dumps(key)}:{value}')
    return '{' + ','.join(parts) + '}'


class _Listing:
    """The big lists of a snapshot (tickets, cards, usage, revocations).

    On PostgreSQL the database writes their JSON (json_agg, times in the
    area's timezone): a fresh box of a busy area takes 100 000 rows, which
    the driver would otherwise convert value by value. Elsewhere Python
    builds them from the rows.
    """

    def __init__(self, cursor, tz, iso):
        self.cursor = cursor
        self.iso = iso
        self.server = backend.name == 'postgresql'
        if self.server:
            cursor.execute('SELECT set_config(%s, %s, true)',
                ('TimeZone', str(tz)))

    def time(self, column):
        "A timestamp column as the JSON shows it."
        if self.server:
            return AtTimeZone(column, 'UTC')
        return column

    def __call__(self, query, times=(), booleans=()):
        """The rows of query (aliased columns) as a list of objects;
        `times` and `booleans` name the columns Python must convert."""
        if self.server:
            sql, params = tuple(query)
            self.cursor.execute(
                "SELECT COALESCE(json_agg(q), '[]')::text "
                f"FROM ({sql}) AS q", params)
            return RawJSON(self.cursor.fetchone()[0])
        self.cursor.execute(*query)
        names = [d[0] for d in self.cursor.description]
        rows = []
        for row in self.cursor:
            row = dict(zip(names, row))
            for name in times:
                row[name] = self.iso(row[name])
            for name in booleans:
                row[name] = bool(row[name])
            rows.append(row)
        return rows


def _changed(table, since):
    return (table.create_date > since) | (table.write_date > since)


def _day_start(day, tz):
    "Naive UTC of midnight of `day` in the area."
    return naive(dt.datetime.combine(day, dt.time(), tz))


class _Request:
    "What every list of a snapshot reads: the area, the clock, the cutoff."

    def __init__(self, company, since_text, database_name, now):
        self.now = now
        self.tz = area_timezone(company)
        self.iso = _Clock(self.tz)
        self.generations = live_generations()
        self.generation = self.generations[0][0]
        self.since = parse_watermark(since_text, now, self.generation)
        self.full = self.since is None
        # Rows stamped after `cutoff` are sent (None: all of them).
        self.cutoff = None if self.full else naive(self.since - overlap())
        self.cid = company.id
        self.database_name = database_name
        self.cursor = Transaction().connection.cursor()
        self.today = now.astimezone(self.tz).date()
        self.now_naive = naive(now)
        self.listing = _Listing(self.cursor, self.tz, self.iso)
        self.time = self.listing.time

    def fetch(self, query):
        self.cursor.execute(*query)
        return self.cursor.fetchall()


def snapshot(company, since_text, database_name, now=None):
    """The sync answer for the boxes of an area (a dict, ready for JSON)."""
    r = _Request(company, since_text, database_name, now or now_utc())
    rules, rules_changed, default_rule = _rules(r)
    return {
        'watermark': make_watermark(r.now, r.generation),
        'full': r.full,
        'area': {'id': r.cid, 'timezone': str(r.tz)},
        'gate_generations': generation_answer(r.cid),
        'keys': _keys(r),
        'revoked': _revoked(r),
        'ticket_types': _ticket_types(r, bool(rules_changed), default_rule),
        'rules': rules,
        'zones': _zones(r),
        'gates': _gates(r),
        'cards': _cards(r),
        'tickets': _tickets(r),
        'partner_codes': _partner_codes(r),
        'usage': _usages(r),
        }


def _keys(r):
    """The area's public keys; a retired one with its own signed
    revocation (boxes keep keys append-only, PROTOCOL.md)."""
    key = Pool().get('scenic.signing_key').__table__()
    where = key.company == r.cid
    if r.cutoff:
        where &= _changed(key, r.cutoff)
    keys = []
    for key_id, public, state, private in r.fetch(key.select(
                key.key_id, key.public_key, key.state,
                key.private_key_encrypted, where=where,
                order_by=[key.key_id])):
        keys.append({'key_id': key_id, 'public_key': public,
                'retired': state == 'retired'})
        if state == 'retired':
            keys[-1]['revocation'] = _revocation(key_id, private)
    return keys


def _revoked(r):
    "Revoked tickets (all still valid ones in a full answer)."
    ticket = Pool().get('scenic.ticket').__table__()
    where = ((ticket.company == r.cid) & (ticket.state == 'revoked')
        & (ticket.revoked_at != Null))
    if r.cutoff:
        where &= ticket.revoked_at > r.cutoff
    else:
        where &= ticket.valid_until > r.now_naive
    return r.listing(ticket.select(
            ticket.id.as_('ticket'), r.time(ticket.revoked_at).as_('at'),
            where=where, order_by=[ticket.id]), times=['at'])


def _rules(r):
    "(changed rules as JSON, their rows, the area's default rule id)"
    rule = Pool().get('scenic.gate.rule').__table__()
    rows = r.fetch(rule.select(
            rule.id, rule.early_minutes, rule.late_minutes,
            rule.min_interval_minutes, rule.anti_passback, rule.exit_counts,
            rule.default, rule.create_date, rule.write_date,
            where=rule.company == r.cid, order_by=[rule.id]))
    default_rule = next((row[0] for row in rows if row[6]), None)
    changed = [row for row in rows if not r.cutoff
        or (row[7] and from_db(row[7]) > r.cutoff)
        or (row[8] and from_db(row[8]) > r.cutoff)]
    rules = [{
            'id': row[0], 'early_minutes': row[1], 'late_minutes': row[2],
            'min_interval_minutes': row[3], 'anti_passback': bool(row[4]),
            'exit_counts': bool(row[5]), 'default': bool(row[6]),
            } for row in changed]
    return rules, changed, default_rule


def _ticket_types(r, rules_changed, default_rule):
    """Ticket types: all of them again when a rule changed, as the default
    rule may have moved."""
    pool = Pool()
    ttype = pool.get('scenic.ticket.type').__table__()
    type_zone = pool.get('scenic.ticket.type-scenic.zone').__table__()
    where = ttype.company == r.cid
    if r.cutoff and not rules_changed:
        where &= _changed(ttype, r.cutoff)
    type_rows = r.fetch(ttype.select(
            ttype.id, ttype.code, ttype.persons, ttype.entry_mode,
            ttype.entries_allowed, ttype.reentry_binding, ttype.gate_rule,
            where=where, order_by=[ttype.id]))
    type_zones = {}
    if type_rows:
        for type_id, zone in r.fetch(type_zone.join(
                    ttype, condition=type_zone.ticket_type == ttype.id
                    ).select(type_zone.ticket_type, type_zone.zone,
                    where=where)):
            type_zones.setdefault(type_id, []).append(zone)
    return [{
            'id': id_, 'code': code, 'zones': sorted(type_zones.get(id_, [])),
            'persons': persons,
            'entries': protocol.entries_for(mode, allowed),
            'binding': binding or 'none',
            # The box still applies the gate's rule first.
            'rule': protocol.rule_id_for(None, rule_id, default_rule),
            } for id_, code, persons, mode, allowed, binding, rule_id
        in type_rows]


def _zones(r):
    "Zones and what is inside them now."
    pool = Pool()
    zone = pool.get('scenic.zone').__table__()
    headcount = pool.get('scenic.zone.headcount').__table__()
    join = zone.join(headcount, 'LEFT', condition=(headcount.zone == zone.id)
        & (headcount.date == r.today))
    where = zone.company == r.cid
    if r.full:
        where &= zone.active == True  # noqa: E712
    elif r.since.astimezone(r.tz).date() == r.today:
        where &= (_changed(zone, r.cutoff) | _changed(headcount, r.cutoff))
    return [{
            'id': id_, 'code': code, 'instant_max': maximum,
            'inside': max((ins or 0) - (outs or 0), 0),
            } for id_, code, maximum, ins, outs in r.fetch(join.select(
                zone.id, zone.code, zone.instant_max, headcount.entries,
                headcount.exits, where=where, order_by=[zone.id]))]


def _gates(r):
    "Gates with the ticket types they admit."
    pool = Pool()
    gate = pool.get('scenic.gate').__table__()
    gate_type = pool.get('scenic.gate-scenic.ticket.type').__table__()
    where = gate.company == r.cid
    if r.cutoff:
        where &= _changed(gate, r.cutoff)
    gate_rows = r.fetch(gate.select(
            gate.id, gate.code, gate.zone, gate.direction, gate.lanes,
            gate.active, gate.rule, gate.box, where=where,
            order_by=[gate.id]))
    gate_types = {}
    if gate_rows:
        for gate_id, type_id in r.fetch(gate_type.join(
                    gate, condition=gate_type.gate == gate.id).select(
                    gate_type.gate, gate_type.ticket_type, where=where)):
            gate_types.setdefault(gate_id, []).append(type_id)
    return [{
            'id': id_, 'code': code, 'zone': zone_id, 'direction': direction,
            'lanes': lanes, 'ticket_types': sorted(gate_types.get(id_, [])),
            'active': bool(active), 'rule': rule_id, 'box': box,
            } for id_, code, zone_id, direction, lanes, active, rule_id, box
        in gate_rows]


def _cards(r):
    "Cards, whatever their state: a lost card must stop everywhere."
    pool = Pool()
    card = pool.get('scenic.card').__table__()
    visitor = pool.get('scenic.visitor').__table__()
    where = card.company == r.cid
    if r.cutoff:
        where &= _changed(card, r.cutoff)
    else:
        where &= card.valid_until > naive(r.now - dt.timedelta(days=30))
    photo_url = Case((card.binding_photo_id != Null, Concat(Concat(Concat(
                    Literal(f'/{r.database_name}/scenic/gate/v1/photos/'),
                    Cast(card.id, 'VARCHAR')), Literal('-')),
                Substring(card.binding_photo_id, 1, 16))), else_=Null)
    return r.listing(card.join(visitor, 'LEFT',
            condition=visitor.id == card.holder).select(
            card.number.as_('uid'), card.id.as_('card'),
            card.ticket_type.as_('ticket_type'), card.state.as_('state'),
            visitor.id_masked.as_('holder_masked'),
            r.time(card.valid_from).as_('valid_from'),
            r.time(card.valid_until).as_('valid_until'),
            card.remaining.as_('remaining'), photo_url.as_('photo_url'),
            where=where, order_by=[card.id]),
        times=['valid_from', 'valid_until'])


def _window_where(r, ticket, order, stored, matched):
    """Valid or used tickets of today and tomorrow that `matched` selects,
    with a stored gate hash: on an incremental sync, those changed, paid or
    hashed since the cutoff, and those the previous window did not hold."""
    window_start, window_end = (naive(t) for t in ticket_window(r.tz, r.now))
    where = ((ticket.company == r.cid)
        & ticket.state.in_(['valid', 'used'])
        & matched
        & (ticket.valid_from < window_end)
        & (ticket.valid_until > window_start))
    if r.cutoff:
        previous_end = _day_start(
            r.since.astimezone(r.tz).date() + dt.timedelta(days=2), r.tz)
        where &= (_changed(ticket, r.cutoff) | (order.paid_at > r.cutoff)
            | (stored.create_date > r.cutoff)
            | (ticket.valid_from >= previous_end))
    return where


def _tickets(r):
    """Real-name tickets of today and tomorrow, for 'ID card as ticket',
    with their holder's stored gate hash of the current generation
    (scenic_gate.gatehash): a ticket whose hash the cron has not derived
    yet comes with a later sync, when it has."""
    pool = Pool()
    ticket = pool.get('scenic.ticket').__table__()
    order = pool.get('scenic.order').__table__()
    stored = pool.get('scenic.gate.hash').__table__()
    where = _window_where(r, ticket, order, stored,
        ticket.holder_hash != Null)
    return r.listing(ticket.join(
            order, condition=order.id == ticket.order).join(
            stored, condition=(stored.visitor == ticket.visitor)
            & (stored.company == r.cid)
            & (stored.generation == r.generation)).select(
            ticket.id.as_('ticket'), stored.hash.as_('holder_hash'),
            ticket.code.as_('code'),
            r.time(ticket.valid_from).as_('valid_from'),
            r.time(ticket.valid_until).as_('valid_until'),
            where=where, order_by=[ticket.id]),
        times=['valid_from', 'valid_until'])


def _partner_codes(r):
    """Tickets of today and tomorrow whose code a partner issued, by the
    code's stored gate hash of the current generation
    (scenic_gate.partnercode): like real-name tickets, one whose hash the
    cron has not derived yet comes with a later sync. Refunds and
    cancellations reach the boxes in `revoked`."""
    pool = Pool()
    ticket = pool.get('scenic.ticket').__table__()
    order = pool.get('scenic.order').__table__()
    stored = pool.get('scenic.gate.code_hash').__table__()
    where = _window_where(r, ticket, order, stored,
        ticket.partner_code != Null)
    return r.listing(ticket.join(
            order, condition=order.id == ticket.order).join(
            stored, condition=(stored.ticket == ticket.id)
            & (stored.generation == r.generation)).select(
            ticket.id.as_('ticket'), stored.hash.as_('hash'),
            ticket.ticket_type.as_('ticket_type'),
            ticket.persons.as_('persons'),
            ticket.entries_allowed.as_('entries'),
            r.time(ticket.valid_from).as_('valid_from'),
            r.time(ticket.valid_until).as_('valid_until'),
            where=where, order_by=[ticket.id]),
        times=['valid_from', 'valid_until'])


def _usages(r):
    "Usage of tickets and cards, so that the boxes of a gate agree."
    pool = Pool()
    usage = pool.get('scenic.ticket.usage').__table__()
    used_ticket = pool.get('scenic.ticket').__table__()
    used_card = pool.get('scenic.card').__table__()
    where = usage.company == r.cid
    if r.cutoff:
        where &= _changed(usage, r.cutoff)
    else:
        where &= ((used_ticket.valid_until > r.now_naive)
            | (used_card.valid_until > r.now_naive))
    return r.listing(usage
        .join(used_ticket, 'LEFT', condition=used_ticket.id == usage.ticket)
        .join(used_card, 'LEFT', condition=used_card.id == usage.card)
        .select(usage.ticket.as_('ticket'), usage.card.as_('card'),
            usage.entries.as_('entries'),
            r.time(usage.last_entry).as_('last_entry'),
            r.time(usage.last_exit).as_('last_exit'),
            usage.inside.as_('inside'), usage.binding_ref.as_('binding'),
            where=where, order_by=[usage.id]),
        times=['last_entry', 'last_exit'], booleans=['inside'])


def _revocation(key_id, private_encrypted):
    "A retired key's own signed revocation (ticketcode.revocation_message)."
    from scenic_common import ticketcode
    from scenic_ticket.vault import pii_vault
    signer = ticketcode.SigningKey.from_private_bytes(key_id,
        base64.b64decode(pii_vault().decrypt(private_encrypted,
                purpose='signing')))
    return base64.b64encode(signer.revocation()).decode()
