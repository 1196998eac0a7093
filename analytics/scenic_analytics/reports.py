"""The questions the control room and the analysts ask, as DataFrames.

Every function takes a read-only `Database` (db.connect) and the area's
company id; times come back aware in the area's time zone. They read the
rollups the ERP keeps (scenic.zone.headcount, scenic.zone.minute,
scenic.gate.quarter, scenic.slot.sales) where the question allows, and
never select a column holding personal data (names, ID numbers, phones).

Revenue comes from the ledger (scenic_finance's posted moves, a day after
it ends): `revenue` and `recognised_vs_cash` read account.move.line by
account and date; `cash_received` splits the posted receipts by channel and
method; `cash_from_payments` reads the payment rows (today, not posted yet).
"""
import datetime as dt
from decimal import Decimal
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd

# LB/T 068-2017 warning levels by share of the instantaneous maximum (the
# ERP's scenic_gate.scan.THRESHOLDS; this package must not import Tryton).
THRESHOLDS = [(95, 'red'), (90, 'orange'), (80, 'yellow')]
# A box is offline after 3 missed 60 s heartbeats (scenic_gate.gate).
OFFLINE_AFTER = dt.timedelta(seconds=180)


def warning_level(inside, instant_max):
    if not instant_max:
        return 'none'
    load = inside * 100 / instant_max
    for threshold, level in THRESHOLDS:
        if load >= threshold:
            return level
    return 'none'


def area_timezone(db, company):
    "The area's time zone (company.timezone, Asia/Shanghai if unset)."
    name = db.scalar('SELECT timezone FROM company_company WHERE id = %s',
        (company,))
    return ZoneInfo(name or 'Asia/Shanghai')


def _day_bounds(day, tz):
    "[start, end) of a local day as aware datetimes."
    start = dt.datetime.combine(day, dt.time(), tz)
    return start, start + dt.timedelta(days=1)


def _today(tz, now=None):
    return (now or dt.datetime.now(dt.timezone.utc)).astimezone(tz).date()


# --- Live ----------------------------------------------------------------

def zone_headcount(db, company, day=None):
    """People inside each zone now (today's admitted entries minus exits,
    as the ERP counts them), against its instantaneous maximum.

    Columns: zone, code, name, parent, instant_max, entries, exits,
    inside, load (%), level (none/yellow/orange/red)."""
    tz = area_timezone(db, company)
    day = day or _today(tz)
    frame = db.frame(
        'SELECT z.id AS zone, z.code, z.name, z.parent, z.instant_max, '
        'COALESCE(h.entries, 0) AS entries, COALESCE(h.exits, 0) AS exits '
        'FROM scenic_zone AS z LEFT JOIN scenic_zone_headcount AS h '
        'ON h.zone = z.id AND h.date = %s '
        'WHERE z.company = %s AND z.active ORDER BY z.id', (day, company))
    frame['inside'] = (frame['entries'] - frame['exits']).clip(lower=0)
    frame['load'] = [round(i * 100 / m, 1) if m else np.nan
        for i, m in zip(frame['inside'], frame['instant_max'])]
    frame['level'] = [warning_level(i, m)
        for i, m in zip(frame['inside'], frame['instant_max'])]
    return frame


def area_instant_max(db, company):
    "The area's instantaneous maximum (company, else sum of top zones)."
    value = db.scalar('SELECT scenic_instant_max FROM company_company '
        'WHERE id = %s', (company,))
    if value:
        return value
    return db.scalar('SELECT SUM(instant_max) FROM scenic_zone '
        'WHERE company = %s AND parent IS NULL AND active', (company,)) or 0


def gate_flows(db, company, start, end):
    """Arrivals, exits and refusals per gate per quarter hour in
    [start, end) (aware datetimes), from the scenic.gate.quarter rollup.

    Columns: gate, code, quarter (local), entries, exits, refused."""
    tz = area_timezone(db, company)
    return db.frame(
        'SELECT q.gate, g.code, q.quarter, q.entries, q.exits, q.refused '
        'FROM scenic_gate_quarter AS q JOIN scenic_gate AS g '
        'ON g.id = q.gate WHERE q.company = %s AND q.quarter >= %s '
        'AND q.quarter < %s ORDER BY q.quarter, q.gate',
        (company, start, end), timestamps=['quarter'], tz=tz)


