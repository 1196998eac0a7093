#!/usr/bin/env python3
"""Write a realistic, reproducible history of an area into its database.

    python scripts/simulate_history.py -c trytond.conf -d demo \\
        [--days 120] [--visitors 1500] [--seed 14]

For each of the `days` days before today: time slots, orders and tickets by
channel with their lead times, payments and refunds, gate scans in and out
with dwell times, the zones' headcount, and the rollups the dashboards read.
The patterns: weekends ×2.2 and public holidays ×3 the weekday demand
(`visitors`, persons a weekday), arrivals peaking mid-morning (hourly slots
08:00-17:00), channel mix (web, OTA, box office, kiosk, agency) with their
own lead times and no-show rates, ~3 % of online orders refunded, demand
pricing (+10 % once a slot is 80 % sold, +20 % on weekends), sell-outs when
demand exceeds a slot's capacity, and a few offline-box episodes (scans
stamped `offline`, uploaded late).

Set based: rows are built in Python (numpy, seeded) and written with one
multi-row statement per table and chunk (scenic_gate.bulk), in the same
tables and columns the ERP writes; then the rollups are rebuilt from them.
The area must exist (scripts/load_demo.py) and have no history yet in the
period (the script refuses otherwise).

`--set-based` (PostgreSQL only; bench/analytics.py uses it): the same
history built by the database itself, one INSERT ... SELECT per table over
generate_series (days x slots x orders x persons), its random values from
hashtext of the seed and each row's keys. For year-size histories (millions
of tickets), which the per-ticket loop above would take half an hour to
write. Same patterns and tables; the draws differ (another generator).
"""
import argparse
import datetime as dt
import sys
import time
import uuid
from decimal import Decimal
from zoneinfo import ZoneInfo

import numpy as np

SLOT_HOURS = list(range(8, 17))             # hourly slots 08:00-17:00
# share of the day's visitors per slot: the mid-morning peak
SLOT_SHARE = np.array([.07, .15, .19, .17, .12, .10, .08, .07, .05])
# channel code: (share, mean lead days, base no-show rate, providers)
CHANNELS = {
    'web': (.38, 3.0, .06, ['wechat', 'alipay']),
    'ota': (.25, 6.0, .09, ['ota_prepaid']),
    'box_office': (.20, 0.0, .0, ['cash', 'wechat', 'alipay']),
    'kiosk': (.12, 0.0, .0, ['wechat', 'alipay']),
    'agency': (.05, 14.0, .04, ['bank_transfer']),
    }
# ticket type code: share of persons
TYPES = {'ADULT': .62, 'CHILD': .14, 'SENIOR': .12, 'STUDENT': .12}
DAY_FACTOR = {'weekday': 1.0, 'weekend': 2.2, 'holiday': 3.0}
REFUND_RATE = .03
FILL_UPLIFT = (Decimal('0.80'), Decimal('1.10'))
WEEKEND_UPLIFT = Decimal('1.20')
CHUNK = 20_000


def day_type(day, holidays):
    if day in holidays:
        return 'holiday'
    return 'weekend' if day.weekday() >= 5 else 'weekday'


class Ids:
    "Next ids of tables, taken once: the rows are inserted with their ids."

    def __init__(self, cursor, tables):
        self.next = {}
        for table in tables:
            cursor.execute(f'SELECT COALESCE(MAX(id), 0) FROM "{table}"')
            self.next[table] = cursor.fetchone()[0] + 1

    def take(self, table):
        value = self.next[table]
        self.next[table] += 1
        return value


