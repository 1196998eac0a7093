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


def simulate(company_id, days, visitors, seed, end=None, log=print):
    """Write the history in the current Tryton transaction; returns counts
    of what was written."""
    from trytond.pool import Pool
    from trytond.transaction import Transaction
    from scenic_gate import bulk, rollup

    pool = Pool()
    cursor = Transaction().connection.cursor()
    user = Transaction().user
    rng = np.random.default_rng(seed)
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
    rollup.rebuild(company_id)
    SlotSales = pool.get('scenic.slot.sales')
    cursor.execute('SELECT id FROM scenic_time_slot WHERE company = %s '
        'AND date >= %s AND date < %s'.replace('%s', _mark()),
        (company_id, _param(start), _param(end)))
    SlotSales.refresh(slots=[r[0] for r in cursor.fetchall()])
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


def run(config_file, database, days, visitors, seed, company=None):
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
            counts = simulate(company, days, visitors, seed)
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
    args = parser.parse_args(argv)
    start = time.monotonic()
    counts = run(args.config, args.database, args.days, args.visitors,
        args.seed, args.company)
    print(f"simulate_history: written in {time.monotonic() - start:.1f} s: "
        + ', '.join(f'{k} {v}' for k, v in counts.items()))


if __name__ == '__main__':
    sys.exit(main())