def zone_minutes(db, company, start, end):
    """People in and out of each zone per minute in [start, end), from
    the scenic.zone.minute rollup. Columns: zone, minute (local), entries,
    exits."""
    tz = area_timezone(db, company)
    return db.frame(
        'SELECT zone, minute, entries, exits FROM scenic_zone_minute '
        'WHERE company = %s AND minute >= %s AND minute < %s '
        'ORDER BY minute, zone', (company, start, end),
        timestamps=['minute'], tz=tz)


def box_status(db, company, now=None):
    """The area's enrolled boxes: last heartbeat, how long ago, the lag
    and backlog they reported, and whether they count as offline.

    Columns: box, name, last_heartbeat, silent_s, sync_lag, outbox,
    errors, offline."""
    tz = area_timezone(db, company)
    now = now or dt.datetime.now(dt.timezone.utc)
    frame = db.frame(
        'SELECT id AS box, name, last_heartbeat, sync_lag, outbox, errors '
        "FROM scenic_gate_box WHERE company = %s AND state = 'enrolled' "
        'ORDER BY name', (company,), timestamps=['last_heartbeat'], tz=tz)
    silent = (pd.Timestamp(now) - frame['last_heartbeat']).dt.total_seconds()
    frame['silent_s'] = silent.round()
    frame['offline'] = frame['last_heartbeat'].isna() | (
        silent > OFFLINE_AFTER.total_seconds())
    return frame


# --- Today ---------------------------------------------------------------

def slots_of_day(db, company, day, now=None):
    """Each slot of a day: capacity, tickets booked (slot counter), sold
    (paid, not refunded), persons arrived, and no-shows so far (sold tickets
    of slots that have ended with nobody entered on them).

    Columns: slot, start, end, capacity, booked, sold, arrived, no_show."""
    tz = area_timezone(db, company)
    now = now or dt.datetime.now(dt.timezone.utc)
    slots = db.frame(
        'SELECT id AS slot, start_time, end_time, capacity, booked '
        'FROM scenic_time_slot WHERE company = %s AND date = %s '
        'ORDER BY start_time', (company, day))
    tickets = db.frame(
        'SELECT t.slot, COUNT(*) AS sold, '
        'SUM(CASE WHEN u.entries > 0 THEN t.persons ELSE 0 END) AS arrived, '
        'SUM(CASE WHEN u.entries > 0 THEN 0 ELSE 1 END) AS not_entered '
        'FROM scenic_ticket AS t LEFT JOIN scenic_ticket_usage AS u '
        'ON u.ticket = t.id WHERE t.slot IN (SELECT id FROM scenic_time_slot '
        'WHERE company = %s AND date = %s) '
        "AND t.state IN ('valid', 'used', 'expired') GROUP BY t.slot",
        (company, day))
    frame = slots.merge(tickets, on='slot', how='left').fillna(
        {'sold': 0, 'arrived': 0, 'not_entered': 0})
    frame['start'] = [_at(day, t, tz) for t in frame['start_time']]
    frame['end'] = [_at(day, t, tz) for t in frame['end_time']]
    now = pd.Timestamp(now)
    ended = np.array([e <= now for e in frame['end']], dtype=bool)
    frame['no_show'] = np.where(ended, frame['not_entered'], 0)
    for column in ['sold', 'arrived', 'no_show']:
        frame[column] = frame[column].astype(int)
    return frame[['slot', 'start', 'end', 'capacity', 'booked', 'sold',
            'arrived', 'no_show']]


def _at(day, value, tz):
    if isinstance(value, str):
        value = dt.time.fromisoformat(value)
    elif isinstance(value, dt.timedelta):  # some drivers
        value = (dt.datetime.min + value).time()
    return pd.Timestamp(dt.datetime.combine(day, value, tz))