def _area(company_id, days, end=None):
    """What both generators read of the area: its records by code, the
    period (ending where the area's own slots begin) and the holidays."""
    from types import SimpleNamespace

    from trytond.pool import Pool
    pool = Pool()
    Company = pool.get('company.company')
    company = Company(company_id)
    tz = ZoneInfo(company.timezone or 'Asia/Shanghai')
    currency = company.currency.id
    Slot = pool.get('scenic.time_slot')
    # The history ends where the area's own slots begin (the demo's start
    # today, in the machine's date).
    first = Slot.search([('company', '=', company_id)],
        order=[('date', 'ASC')], limit=1)
    end = end or min([dt.datetime.now(tz).date()]
        + [s.date for s in first])                  # exclusive
    start = end - dt.timedelta(days=days)

    def one(model, field, value):
        Model = pool.get(model)
        records = Model.search([('company', '=', company_id),
                (field, '=', value)], limit=1)
        if not records:
            raise SystemExit(f"the area has no {model} {field}={value!r}: "
                "load the demo data first (scripts/load_demo.py)")
        return records[0]
    channels = {code: one('scenic.channel', 'code', code) for code in
        CHANNELS}
    types = {code: one('scenic.ticket.type', 'code', code) for code in TYPES}
    gate_in = one('scenic.gate', 'code', 'MAIN-IN')
    gate_out = one('scenic.gate', 'code', 'MAIN-OUT')
    zone = gate_in.zone
    box = gate_in.box       # the main gate's (the kiosk's box has no gate)
    if box is None:
        # gates not tied to a box (test areas): the area's first box
        boxes = pool.get('scenic.gate.box').search(
            [('company', '=', company_id)], order=[('id', 'ASC')], limit=1)
        if not boxes:
            raise SystemExit("the area has no gate box: load the demo data "
                "first (scripts/load_demo.py)")
        box, = boxes
    if Slot.search([('company', '=', company_id), ('date', '>=', start),
                ('date', '<', end)], limit=1):
        raise SystemExit(f"the area already has slots between {start} and "
            f"{end}: simulate a history only once (a fresh demo database)")
    holidays = {d.date for d in pool.get('scenic.calendar.day').search([
                ('company', '=', company_id), ('kind', '=', 'holiday')])}
    # Chinese public holidays in the simulated period besides the demo's:
    # National Day week and Labour Day.
    for year in {start.year, end.year}:
        holidays.update(dt.date(year, 10, d) for d in range(1, 8))
        holidays.update(dt.date(year, 5, d) for d in range(1, 6))
    return SimpleNamespace(company=company, tz=tz, currency=currency,
        start=start, end=end, channels=channels, types=types,
        gate_in=gate_in, gate_out=gate_out, zone=zone, box=box,
        holidays=holidays)


