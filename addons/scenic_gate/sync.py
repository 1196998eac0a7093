"""What a box downloads: a full snapshot or what changed since a watermark.

Set-based SQL, no ORM: a fresh box of a busy area takes 100 000 tickets and
cards in one answer.

The watermark is `<ISO time>#<format>`: the time the answer was read, and
the format of the snapshot (a box holding another format gets a full
snapshot). Records are picked by their change time: `create_date`,
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
import datetime as dt
import json

from sql import Cast, Literal, Null
from sql.conditionals import Case
from sql.functions import AtTimeZone, Substring
from sql.operators import Concat

from scenic_ticket.dbtools import naive
from scenic_ticket.slot import area_timezone

from trytond import backend, config
from trytond.pool import Pool
from trytond.transaction import Transaction


SYNC_FORMAT = 1
UTC = dt.timezone.utc


def overlap():
    return dt.timedelta(seconds=config.getint(
            'scenic_gate', 'sync_overlap', default=120))


def max_age():
    return dt.timedelta(days=config.getint(
            'scenic_gate', 'sync_max_days', default=7))


def make_watermark(now):
    return (f"{now.astimezone(UTC).isoformat(timespec='microseconds')}"
        f"#{SYNC_FORMAT}")


def parse_watermark(text, now):
    """The aware time of a watermark, or None when a full snapshot is due:
    no watermark, an unknown one, one of another format, or too old."""
    if not text or not isinstance(text, str) or len(text) > 100:
        return None
    # A '+' sent unencoded in the query string arrives as a space.
    moment, _, version = text.replace(' ', '+').partition('#')
    if version != str(SYNC_FORMAT):
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


def _datetime(value):
    "SQLite may hand timestamps back as text."
    if isinstance(value, str):
        return dt.datetime.fromisoformat(value)
    return value


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
            text = _datetime(value).replace(tzinfo=UTC).astimezone(
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


def snapshot(company, since_text, database_name, now=None):
    """The sync answer for the boxes of an area (a dict, ready for JSON)."""
    pool = Pool()
    now = now or dt.datetime.now(UTC)
    tz = area_timezone(company)
    iso = _Clock(tz)
    since = parse_watermark(since_text, now)
    full = since is None
    # Rows stamped after `cutoff` are sent (None: all of them).
    cutoff = None if full else naive(since - overlap())
    cid = company.id
    cursor = Transaction().connection.cursor()
    today = now.astimezone(tz).date()
    now_naive = naive(now)

    def fetch(query):
        cursor.execute(*query)
        return cursor.fetchall()

    listing = _Listing(cursor, tz, iso)
    time = listing.time

    # keys
    key = pool.get('scenic.signing_key').__table__()
    where = key.company == cid
    if cutoff:
        where &= _changed(key, cutoff)
    keys = [{
            'key_id': key_id, 'public_key': public, 'retired':
            state == 'retired'}
        for key_id, public, state in fetch(key.select(
                key.key_id, key.public_key, key.state, where=where,
                order_by=[key.key_id]))]

    # revocations
    ticket = pool.get('scenic.ticket').__table__()
    where = ((ticket.company == cid) & (ticket.state == 'revoked')
        & (ticket.revoked_at != Null))
    if cutoff:
        where &= ticket.revoked_at > cutoff
    else:
        where &= ticket.valid_until > now_naive
    revoked = listing(ticket.select(
            ticket.id.as_('ticket'), time(ticket.revoked_at).as_('at'),
            where=where, order_by=[ticket.id]), times=['at'])

    # rules
    rule = pool.get('scenic.gate.rule').__table__()
    rows = fetch(rule.select(
            rule.id, rule.early_minutes, rule.late_minutes,
            rule.min_interval_minutes, rule.anti_passback, rule.exit_counts,
            rule.default, rule.create_date, rule.write_date,
            where=rule.company == cid, order_by=[rule.id]))
    default_rule = next((r[0] for r in rows if r[6]), None)
    rules_changed = [r for r in rows if not cutoff
        or (r[7] and _datetime(r[7]) > cutoff)
        or (r[8] and _datetime(r[8]) > cutoff)]
    rules = [{
            'id': r[0], 'early_minutes': r[1], 'late_minutes': r[2],
            'min_interval_minutes': r[3], 'anti_passback': bool(r[4]),
            'exit_counts': bool(r[5]), 'default': bool(r[6]),
            } for r in rules_changed]

    # ticket types: all of them again when a rule changed, as the default
    # rule may have moved.
    ttype = pool.get('scenic.ticket.type').__table__()
    type_zone = pool.get('scenic.ticket.type-scenic.zone').__table__()
    where = ttype.company == cid
    if cutoff and not rules_changed:
        where &= _changed(ttype, cutoff)
    type_rows = fetch(ttype.select(
            ttype.id, ttype.code, ttype.persons, ttype.entry_mode,
            ttype.entries_allowed, ttype.reentry_binding, ttype.gate_rule,
            where=where, order_by=[ttype.id]))
    type_zones = {}
    if type_rows:
        for type_id, zone in fetch(type_zone.join(
                    ttype, condition=type_zone.ticket_type == ttype.id
                    ).select(type_zone.ticket_type, type_zone.zone,
                    where=where)):
            type_zones.setdefault(type_id, []).append(zone)
    entries = {'single': 1, 'unlimited': 0}
    ticket_types = [{
            'id': id_, 'code': code, 'zones': sorted(type_zones.get(id_, [])),
            'persons': persons,
            'entries': entries.get(mode, allowed or 0),
            'binding': binding or 'none',
            'rule': rule_id or default_rule,
            } for id_, code, persons, mode, allowed, binding, rule_id
        in type_rows]

    # zones and what is inside them now
    zone = pool.get('scenic.zone').__table__()
    headcount = pool.get('scenic.zone.headcount').__table__()
    join = zone.join(headcount, 'LEFT', condition=(headcount.zone == zone.id)
        & (headcount.date == today))
    where = zone.company == cid
    if full:
        where &= zone.active == True  # noqa: E712
    elif since.astimezone(tz).date() == today:
        where &= (_changed(zone, cutoff) | _changed(headcount, cutoff))
    zones = [{
            'id': id_, 'code': code, 'instant_max': maximum,
            'inside': max((ins or 0) - (outs or 0), 0),
            } for id_, code, maximum, ins, outs in fetch(join.select(
                zone.id, zone.code, zone.instant_max, headcount.entries,
                headcount.exits, where=where, order_by=[zone.id]))]

    # gates
    gate = pool.get('scenic.gate').__table__()
    gate_type = pool.get('scenic.gate-scenic.ticket.type').__table__()
    where = gate.company == cid
    if cutoff:
        where &= _changed(gate, cutoff)
    gate_rows = fetch(gate.select(
            gate.id, gate.code, gate.zone, gate.direction, gate.lanes,
            gate.active, gate.rule, gate.box, where=where,
            order_by=[gate.id]))
    gate_types = {}
    if gate_rows:
        for gate_id, type_id in fetch(gate_type.join(
                    gate, condition=gate_type.gate == gate.id).select(
                    gate_type.gate, gate_type.ticket_type, where=where)):
            gate_types.setdefault(gate_id, []).append(type_id)
    gates = [{
            'id': id_, 'code': code, 'zone': zone_id, 'direction': direction,
            'lanes': lanes, 'ticket_types': sorted(gate_types.get(id_, [])),
            'active': bool(active), 'rule': rule_id, 'box': box,
            } for id_, code, zone_id, direction, lanes, active, rule_id, box
        in gate_rows]

    # cards, whatever their state: a lost card must stop everywhere
    card = pool.get('scenic.card').__table__()
    visitor = pool.get('scenic.visitor').__table__()
    where = card.company == cid
    if cutoff:
        where &= _changed(card, cutoff)
    else:
        where &= card.valid_until > naive(now - dt.timedelta(days=30))
    photo_url = Case((card.binding_photo_id != Null, Concat(Concat(Concat(
                    Literal(f'/{database_name}/scenic/gate/v1/photos/'),
                    Cast(card.id, 'VARCHAR')), Literal('-')),
                Substring(card.binding_photo_id, 1, 16))), else_=Null)
    cards = listing(card.join(visitor, 'LEFT',
            condition=visitor.id == card.holder).select(
            card.number.as_('uid'), card.id.as_('card'),
            card.ticket_type.as_('ticket_type'), card.state.as_('state'),
            card.holder_hash.as_('holder_hash'),
            visitor.id_masked.as_('holder_masked'),
            time(card.valid_from).as_('valid_from'),
            time(card.valid_until).as_('valid_until'),
            card.remaining.as_('remaining'), photo_url.as_('photo_url'),
            where=where, order_by=[card.id]),
        times=['valid_from', 'valid_until'])

    # real-name tickets of today and tomorrow, for "ID card as ticket"
    order = pool.get('scenic.order').__table__()
    window_start = _day_start(today, tz)
    window_end = _day_start(today + dt.timedelta(days=2), tz)
    where = ((ticket.company == cid)
        & ticket.state.in_(['valid', 'used'])
        & (ticket.holder_hash != Null)
        & (ticket.valid_from < window_end)
        & (ticket.valid_until > window_start))
    if cutoff:
        previous_end = _day_start(
            since.astimezone(tz).date() + dt.timedelta(days=2), tz)
        where &= (_changed(ticket, cutoff) | (order.paid_at > cutoff)
            | (ticket.valid_from >= previous_end))
    tickets = listing(ticket.join(
            order, condition=order.id == ticket.order).select(
            ticket.id.as_('ticket'), ticket.holder_hash.as_('holder_hash'),
            ticket.code.as_('code'),
            time(ticket.valid_from).as_('valid_from'),
            time(ticket.valid_until).as_('valid_until'),
            where=where, order_by=[ticket.id]),
        times=['valid_from', 'valid_until'])

    # usage of tickets and cards, so that the boxes of a gate agree
    usage = pool.get('scenic.ticket.usage').__table__()
    used_ticket = pool.get('scenic.ticket').__table__()
    used_card = pool.get('scenic.card').__table__()
    where = usage.company == cid
    if cutoff:
        where &= _changed(usage, cutoff)
    else:
        where &= ((used_ticket.valid_until > now_naive)
            | (used_card.valid_until > now_naive))
    usages = listing(usage
        .join(used_ticket, 'LEFT', condition=used_ticket.id == usage.ticket)
        .join(used_card, 'LEFT', condition=used_card.id == usage.card)
        .select(usage.ticket.as_('ticket'), usage.card.as_('card'),
            usage.entries.as_('entries'),
            time(usage.last_entry).as_('last_entry'),
            time(usage.last_exit).as_('last_exit'),
            usage.inside.as_('inside'), usage.binding_ref.as_('binding'),
            where=where, order_by=[usage.id]),
        times=['last_entry', 'last_exit'], booleans=['inside'])

    return {
        'watermark': make_watermark(now),
        'full': full,
        'area': {'id': cid, 'timezone': str(tz)},
        'keys': keys,
        'revoked': revoked,
        'ticket_types': ticket_types,
        'rules': rules,
        'zones': zones,
        'gates': gates,
        'cards': cards,
        'tickets': tickets,
        'usage': usages,
        }