def sales_of_day(db, company, day):
    """Tickets sold for a visit day by channel and ticket type, from the
    scenic.slot.sales rollup (refreshed every minute).

    Columns: channel, channel_kind, ticket_type, tickets, persons, amount,
    refunded, refunded_amount."""
    frame = db.frame(
        'SELECT c.name AS channel, c.kind AS channel_kind, '
        'tt.code AS ticket_type, SUM(s.tickets) AS tickets, '
        'SUM(s.persons) AS persons, SUM(s.amount) AS amount, '
        'SUM(s.refunded) AS refunded, '
        'SUM(s.refunded_amount) AS refunded_amount '
        'FROM scenic_slot_sales AS s '
        'JOIN scenic_channel AS c ON c.id = s.channel '
        'JOIN scenic_ticket_type AS tt ON tt.id = s.ticket_type '
        'WHERE s.company = %s AND s.date = %s '
        'GROUP BY c.name, c.kind, tt.code ORDER BY c.name, tt.code',
        (company, day))
    return _money(frame, ['amount', 'refunded_amount'])


def _money(frame, columns):
    for column in columns:
        frame[column] = [Decimal(str(v)).quantize(Decimal('0.01'))
            if v is not None else Decimal('0.00') for v in frame[column]]
    return frame


# --- Revenue -------------------------------------------------------------

def _ledger_accounts(db, company):
    """The area's revenue accounts (main and other: 5001 and 5051 in the
    demo chart) from its posting rule, as a list of account ids."""
    rows = db.frame(
        'SELECT revenue_account, other_revenue_account '
        'FROM scenic_finance_rule WHERE company = %s', (company,))
    return sorted({int(v) for v in rows.values.ravel() if v == v})


def _in(ids):
    "An SQL IN list of integer ids (never empty)."
    return '(' + ', '.join(str(int(i)) for i in ids or [-1]) + ')'


def ledger_totals(db, company, start, end):
    """Posted move lines summed per move date and account in the dates
    [start, end]: the ledger as it stands (account.move.line).

    Columns: day, account (code), debit, credit (Decimal)."""
    frame = db.frame(
        'SELECT m.date AS day, a.code AS account, SUM(l.debit) AS debit, '
        'SUM(l.credit) AS credit FROM account_move_line AS l '
        'JOIN account_move AS m ON m.id = l.move '
        'JOIN account_account AS a ON a.id = l.account '
        "WHERE m.company = %s AND m.state = 'posted' AND m.date >= %s "
        'AND m.date <= %s GROUP BY m.date, a.code ORDER BY m.date, a.code',
        (company, start, end), dates=['day'])
    return _money(frame, ['debit', 'credit'])


def revenue(db, company, start, end):
    """Revenue recognised in the ledger per day of [start, end] (the posted
    moves' date), channel and ticket type, net of VAT: the credits less
    debits of the posting rule's revenue accounts (5001 主营业务收入 and
    5051 其他业务收入). Recognition moves are split by the ticket type and
    channel of their scenic.finance.recognition rows; revenue lines of
    refund moves (a fee kept, or money given back beyond the deferral)
    have source 'refunds', and those of other posted moves (a partner
    invoice's no-show allowance, a manual entry) source 'adjustments',
    both with channel / ticket type '-'. The column `revenue` sums to the
    ledger's figure for these accounts (ledger_totals).

    Columns: day, channel, ticket_type, source, revenue (Decimal)."""
    accounts = _in(_ledger_accounts(db, company))
    columns = ['day', 'channel', 'ticket_type', 'source', 'revenue']
    earned = db.frame(
        'SELECT m.date AS day, c.name AS channel, tt.code AS ticket_type, '
        'SUM(r.amount) AS revenue FROM scenic_finance_recognition AS r '
        'JOIN scenic_finance_batch AS b ON b.id = r.batch '
        "JOIN account_move AS m ON m.id = b.move AND m.state = 'posted' "
        'JOIN scenic_ticket_type AS tt ON tt.id = r.ticket_type '
        'JOIN scenic_channel AS c ON c.id = r.channel '
        'WHERE m.company = %s AND m.date >= %s AND m.date <= %s '
        'GROUP BY m.date, c.name, tt.code', (company, start, end),
        dates=['day'])
    earned['source'] = 'recognition'
    other = db.frame(
        'SELECT m.date AS day, SUM(l.credit) - SUM(l.debit) AS revenue '
        'FROM account_move_line AS l '
        'JOIN account_move AS m ON m.id = l.move '
        "JOIN scenic_finance_batch AS b ON b.move = m.id "
        "AND b.kind <> 'recognition' "
        f"WHERE m.company = %s AND m.state = 'posted' AND l.account IN "
        f'{accounts} AND m.date >= %s AND m.date <= %s GROUP BY m.date',
        (company, start, end), dates=['day'])
    other['channel'] = other['ticket_type'] = '-'
    other['source'] = 'refunds'
    adjusted = db.frame(
        'SELECT m.date AS day, SUM(l.credit) - SUM(l.debit) AS revenue '
        'FROM account_move_line AS l '
        'JOIN account_move AS m ON m.id = l.move '
        f"WHERE m.company = %s AND m.state = 'posted' AND l.account IN "
        f'{accounts} AND m.date >= %s AND m.date <= %s AND NOT EXISTS ('
        'SELECT 1 FROM scenic_finance_batch AS b WHERE b.move = m.id) '
        'GROUP BY m.date', (company, start, end), dates=['day'])
    adjusted['channel'] = adjusted['ticket_type'] = '-'
    adjusted['source'] = 'adjustments'
    parts = [f[columns] for f in [earned, other, adjusted] if not f.empty]
    if not parts:
        return pd.DataFrame(columns=columns)
    frame = pd.concat(parts)
    frame = _money(frame.reset_index(drop=True), ['revenue'])
    frame = frame[frame['revenue'] != 0]
    return frame.sort_values(['day', 'source', 'channel', 'ticket_type'],
        ignore_index=True)