def simulate(company_id, days, visitors, seed, end=None, log=print):
    """Write the history in the current Tryton transaction; returns counts
    of what was written."""
    from trytond.pool import Pool
    from trytond.transaction import Transaction
    from scenic_gate import bulk

    pool = Pool()
    cursor = Transaction().connection.cursor()
    user = Transaction().user
    rng = np.random.default_rng(seed)
    area = _area(company_id, days, end)
    tz, currency, start, end = area.tz, area.currency, area.start, area.end
    channels, types = area.channels, area.types
    gate_in, gate_out, zone, box = (area.gate_in, area.gate_out, area.zone,
        area.box)
    holidays = area.holidays
    # weekend peaks sell out; demand pricing kicks in before (80 %)
    capacity = int(visitors * 2.0 * SLOT_SHARE.max()) or 1
    tables = ['scenic_time_slot', 'scenic_order', 'scenic_order_line',
        'scenic_ticket', 'scenic_payment', 'scenic_ticket_usage',
        'scenic_gate_scan', 'scenic_zone_headcount']
    ids = Ids(cursor, tables)
    rows = {t: [] for t in tables}
    offline_days = set(rng.choice(days, size=min(3, days), replace=False)
        .tolist())
    channel_codes = list(CHANNELS)
    channel_p = np.array([CHANNELS[c][0] for c in channel_codes])
    type_codes = list(TYPES)
    type_p = np.array([TYPES[c] for c in type_codes])
    stamp = dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)

    def utc(local):
        return local.astimezone(dt.timezone.utc).replace(tzinfo=None)

    counts = dict(days=days, slots=0, orders=0, tickets=0, scans=0)
    for index in range(days):
        day = start + dt.timedelta(days=index)
        kind = day_type(day, holidays)
        demand = visitors * DAY_FACTOR[kind] * rng.lognormal(0, 0.15)
        weekend = kind != 'weekday'
        entries_today = exits_today = 0
        offline = index in offline_days
        offline_hours = (10, 12) if offline else None
        for slot_index, hour in enumerate(SLOT_HOURS):
            slot_id = ids.take('scenic_time_slot')
            slot_start = dt.datetime.combine(day, dt.time(hour), tz)
            wanted = int(rng.poisson(demand * SLOT_SHARE[slot_index]))
            # orders of 1-4 persons until the wanted persons are reached
            sizes = rng.integers(1, 5, size=wanted // 2 + 1)
            sizes = sizes[:np.searchsorted(np.cumsum(sizes), wanted) + 1]
            order_channels = rng.choice(len(channel_codes), size=len(sizes),
                p=channel_p)
            leads = []
            for c in order_channels:
                mean = CHANNELS[channel_codes[c]][1]
                leads.append(0 if mean == 0 else min(
                        int(rng.exponential(mean)), 60))
            # booking times: lead days before the slot, during the day
            booked_at = [slot_start - dt.timedelta(days=lead,
                    minutes=int(rng.integers(30, 600)) if lead else
                    int(rng.integers(5, 120))) for lead in leads]
            order_index = np.argsort(booked_at, kind='stable')
            sold = 0
            for o in order_index:
                size = int(sizes[o])
                if sold + size > capacity:
                    break        # sold out: later bookings are turned away
                code = channel_codes[order_channels[o]]
                channel = channels[code]
                at = booked_at[o]
                fill = Decimal(sold) / Decimal(capacity)
                order_id = ids.take('scenic_order')
                refunded = (code in {'web', 'ota'}
                    and rng.random() < REFUND_RATE)
                state = 'refunded' if refunded else 'used'
                paid_at = utc(at) + dt.timedelta(minutes=2)
                type_code = type_codes[rng.choice(len(type_codes), p=type_p)]
                ttype = types[type_code]
                unit = ttype.base_price
                if weekend:
                    unit *= WEEKEND_UPLIFT
                if fill >= FILL_UPLIFT[0]:
                    unit *= FILL_UPLIFT[1]
                unit = unit.quantize(Decimal('0.01'))
                line_id = ids.take('scenic_order_line')
                total = unit * size
                rows['scenic_order'].append([order_id, company_id,
                        f'H{seed}-{order_id}', channel.id, slot_id, day,
                        state, total, currency, paid_at,
                        paid_at + dt.timedelta(days=1) if refunded else None,
                        user, utc(at)])
                rows['scenic_order_line'].append([line_id, order_id,
                        ttype.id, size, size, unit, total, user, utc(at)])
                providers = CHANNELS[code][3]
                provider = providers[int(rng.integers(len(providers)))]
                rows['scenic_payment'].append([ids.take('scenic_payment'),
                        company_id, order_id, 'payment', provider,
                        f'sim-{order_id}', total, currency, paid_at, user,
                        paid_at])
                if refunded:
                    refund_at = min(paid_at + dt.timedelta(days=1),
                        utc(slot_start) - dt.timedelta(hours=1))
                    rows['scenic_payment'].append([
                            ids.take('scenic_payment'), company_id, order_id,
                            'refund', provider, f'sim-r-{order_id}', total,
                            currency, max(refund_at, paid_at), user,
                            max(refund_at, paid_at)])
                no_show_rate = CHANNELS[code][2] * (1 + leads[o] / 10)
                shows = not refunded and rng.random() >= no_show_rate
                any_entered = False
                for _ in range(size):
                    ticket_id = ids.take('scenic_ticket')
                    if refunded:
                        ticket_state = 'revoked'
                    elif shows:
                        ticket_state = 'used'
                    else:
                        ticket_state = 'expired'
                    valid_from = utc(slot_start) - dt.timedelta(minutes=30)
                    rows['scenic_ticket'].append([ticket_id, company_id,
                            order_id, line_id, ttype.id, slot_id, day, 1, 1,
                            utc(dt.datetime.combine(day, dt.time(), tz)),
                            utc(dt.datetime.combine(day, dt.time(23, 59),
                                    tz)), ticket_state, user, utc(at),
                            paid_at])
                    if not shows:
                        continue
                    any_entered = True
                    entry = (slot_start + dt.timedelta(
                            minutes=float(rng.uniform(-10, 50))))
                    dwell = float(rng.lognormal(np.log(
                                170 if weekend else 140), 0.35))
                    leave = min(entry + dt.timedelta(minutes=dwell),
                        dt.datetime.combine(day, dt.time(19, 0), tz))
                    rows['scenic_ticket_usage'].append([
                            ids.take('scenic_ticket_usage'), company_id,
                            ticket_id, 1, 1, utc(entry), utc(leave), False,
                            user, utc(entry)])
                    for gate, direction, when in [
                            (gate_in, 'in', entry), (gate_out, 'out', leave)]:
                        is_offline = bool(offline_hours and
                            offline_hours[0] <= when.hour < offline_hours[1])
                        rows['scenic_gate_scan'].append([
                                ids.take('scenic_gate_scan'), company_id,
                                utc(when), gate.id, 1, 'qr', ticket_id,
                                'open', 'ok', 1, direction, is_offline,
                                box.id, uuid.UUID(int=int(rng.integers(
                                            2 ** 62)) << 64 | ticket_id
                                    << 1 | (direction == 'out')).hex,
                                False, user,
                                utc(when) + (dt.timedelta(hours=2)
                                    if is_offline else dt.timedelta(
                                        seconds=1))])
                    entries_today += 1
                    exits_today += 1
                del any_entered
                sold += size
            # a few refused scans at the entrance (expired codes, passback)
            for _ in range(int(rng.poisson(max(sold, 1) * 0.01))):
                when = slot_start + dt.timedelta(
                    minutes=float(rng.uniform(0, 60)))
                rows['scenic_gate_scan'].append([
                        ids.take('scenic_gate_scan'), company_id, utc(when),
                        gate_in.id, 1, 'qr', None, 'deny', 'expired', 1,
                        'in', False, box.id, uuid.UUID(int=int(
                                rng.integers(2 ** 62)) << 64 | int(
                                rng.integers(2 ** 40))).hex, False, user,
                        utc(when)])
            rows['scenic_time_slot'].append([slot_id, company_id, None, day,
                    dt.time(hour), dt.time(hour + 1), capacity, sold, user,
                    stamp])
            counts['slots'] += 1
        rows['scenic_zone_headcount'].append([
                ids.take('scenic_zone_headcount'), company_id, zone.id, day,
                entries_today, exits_today, user, stamp])
        if sum(len(v) for v in rows.values()) > CHUNK:
            _flush(bulk, pool, rows, counts)
    _flush(bulk, pool, rows, counts)
    _fix_sequences(cursor, tables)
    log(f"simulate_history: {counts['orders']} orders, {counts['tickets']} "
        f"tickets, {counts['scans']} scans over {days} days; rebuilding "
        "the rollups")
    _rebuild(company_id, start, end)
    return counts


def _rebuild(company_id, start, end):
    "The rollups rebuilt from the rows written (their set-based entries)."
    from trytond.pool import Pool
    from trytond.transaction import Transaction
    from scenic_gate import rollup
    cursor = Transaction().connection.cursor()
    rollup.rebuild(company_id)
    SlotSales = Pool().get('scenic.slot.sales')
    cursor.execute('SELECT id FROM scenic_time_slot WHERE company = %s '
        'AND date >= %s AND date < %s'.replace('%s', _mark()),
        (company_id, _param(start), _param(end)))
    SlotSales.refresh(slots=[r[0] for r in cursor.fetchall()])


def _u(seed, tag, *keys):
    """SQL: a uniform pseudo-random number in [0, 1) of the seed, a tag and
    the row's keys (hashtext: the same rows give the same values)."""
    key = " || ':' || ".join([f"'{int(seed)}:{tag}'"]
        + [f'({k})::text' for k in keys])
    return f'((hashtext({key})::bigint + 2147483648) / 4294967296.0)'


def _normal(seed, tag, *keys):
    "SQL: a standard normal value (Box-Muller over two _u)."
    return (f"(sqrt(-2 * ln({_u(seed, tag + 'a', *keys)} + 1e-12)) "
        f"* cos(2 * pi() * {_u(seed, tag + 'b', *keys)}))")


def _case(index, values):
    "SQL: values[index] as a CASE (index a 0-based SQL expression)."
    return ('(CASE ' + ' '.join(f'WHEN {index} = {i} THEN {v}'
            for i, v in enumerate(values)) + ' END)')


def _pick(u, shares):
    "SQL: the 0-based index of the share interval `u` falls in."
    bounds, total = [], 0
    for share in shares[:-1]:
        total += share
        bounds.append(total)
    return ('(CASE ' + ' '.join(f'WHEN {u} < {b!r} THEN {i}'
            for i, b in enumerate(bounds)) + f' ELSE {len(shares) - 1} END)')


def simulate_set_based(company_id, days, visitors, seed, end=None,
        log=print):
    """The same history as `simulate`, built by PostgreSQL itself: one
    INSERT ... SELECT per table over generate_series (days x slots x
    orders x persons), its random values from hashtext of the seed and the
    row's keys (reproducible). For year-size histories (millions of rows)
    that the per-ticket Python loop would take half an hour to write.
    Returns counts of what was written."""
    from trytond import backend
    from trytond.transaction import Transaction
    if backend.name != 'postgresql':
        raise SystemExit("--set-based generates on PostgreSQL only")
    cursor = Transaction().connection.cursor()
    area = _area(company_id, days, end)
    start, end = area.start, area.end
    capacity = int(visitors * 2.0 * SLOT_SHARE.max()) or 1
    codes = list(CHANNELS)
    type_codes = list(TYPES)
    tables = ['scenic_time_slot', 'scenic_order', 'scenic_order_line',
        'scenic_ticket']
    base = {}
    for table in tables:
        cursor.execute(f'SELECT COALESCE(MAX(id), 0) FROM "{table}"')
        base[table] = cursor.fetchone()[0]
    offline_days = min(3, days)
    p = dict(company=company_id, user=Transaction().user, seed=seed,
        start=start, days=days, visitors=visitors, capacity=capacity,
        tz=str(area.tz), currency=area.currency,
        holidays=sorted(area.holidays), gate_in=area.gate_in.id,
        gate_out=area.gate_out.id, zone=area.zone.id, box=area.box.id,
        stamp=dt.datetime.now(dt.timezone.utc).replace(tzinfo=None),
        **{f'base_{t}': v for t, v in base.items()})

    def utc(local):
        return f"(({local}) AT TIME ZONE %(tz)s AT TIME ZONE 'UTC')"

    def run(label, sql):
        started = time.monotonic()
        cursor.execute(sql, p)
        log(f"simulate_history: {label}: {cursor.rowcount} rows, "
            f"{time.monotonic() - started:.1f} s")
        return cursor.rowcount

    U = lambda tag, *keys: _u(seed, tag, *keys)  # noqa: E731
    N = lambda tag, *keys: _normal(seed, tag, *keys)  # noqa: E731
    factor = _case("CASE kind WHEN 'weekday' THEN 0 WHEN 'weekend' THEN 1 "
        "ELSE 2 END", [DAY_FACTOR[k] for k in ['weekday', 'weekend',
                'holiday']])
    run('days', f"""
        CREATE TEMP TABLE sim_day ON COMMIT DROP AS
        SELECT idx, day, kind, kind <> 'weekday' AS weekend,
            %(visitors)s * {factor} * exp(0.15 * {N('d', 'idx')}) AS demand,
            rank() OVER (ORDER BY {U('off', 'idx')}, idx) <= {offline_days}
                AS offline
        FROM (SELECT idx, day, CASE
                    WHEN day = ANY(%(holidays)s::date[]) THEN 'holiday'
                    WHEN extract(isodow FROM day) >= 6 THEN 'weekend'
                    ELSE 'weekday' END AS kind
            FROM (SELECT i AS idx, %(start)s::date + i AS day
                FROM generate_series(0, %(days)s - 1) AS i) AS g) AS d""")
    share = _case('s', [repr(float(x)) for x in SLOT_SHARE])
    run('slots', f"""
        CREATE TEMP TABLE sim_slot ON COMMIT DROP AS
        SELECT id, day, hour, weekend, offline, start_local,
            greatest(0, round(m + sqrt(m) * {N('w', 'id')}))::int AS wanted
        FROM (SELECT %(base_scenic_time_slot)s + d.idx * {len(SLOT_HOURS)}
                + s + 1 AS id, d.day, {SLOT_HOURS[0]} + s AS hour,
                d.weekend, d.offline,
                d.day + make_interval(hours => {SLOT_HOURS[0]} + s)
                    AS start_local,
                d.demand * {share} AS m
            FROM sim_day AS d,
                generate_series(0, {len(SLOT_HOURS) - 1}) AS s) AS x""")
    channel = _pick(U('c', 'slot', 'n'), [CHANNELS[c][0] for c in codes])
    mean_lead = _case('ch', [repr(CHANNELS[c][1]) for c in codes])
    no_show = _case('ch', [repr(CHANNELS[c][2]) for c in codes])
    ttype = _pick(U('t', 'slot', 'n'), [TYPES[c] for c in type_codes])
    price = _case('tt', [str(area.types[c].base_price) for c in type_codes])
    provider = 'CASE ch ' + ' '.join(
        f"WHEN {i} THEN " + _case(
            f"floor({U('p', 'slot', 'n')} * {len(CHANNELS[c][3])})",
            [f"'{v}'" for v in CHANNELS[c][3]])
        for i, c in enumerate(codes)) + ' END'
    online = ', '.join(str(codes.index(c)) for c in ['web', 'ota'])
    run('orders (in memory)', f"""
        CREATE TEMP TABLE sim_order ON COMMIT DROP AS
        WITH wanted AS (
            SELECT s.id AS slot, s.day, s.weekend, s.start_local, s.wanted,
                n, 1 + floor(4 * {U('s', 's.id', 'n')})::int AS size
            FROM sim_slot AS s, generate_series(1, s.wanted) AS n),
        orders AS (
            SELECT *, {channel} AS ch, {ttype} AS tt FROM (
                SELECT *, sum(size) OVER (PARTITION BY slot ORDER BY n)
                    AS reached FROM wanted) AS w
            WHERE reached - size < wanted),
        leads AS (
            SELECT *, CASE WHEN {mean_lead} = 0 THEN 0 ELSE least(60, floor(
                    -{mean_lead} * ln(1 - {U('l', 'slot', 'n')})))::int
                END AS lead FROM orders),
        booked AS (
            SELECT *, start_local - make_interval(days => lead,
                    mins => CASE WHEN lead > 0
                        THEN 30 + floor(570 * {U('m', 'slot', 'n')})::int
                        ELSE 5 + floor(115 * {U('m', 'slot', 'n')})::int END)
                AS booked_local FROM leads),
        sold AS (
            SELECT *, sum(size) OVER (PARTITION BY slot
                    ORDER BY booked_local, n) AS cum FROM booked)
        SELECT %(base_scenic_order)s + row_number() OVER (
                ORDER BY slot, booked_local, n) AS id,
            slot, day, weekend, start_local, n, size, ch, tt, lead,
            {utc('booked_local')} AS booked_at,
            {utc('booked_local')} + interval '2 minutes' AS paid_at,
            round({price} * CASE WHEN weekend THEN {WEEKEND_UPLIFT}
                    ELSE 1 END * CASE WHEN (cum - size)::numeric
                    / %(capacity)s >= {FILL_UPLIFT[0]}
                    THEN {FILL_UPLIFT[1]} ELSE 1 END, 2) AS unit,
            ch IN ({online}) AND {U('r', 'slot', 'n')} < {REFUND_RATE}
                AS refunded,
            {provider} AS provider,
            {U('n', 'slot', 'n')} >= {no_show} * (1 + lead / 10.0)
                AS turns_up
        FROM sold WHERE cum <= %(capacity)s""")
    cursor.execute('ALTER TABLE sim_order ADD COLUMN first_ticket bigint')
    cursor.execute("""UPDATE sim_order AS o SET first_ticket = f.first
        FROM (SELECT id, %(base_scenic_ticket)s + 1 + sum(size) OVER (
                ORDER BY id) - size AS first FROM sim_order) AS f
        WHERE f.id = o.id""", p)
    counts = dict(days=days, slots=0, orders=0, tickets=0, scans=0)
    run('slots', f"""
        INSERT INTO scenic_time_slot (id, company, zone, date, start_time,
            end_time, capacity, booked, create_uid, create_date)
        SELECT s.id, %(company)s, NULL, s.day, make_time(s.hour, 0, 0),
            make_time(s.hour + 1, 0, 0), %(capacity)s,
            COALESCE(o.sold, 0), %(user)s, %(stamp)s
        FROM sim_slot AS s LEFT JOIN (
            SELECT slot, sum(size) AS sold FROM sim_order GROUP BY slot)
            AS o ON o.slot = s.id""")
    counts['slots'] = cursor.rowcount
    channel_id = _case('o.ch', [area.channels[c].id for c in codes])
    type_id = _case('o.tt', [area.types[c].id for c in type_codes])
    counts['orders'] = run('orders', f"""
        INSERT INTO scenic_order (id, company, reference, channel, slot,
            visit_date, state, total, currency, paid_at, closed_at,
            create_uid, create_date)
        SELECT o.id, %(company)s, 'H' || %(seed)s || '-' || o.id,
            {channel_id}, o.slot, o.day,
            CASE WHEN o.refunded THEN 'refunded' ELSE 'used' END,
            o.unit * o.size, %(currency)s, o.paid_at,
            CASE WHEN o.refunded THEN o.paid_at + interval '1 day' END,
            %(user)s, o.booked_at
        FROM sim_order AS o""")
    run('order lines', f"""
        INSERT INTO scenic_order_line (id, "order", ticket_type, quantity,
            persons, unit_price, amount, create_uid, create_date)
        SELECT %(base_scenic_order_line)s + o.id - %(base_scenic_order)s,
            o.id, {type_id}, o.size, o.size, o.unit, o.unit * o.size,
            %(user)s, o.booked_at
        FROM sim_order AS o""")
    refund_at = (f"greatest(o.paid_at, least(o.paid_at + interval '1 day', "
        f"{utc('o.start_local')} - interval '1 hour'))")
    run('payments and refunds', f"""
        INSERT INTO scenic_payment (company, "order", kind, provider,
            provider_reference, amount, currency, date, create_uid,
            create_date)
        SELECT %(company)s, o.id, k.kind, o.provider,
            CASE k.kind WHEN 'payment' THEN 'sim-' ELSE 'sim-r-' END
                || o.id, o.unit * o.size, %(currency)s,
            CASE k.kind WHEN 'payment' THEN o.paid_at ELSE {refund_at} END,
            %(user)s,
            CASE k.kind WHEN 'payment' THEN o.paid_at ELSE {refund_at} END
        FROM sim_order AS o, (VALUES ('payment'), ('refund')) AS k (kind)
        WHERE k.kind = 'payment' OR o.refunded
        ORDER BY o.id, k.kind""")
    counts['tickets'] = run('tickets', f"""
        INSERT INTO scenic_ticket (id, company, "order", line, ticket_type,
            slot, visit_date, persons, entries_allowed, valid_from,
            valid_until, state, create_uid, create_date, write_date)
        SELECT o.first_ticket + k, %(company)s, o.id,
            %(base_scenic_order_line)s + o.id - %(base_scenic_order)s,
            {type_id}, o.slot, o.day, 1, 1, {utc('o.day::timestamp')},
            {utc("o.day + time '23:59'")},
            CASE WHEN o.refunded THEN 'revoked'
                WHEN o.turns_up THEN 'used' ELSE 'expired' END,
            %(user)s, o.booked_at, o.paid_at
        FROM sim_order AS o, generate_series(0, o.size - 1) AS k""")
    run('visits (in memory)', f"""
        CREATE TEMP TABLE sim_visit ON COMMIT DROP AS
        SELECT ticket, slot, day, offline, entry_local,
            least(entry_local + make_interval(secs => 60 * exp(
                        ln(CASE WHEN weekend THEN 170 ELSE 140 END)
                        + 0.35 * {N('dw', 'ticket')})),
                day + time '19:00') AS leave_local
        FROM (SELECT o.first_ticket + k AS ticket, o.slot, o.day,
                o.weekend, s.offline, o.start_local + make_interval(
                    secs => 60 * (-10 + 60 * {U('e', 'o.first_ticket + k')}))
                    AS entry_local
            FROM sim_order AS o JOIN sim_slot AS s ON s.id = o.slot,
                generate_series(0, o.size - 1) AS k
            WHERE o.turns_up AND NOT o.refunded) AS v""")
    run('ticket usage', f"""
        INSERT INTO scenic_ticket_usage (company, ticket, entries, exits,
            last_entry, last_exit, inside, create_uid, create_date)
        SELECT %(company)s, v.ticket, 1, 1, {utc('v.entry_local')},
            {utc('v.leave_local')}, false, %(user)s, {utc('v.entry_local')}
        FROM sim_visit AS v ORDER BY v.ticket""")
    # scans stamped offline between 10:00 and 12:00 on the offline days,
    # uploaded two hours late
    counts['scans'] = run('admitted scans', f"""
        INSERT INTO scenic_gate_scan (company, time, gate, lane, medium,
            ticket, decision, reason, persons, direction, offline, box,
            nonce, conflict, create_uid, create_date)
        SELECT %(company)s, {utc('w.local')}, w.gate, 1, 'qr', w.ticket,
            'open', 'ok', 1, w.direction, w.offline, %(box)s,
            md5(%(seed)s || ':' || w.direction || ':' || w.ticket), false,
            %(user)s, {utc('w.local')} + CASE WHEN w.offline
                THEN interval '2 hours' ELSE interval '1 second' END
        FROM (SELECT v.ticket, x.gate, x.direction, x.local,
                v.offline AND extract(hour FROM x.local) >= 10
                    AND extract(hour FROM x.local) < 12 AS offline
            FROM sim_visit AS v, LATERAL (VALUES
                    (%(gate_in)s, 'in', v.entry_local),
                    (%(gate_out)s, 'out', v.leave_local))
                AS x (gate, direction, local)) AS w
        ORDER BY w.ticket, w.direction""")
    # a few refused scans at the entrance (expired codes, passback): 1 %
    counts['scans'] += run('refused scans', f"""
        INSERT INTO scenic_gate_scan (company, time, gate, lane, medium,
            ticket, decision, reason, persons, direction, offline, box,
            nonce, conflict, create_uid, create_date)
        SELECT %(company)s, t, %(gate_in)s, 1, 'qr', NULL, 'deny',
            'expired', 1, 'in', false, %(box)s,
            md5(%(seed)s || ':deny:' || r.slot || ':' || r.k), false,
            %(user)s, t
        FROM (SELECT s.id AS slot, k, {utc('s.start_local')} + make_interval(
                    secs => 3600 * {U('rt', 's.id', 'k')}) AS t
            FROM sim_slot AS s JOIN scenic_time_slot AS ts ON ts.id = s.id,
                generate_series(1, floor(greatest(ts.booked, 1) * 0.01
                        + {U('rc', 's.id')})::int) AS k) AS r""")
    run('zone headcount', """
        INSERT INTO scenic_zone_headcount (company, zone, date, entries,
            exits, create_uid, create_date)
        SELECT %(company)s, %(zone)s, d.day, COALESCE(v.visits, 0),
            COALESCE(v.visits, 0), %(user)s, %(stamp)s
        FROM sim_day AS d LEFT JOIN (
            SELECT day, count(*) AS visits FROM sim_visit GROUP BY day)
            AS v ON v.day = d.day
        ORDER BY d.day""")
    _fix_sequences(cursor, tables)
    log(f"simulate_history: {counts['orders']} orders, {counts['tickets']} "
        f"tickets, {counts['scans']} scans over {days} days (set-based); "
        "rebuilding the rollups")
    started = time.monotonic()
    _rebuild(company_id, start, end)
    log(f"simulate_history: rollups rebuilt in "
        f"{time.monotonic() - started:.1f} s")
    return counts


def _mark():
    from trytond import backend
    return '%s' if backend.name == 'postgresql' else '?'


def _param(value):
    from trytond import backend
    return value if backend.name == 'postgresql' else value.isoformat()


COLUMNS = {
    'scenic_time_slot': ('scenic.time_slot', ['id', 'company', 'zone',
            'date', 'start_time', 'end_time', 'capacity', 'booked',
            'create_uid', 'create_date']),
    'scenic_order': ('scenic.order', ['id', 'company', 'reference',
            'channel', 'slot', 'visit_date', 'state', 'total', 'currency',
            'paid_at', 'closed_at', 'create_uid', 'create_date']),
    'scenic_order_line': ('scenic.order.line', ['id', 'order',
            'ticket_type', 'quantity', 'persons', 'unit_price', 'amount',
            'create_uid', 'create_date']),
    'scenic_ticket': ('scenic.ticket', ['id', 'company', 'order', 'line',
            'ticket_type', 'slot', 'visit_date', 'persons',
            'entries_allowed', 'valid_from', 'valid_until', 'state',
            'create_uid', 'create_date', 'write_date']),
    'scenic_payment': ('scenic.payment', ['id', 'company', 'order', 'kind',
            'provider', 'provider_reference', 'amount', 'currency', 'date',
            'create_uid', 'create_date']),
    'scenic_ticket_usage': ('scenic.ticket.usage', ['id', 'company',
            'ticket', 'entries', 'exits', 'last_entry', 'last_exit',
            'inside', 'create_uid', 'create_date']),
    'scenic_gate_scan': ('scenic.gate.scan', ['id', 'company', 'time',
            'gate', 'lane', 'medium', 'ticket', 'decision', 'reason',
            'persons', 'direction', 'offline', 'box', 'nonce', 'conflict',
            'create_uid', 'create_date']),
    'scenic_zone_headcount': ('scenic.zone.headcount', ['id', 'company',
            'zone', 'date', 'entries', 'exits', 'create_uid',
            'create_date']),
    }


def _flush(bulk, pool, rows, counts):
    for table, (model, names) in COLUMNS.items():
        values = rows[table]
        if not values:
            continue
        Model = pool.get(model)
        for i in range(0, len(values), CHUNK):
            bulk.insert(Model, names, [[_value(v) for v in row]
                    for row in values[i:i + CHUNK]])
        key = {'scenic_order': 'orders', 'scenic_ticket': 'tickets',
            'scenic_gate_scan': 'scans'}.get(table)
        if key:
            counts[key] += len(values)
        values.clear()


def _value(value):
    "Values as both backends' bulk paths take them (PostgreSQL's as JSON)."
    from trytond import backend
    if isinstance(value, dt.time):
        return value.isoformat()
    if isinstance(value, Decimal) and backend.name == 'postgresql':
        return str(value)
    return value


def _fix_sequences(cursor, tables):
    from trytond import backend
    if backend.name != 'postgresql':
        return
    for table in tables:
        cursor.execute(f"SELECT setval('{table}_id_seq', "
            f'(SELECT COALESCE(MAX(id), 1) FROM "{table}"))')


def run(config_file, database, days, visitors, seed, company=None,
        set_based=False):
    from trytond import config
    config.update_etc(config_file)
    from trytond.pool import Pool
    from trytond.transaction import Transaction
    Pool.start()
    pool = Pool(database)
    pool.init()
    with Transaction().start(database, 0, readonly=False) as transaction:
        if company is None:
            Company = pool.get('company.company')
            companies = Company.search([], order=[('id', 'ASC')], limit=1)
            if not companies:
                raise SystemExit("no scenic area in this database: load the "
                    "demo data first (scripts/load_demo.py)")
            company = companies[0].id
        with transaction.set_context(company=company):
            counts = (simulate_set_based if set_based else simulate)(
                company, days, visitors, seed)
        transaction.commit()
    return counts


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('-c', '--config', required=True)
    parser.add_argument('-d', '--database', default='demo')
    parser.add_argument('--days', type=int, default=120)
    parser.add_argument('--visitors', type=int, default=1500,
        help="persons on an ordinary weekday")
    parser.add_argument('--seed', type=int, default=14)
    parser.add_argument('--company', type=int)
    parser.add_argument('--set-based', action='store_true',
        help="generate in PostgreSQL (INSERT ... SELECT over "
        "generate_series): for year-size histories")
    args = parser.parse_args(argv)
    start = time.monotonic()
    counts = run(args.config, args.database, args.days, args.visitors,
        args.seed, args.company, args.set_based)
    print(f"simulate_history: written in {time.monotonic() - start:.1f} s: "
        + ', '.join(f'{k} {v}' for k, v in counts.items()))


if __name__ == '__main__':
    sys.exit(main())