def cash_received(db, company, start, end):
    """Cash received as the ledger has it, per day of [start, end] (the
    receipt and refund moves' date: a payment recorded after its day was
    posted counts on the day that posted it, as in the ledger), channel
    and payment method. Split by the daily settlement's money rows
    (scenic.finance.day.line: the payments each posted day's batches
    carry, per channel and method), which sum to the moves' lines on the
    methods' accounts (1001, 101201 …). Days not yet posted (today) are
    not in it: cash_from_payments has them.

    Columns: day, channel, provider, payments, refunds, net (Decimal)."""
    parts = []
    for kind, column, batch in [('payment', 'money_in', 'receipts'),
            ('refund', 'money_out', 'refunds')]:
        parts.append(
            'SELECT m.date AS day, c.name AS channel, l.method AS provider, '
            f"'{kind}' AS kind, SUM(l.{column}) AS amount "
            'FROM scenic_finance_day_line AS l '
            'JOIN scenic_finance_batch AS b ON b.day = l.day '
            f"AND b.kind = '{batch}' "
            "JOIN account_move AS m ON m.id = b.move AND m.state = 'posted' "
            'JOIN scenic_channel AS c ON c.id = l.channel '
            'WHERE m.company = %s AND m.date >= %s AND m.date <= %s '
            f'AND l.method IS NOT NULL AND l.{column} <> 0 '
            'GROUP BY m.date, c.name, l.method')
    rows = db.frame(' UNION ALL '.join(parts),
        (company, start, end) * 2, dates=['day'])
    return _cash_frame(_money(rows, ['amount']))


def _cash_frame(rows):
    "payments / refunds / net per day, channel and provider from rows."
    columns = ['day', 'channel', 'provider', 'payments', 'refunds', 'net']
    if rows.empty:
        return pd.DataFrame(columns=columns)
    rows['payments'] = [a if k == 'payment' else Decimal(0)
        for a, k in zip(rows['amount'], rows['kind'])]
    rows['refunds'] = [a if k == 'refund' else Decimal(0)
        for a, k in zip(rows['amount'], rows['kind'])]
    frame = rows.groupby(['day', 'channel', 'provider'], as_index=False)[
        ['payments', 'refunds']].agg(lambda s: sum(s, Decimal(0)))
    frame['net'] = frame['payments'] - frame['refunds']
    return frame[columns]


def cash_from_payments(db, company, start, end):
    """Cash received per local day of the payment, channel and payment
    method in the dates [start, end], from the payment rows themselves
    (posted or not: today's cash before the ledger has it).

    Columns: day, channel, provider, payments, refunds, net (Decimal)."""
    tz = area_timezone(db, company)
    lo, _ = _day_bounds(start, tz)
    _, hi = _day_bounds(end, tz)
    rows = db.frame(
        'SELECT p.date AS at, p.kind, p.provider, p.amount, '
        'c.name AS channel FROM scenic_payment AS p '
        'JOIN scenic_order AS o ON o.id = p."order" '
        'JOIN scenic_channel AS c ON c.id = o.channel '
        'WHERE p.company = %s AND p.date >= %s AND p.date < %s',
        (company, lo, hi), timestamps=['at'], tz=tz)
    if rows.empty:
        return _cash_frame(rows)
    rows['day'] = rows['at'].dt.date
    rows['amount'] = [Decimal(str(v)) for v in rows['amount']]
    return _cash_frame(rows)


def revenue_by_ticket_type(db, company, start, end):
    """Value of the tickets sold for visit dates [start, end], by ticket
    type and channel (unit prices of tickets still valid or used).

    Columns: ticket_type, channel, tickets, amount."""
    frame = db.frame(
        'SELECT tt.code AS ticket_type, c.name AS channel, '
        'SUM(s.tickets) AS tickets, SUM(s.amount) AS amount '
        'FROM scenic_slot_sales AS s '
        'JOIN scenic_ticket_type AS tt ON tt.id = s.ticket_type '
        'JOIN scenic_channel AS c ON c.id = s.channel '
        'WHERE s.company = %s AND s.date >= %s AND s.date <= %s '
        'GROUP BY tt.code, c.name ORDER BY tt.code, c.name',
        (company, start, end))
    return _money(frame, ['amount'])


# --- Analysts' questions --------------------------------------------------

def day_types(db, company, start, end):
    """Each date in [start, end] as 'holiday', 'weekend' or 'weekday'
    (scenic.calendar.day holidays first). Columns: day, day_type."""
    holidays = set(db.frame(
        "SELECT date FROM scenic_calendar_day WHERE company = %s "
        "AND kind = 'holiday' AND date >= %s AND date <= %s",
        (company, start, end), dates=['date'])['date'])
    days = [start + dt.timedelta(days=i)
        for i in range((end - start).days + 1)]
    return pd.DataFrame({'day': days, 'day_type': [
                'holiday' if d in holidays
                else 'weekend' if d.weekday() >= 5 else 'weekday'
                for d in days]})


def arrival_curve(db, company, start, end, zone=None):
    """Average arrivals per quarter hour of the day by day type, over the
    dates [start, end], from the zone minute rollup (top-level zones, or
    `zone`). Columns: day_type, time (HH:MM), arrivals (mean persons per
    day of that type)."""
    tz = area_timezone(db, company)
    lo, _ = _day_bounds(start, tz)
    _, hi = _day_bounds(end, tz)
    if zone is None:
        where, params = ('m.zone IN (SELECT id FROM scenic_zone '
            'WHERE company = %s AND parent IS NULL)'), [company]
    else:
        where, params = 'm.zone = %s', [zone]
    minutes = db.frame(
        'SELECT m.minute, m.entries FROM scenic_zone_minute AS m '
        f'WHERE m.company = %s AND {where} AND m.minute >= %s '
        'AND m.minute < %s', (company, *params, lo, hi),
        timestamps=['minute'], tz=tz)
    types = day_types(db, company, start, end)
    counts = types.groupby('day_type').size()
    if minutes.empty:
        return pd.DataFrame(columns=['day_type', 'time', 'arrivals'])
    minutes['day'] = minutes['minute'].dt.date
    minutes['time'] = minutes['minute'].dt.floor('15min').dt.strftime(
        '%H:%M')
    minutes = minutes.merge(types, on='day')
    frame = minutes.groupby(['day_type', 'time'], as_index=False)[
        'entries'].sum()
    frame['arrivals'] = frame['entries'] / frame['day_type'].map(counts)
    return frame[['day_type', 'time', 'arrivals']]


def dwell_times(db, company, start, end):
    """Dwell times of the visits that entered on [start, end], as a
    histogram counted in the database (one row per visit would be ~8,000 a
    day at a busy area): visits per entry day and whole minute between a
    ticket's last entry and its last exit (tickets that left after
    entering). `dwell_quantile` reads percentiles from it.

    Columns: day, day_type, minutes (whole minutes, rounded down),
    visits."""
    tz = area_timezone(db, company)
    lo, _ = _day_bounds(start, tz)
    _, hi = _day_bounds(end, tz)
    day = db.local_date('last_entry', tz)
    minutes = f"{db.seconds_between('last_entry', 'last_exit')} / 60"
    frame = db.frame(
        f'SELECT {day} AS day, {minutes} AS minutes, COUNT(*) AS visits '
        'FROM scenic_ticket_usage WHERE company = %s AND ticket IS NOT NULL '
        'AND last_entry >= %s AND last_entry < %s '
        f'AND last_exit > last_entry GROUP BY {day}, {minutes}',
        (company, lo, hi), dates=['day'])
    columns = ['day', 'day_type', 'minutes', 'visits']
    if frame.empty:
        return pd.DataFrame(columns=columns)
    frame['minutes'] = frame['minutes'].astype(int)
    frame['visits'] = frame['visits'].astype(int)
    frame = frame.merge(day_types(db, company, start, end), on='day',
        how='left')
    return frame.sort_values(['day', 'minutes'], ignore_index=True)[columns]


def dwell_quantile(dwell, q=0.5, by='day_type'):
    """The q-quantile of the dwell minutes in a `dwell_times` histogram,
    per `by` group (the smallest minute with at least q of the visits at
    or below it). Returns a Series indexed by the group."""
    frame = dwell.sort_values([by, 'minutes'])
    cumulative = frame.groupby(by)['visits'].cumsum()
    totals = frame.groupby(by)['visits'].transform('sum')
    reached = frame[cumulative >= q * totals]
    return reached.groupby(by)['minutes'].first().astype(float)


LEAD_BINS = [-1, 0, 1, 3, 7, 30, 10_000]
LEAD_LABELS = ['same day', '1 day', '2-3 days', '4-7 days', '8-30 days',
    '> 30 days']


def no_shows(db, company, start, end):
    """Sold tickets of visit dates [start, end] (ended days) and whether
    anybody entered on them, with channel and booking lead time.

    Columns: channel, lead_days, lead (bucket label), tickets, no_shows,
    rate."""
    tz = area_timezone(db, company)
    booked = db.local_date('o.create_date', tz)
    # Counted in the database by channel, visit day and local booking day
    # (a few thousand groups instead of a row per ticket).
    frame = db.frame(
        'SELECT c.name AS channel, t.visit_date AS visit, '
        f'{booked} AS booked, COUNT(*) AS tickets, '
        'SUM(CASE WHEN u.entries > 0 THEN 0 ELSE 1 END) AS no_shows '
        'FROM scenic_ticket AS t JOIN scenic_order AS o ON o.id = t."order" '
        'JOIN scenic_channel AS c ON c.id = o.channel '
        'LEFT JOIN scenic_ticket_usage AS u ON u.ticket = t.id '
        "WHERE t.company = %s AND t.state IN ('valid', 'used', 'expired') "
        'AND o.paid_at IS NOT NULL AND t.visit_date >= %s '
        f'AND t.visit_date <= %s GROUP BY c.name, t.visit_date, {booked}',
        (company, start, end), dates=['visit', 'booked'])
    columns = ['channel', 'lead', 'tickets', 'no_shows', 'rate']
    if frame.empty:
        return pd.DataFrame(columns=columns)
    frame['lead_days'] = (pd.to_datetime(frame['visit'])
        - pd.to_datetime(frame['booked'])).dt.days
    frame['lead'] = pd.cut(frame['lead_days'], LEAD_BINS,
        labels=LEAD_LABELS).astype(str)
    result = frame.groupby(['channel', 'lead'], as_index=False).agg(
        tickets=('tickets', 'sum'), no_shows=('no_shows', 'sum'))
    result['tickets'] = result['tickets'].astype(int)
    result['no_shows'] = result['no_shows'].astype(int)
    result['rate'] = result['no_shows'] / result['tickets']
    return result[columns]


def demand_pricing(db, company, start, end):
    """Per slot of the dates [start, end]: fill ratio, the average unit
    price paid against the ticket types' base price (uplift %), and when
    the slot sold out (hours before its start; NaN if it did not).

    Prices come from the slot sales rollup (scenic.slot.sales: sold
    tickets and their amount by channel and type); the last sale's time is
    read from the tickets of the sold-out slots only.

    Columns: slot, date, capacity, booked, fill, avg_price, base_price,
    uplift_pct, sold_out_hours_before."""
    tz = area_timezone(db, company)
    frame = db.frame(
        'SELECT s.id AS slot, s.date, s.start_time, s.capacity, s.booked, '
        'SUM(ss.amount) AS amount, '
        'SUM(ss.tickets * tt.base_price) AS base_amount, '
        'SUM(ss.tickets) AS tickets '
        'FROM scenic_time_slot AS s '
        'JOIN scenic_slot_sales AS ss ON ss.slot = s.id '
        'JOIN scenic_ticket_type AS tt ON tt.id = ss.ticket_type '
        'WHERE s.company = %s AND s.date >= %s AND s.date <= %s '
        'GROUP BY s.id, s.date, s.start_time, s.capacity, s.booked '
        'HAVING SUM(ss.tickets) > 0 ORDER BY s.id',
        (company, start, end), dates=['date'])
    columns = ['slot', 'date', 'capacity', 'booked', 'fill', 'avg_price',
        'base_price', 'uplift_pct', 'sold_out_hours_before']
    if frame.empty:
        return pd.DataFrame(columns=columns)
    tickets = frame['tickets'].astype(float)
    frame['avg_price'] = frame['amount'].astype(float) / tickets
    frame['base_price'] = frame['base_amount'].astype(float) / tickets
    frame['fill'] = frame['booked'] / frame['capacity']
    frame['uplift_pct'] = ((frame['avg_price'] / frame['base_price'] - 1)
        * 100).round(1)
    full = [int(s) for s in frame.loc[frame['fill'] >= 1, 'slot']]
    last = {}
    for i in range(0, len(full), 1000):
        chunk = full[i:i + 1000]
        sales = db.frame(
            'SELECT t.slot, MAX(o.create_date) AS last_sale '
            'FROM scenic_ticket AS t '
            'JOIN scenic_order AS o ON o.id = t."order" '
            f"WHERE t.slot IN ({', '.join(['%s'] * len(chunk))}) "
            "AND t.state IN ('valid', 'used', 'expired') GROUP BY t.slot",
            chunk, timestamps=['last_sale'], tz=tz)
        last.update(zip(sales['slot'], sales['last_sale']))
    hours = []
    for slot, day, time, fill in zip(frame['slot'], frame['date'],
            frame['start_time'], frame['fill']):
        sale = last.get(slot) if fill >= 1 else None
        hours.append((_at(day, time, tz) - sale).total_seconds() / 3600
            if sale is not None else np.nan)
    frame['sold_out_hours_before'] = hours
    return frame[columns]


def channel_mix(db, company, start, end):
    """Tickets and value sold per channel for visit dates [start, end],
    with each channel's share. OTA commission is not recorded by the ERP
    yet (issue #11's allotments will): the column is the gross value.

    Columns: channel, kind, tickets, amount, share."""
    frame = db.frame(
        'SELECT c.name AS channel, c.kind, SUM(s.tickets) AS tickets, '
        'SUM(s.amount) AS amount FROM scenic_slot_sales AS s '
        'JOIN scenic_channel AS c ON c.id = s.channel '
        'WHERE s.company = %s AND s.date >= %s AND s.date <= %s '
        'GROUP BY c.name, c.kind ORDER BY c.name', (company, start, end))
    frame = _money(frame, ['amount'])
    total = frame['tickets'].sum()
    frame['share'] = frame['tickets'] / total if total else 0.0
    return frame


def recognised_vs_cash(db, company, start, end):
    """Per day of [start, end], from the posted ledger: revenue recognised
    (credits less debits of the revenue accounts 5001 and 5051, net of
    VAT: tickets earn at use, per entry, day by day for cards, or at
    expiry) against cash received (the receipt and refund moves' lines on
    the payment methods' accounts, VAT included).

    Columns: day, recognised, cash (Decimal)."""
    accounts = _in(_ledger_accounts(db, company))
    recognised = db.frame(
        'SELECT m.date AS day, SUM(l.credit) - SUM(l.debit) AS recognised '
        'FROM account_move_line AS l JOIN account_move AS m '
        "ON m.id = l.move WHERE m.company = %s AND m.state = 'posted' "
        f'AND l.account IN {accounts} AND m.date >= %s AND m.date <= %s '
        'GROUP BY m.date', (company, start, end), dates=['day'])
    cash = db.frame(
        'SELECT m.date AS day, SUM(l.debit) - SUM(l.credit) AS cash '
        'FROM account_move_line AS l JOIN account_move AS m '
        'ON m.id = l.move JOIN scenic_finance_batch AS b ON b.move = m.id '
        "AND b.kind IN ('receipts', 'refunds') "
        'WHERE l.account IN (SELECT rm.account '
        'FROM scenic_finance_rule_method AS rm JOIN scenic_finance_rule '
        'AS rule ON rule.id = rm.rule WHERE rule.company = %s) '
        "AND m.company = %s AND m.state = 'posted' AND m.date >= %s "
        'AND m.date <= %s GROUP BY m.date',
        (company, company, start, end), dates=['day'])
    days = pd.DataFrame({'day': [start + dt.timedelta(days=i)
                for i in range((end - start).days + 1)]})
    frame = days.merge(recognised, on='day', how='left').merge(
        cash, on='day', how='left')
    return _money(frame.astype(object).where(frame.notna(), None),
        ['recognised', 'cash'])


def forecast_arrivals(db, company, day, history_days=28):
    """Tomorrow's (or `day`'s) expected arrivals: the tickets sold for it
    per channel times that channel's show-up rate over the previous
    `history_days` ended days, plus nothing for walk-ups (they buy at the
    box office and are in the sold figures once sold).

    Columns: channel, sold_persons, show_rate, expected."""
    history = no_shows(db, company, day - dt.timedelta(days=history_days),
        day - dt.timedelta(days=1))
    if history.empty:
        rates = pd.Series(dtype=float)
    else:
        by_channel = history.groupby('channel')[['tickets', 'no_shows']].sum()
        rates = 1 - by_channel['no_shows'] / by_channel['tickets']
    sold = db.frame(
        'SELECT c.name AS channel, SUM(s.persons) AS sold_persons '
        'FROM scenic_slot_sales AS s JOIN scenic_channel AS c '
        'ON c.id = s.channel WHERE s.company = %s AND s.date = %s '
        'GROUP BY c.name ORDER BY c.name', (company, day))
    overall = (float(1 - history['no_shows'].sum() / history['tickets'].sum())
        if not history.empty and history['tickets'].sum() else 1.0)
    sold['show_rate'] = [float(rates.get(c, overall)) for c in sold['channel']]
    sold['expected'] = sold['sold_persons'] * sold['show_rate']
    return sold


# --- for the notebooks -----------------------------------------------------

def first_company(db):
    "The id of the database's first area (company)."
    return db.scalar('SELECT MIN(id) FROM company_company')


def ledger_period(db, company, days, end=None):
    """(start, end) dates of the last `days` days of the posted ledger:
    `end` defaults to the latest posted move's date (the ledger posts a
    day once it has ended)."""
    if end is None:
        last = db.scalar("SELECT MAX(date) FROM account_move WHERE "
            "company = %s AND state = 'posted'", (company,))
        if last is None:
            raise LookupError("nothing posted in the ledger yet: post the "
                "ended days first (scenic_finance's Post Days)")
        end = last if isinstance(last, dt.date) else \
            dt.date.fromisoformat(str(last))
    return end - dt.timedelta(days=days - 1), end


def history_period(db, company, days, end=None, now=None):
    """(start, end) dates of the last `days` days with ended visits: `end`
    defaults to the last date before today with both sales and arrivals
    (the zones' daily headcount), so that days with bookings but no gate
    history (sales entered without scans) do not end the period."""
    tz = area_timezone(db, company)
    today = _today(tz, now)
    if end is None:
        last = db.scalar('SELECT MAX(s.date) FROM scenic_slot_sales AS s '
            'JOIN scenic_zone_headcount AS h ON h.company = s.company '
            'AND h.date = s.date AND h.entries > 0 '
            'WHERE s.company = %s AND s.date < %s', (company, today))
        if last is None:
            raise LookupError("no sales before today: load a history first "
                "(scripts/simulate_history.py)")
        end = last if isinstance(last, dt.date) else \
            dt.date.fromisoformat(str(last))
    return end - dt.timedelta(days=days - 1), end
