#!/usr/bin/env python3
"""Box sync: bringing a fresh gate box up to date, and uploading its scans.

    python bench/box_sync.py [--quick] [--tickets N] [--scans N]
        [--repeats N] [--seed N]

Everything runs on this machine and is thrown away afterwards: a PostgreSQL
cluster (scripts/pgcluster.py) with durable commits, database `boxsync`
initialised with trytond-admin and scripts/load_demo.py (its gates
MAIN-IN and MAIN-OUT), and gunicorn serving `trytond.application:app` on a free port
of 127.0.0.1.  The area then gets, through set-based SQL, N tickets and
cards as the booking path and the back office make them (default 100 000:
95 % real-name tickets of today and tomorrow with codes signed by the
area's own key, 5 % cards; plus multi-entry usage and refunded tickets).

Measured against the real ERP over HTTP (PROTOCOL.md), with the real box
(`scenic_iotbox`: Store, ErpClient, SyncEngine, Validator):

1. full sync of a fresh box: enrolment with a one-time token, then one
   `GET /sync` applied to an empty store, until the store holds every
   ticket, card and key the ERP has (counts checked);
2. incremental sync after new tickets booked through the booking API;
3. upload of the box's outbox (10 000 scans decided by the box's
   validator): `POST /scans` rounds until the outbox is empty; the ERP must
   hold each scan once, and the same batches sent again must come back as
   duplicates.

stdout gets one JSON line per measurement and a summary line; a short
human summary goes to stderr.  Exit status: 1 when a count does not match
(the store against the ERP, scans stored, duplicates, conflicts), 2 when
the benchmark could not run, 130 when interrupted; missed timing targets
do not fail the run.  See bench/README.md.
"""
import argparse
import contextlib
import datetime as dt
import gzip
import http.client
import json
import os
import random
import signal
import sys
import tempfile
import time
import uuid
from collections import Counter
from decimal import Decimal
from pathlib import Path
from zoneinfo import ZoneInfo

import _measure  # noqa: E402  (bench/_measure.py, standard library only)
from _measure import BenchError, percentile  # noqa: E402

ROOT = _measure.ROOT
_measure.ensure_venv('psycopg', 'scenic_common', 'scenic_iotbox')
from scenic_common import idnumber, ticketcode  # noqa: E402
from scenic_iotbox import sync as box_sync  # noqa: E402
from scenic_iotbox.store import Store  # noqa: E402
from scenic_iotbox.validator import ScanRequest, Validator  # noqa: E402

sys.path.insert(0, str(ROOT / 'scripts'))
from pgcluster import throwaway_cluster  # noqa: E402

DATABASE = 'boxsync'
PII_KEY = 'bench-only-key-boxsync-0123456789abcdef01234567'
API_KEY = 'demo-web-key'  # scripts/load_demo.py DEMO_WEB_KEY
BOOKING = f'/{DATABASE}/scenic/v1'
TARGETS_S = {'full_sync': 5.0, 'upload': 2.0}
PG_SETTINGS = dict(_measure.DURABLE_PG_SETTINGS)

# Timeouts (seconds) of each phase, so that the run always ends by itself.
TIMEOUT_ADMIN = 300
TIMEOUT_LOAD_DEMO = 900
TIMEOUT_DATA = 400
TIMEOUT_HTTP = 120
TIMEOUT_TOTAL = 2400

# The bench's data (shares of the tickets and cards asked for).
CARD_SHARE = 0.05
# Real-name ticket types of the demo and their shares; REENTRY2 is the
# multi-entry one (4 entries over 2 days), some of them used already.
TICKET_MIX = [('ADULT', 60), ('CHILD', 10), ('SENIOR', 8), ('STUDENT', 7),
    ('COMBO', 5), ('REENTRY2', 10)]
CARD_MIX = [('ANNUAL', 60), ('COUNT10', 40)]
REVOKED_SHARE = 0.005           # refunded orders: codes revoked
REENTRY_USED_SHARE = 0.4        # REENTRY2 tickets of today with entries
CARD_USED_SHARE = 0.3           # cards with usage
CARD_INACTIVE_SHARE = 0.03      # suspended or lost
# An area of the Palace Museum's size: the demo's maxima (10 080 a day,
# 5 600 at once) would turn the bench's admissions into capacity_full.
ZONE_INSTANT_MAX = 100_000
SURNAMES = '王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗'
GIVEN = ['伟', '芳', '娜', '敏', '静', '丽', '强', '磊', '军', '洋', '勇',
    '艳', '杰', '娟', '涛', '明', '超', '秀英', '霞', '平', '刚', '桂英']
# Resident IDs of the bench: area code and first birth date, distinct from
# the demo's visitors; the incremental bookings use another range.
ID_AREA, ID_BIRTH = '110108', dt.date(1930, 1, 1)
NEW_ID_AREA, NEW_ID_BIRTH = '310115', dt.date(1931, 6, 1)
UTC = dt.timezone.utc


def log(message):
    print(f"box-sync: {message}", file=sys.stderr, flush=True)


def _alarm(signum, frame):
    raise BenchError("the run took longer than its time limit")


def bench_id(index, area=ID_AREA, birth=ID_BIRTH):
    "The resident ID number of the bench's visitor `index` (GB 11643)."
    return idnumber.make_resident_id(
        area, birth + dt.timedelta(days=index // 999), index % 999 + 1)


def visitor_name(rng):
    return rng.choice(SURNAMES) + rng.choice(GIVEN)


def _naive(value):
    return value.astimezone(UTC).replace(tzinfo=None)


# =============================================================================
# ERP side: the data, written inside Tryton by a child process
# =============================================================================

_SIGNER = None


def _sign_chunk(rows):
    """Codes of (ticket id, area, type, valid from, valid until, persons,
    entries, holder hash hex) rows, with the signer the parent process held
    when it forked."""
    signer = _SIGNER
    codes = []
    for (ticket_id, area, type_id, valid_from, valid_until, persons,
            entries, holder) in rows:
        codes.append(ticketcode.encode(ticketcode.TicketPayload(
                    ticket_id=ticket_id, area_id=area,
                    ticket_type_id=type_id,
                    valid_from=dt.datetime.fromtimestamp(valid_from, UTC),
                    valid_until=dt.datetime.fromtimestamp(valid_until, UTC),
                    persons=persons, entries=entries,
                    key_id=signer.key_id,
                    holder_hash=bytes.fromhex(holder)[:8] if holder
                    else b''), signer))
    return codes


def sign_all(signer, rows, processes):
    """Each ticket its own code, signed on every core (fork: the key never
    leaves memory)."""
    import multiprocessing
    global _SIGNER
    _SIGNER = signer
    if processes <= 1 or len(rows) < 2000:
        return _sign_chunk(rows)
    size = max(1000, len(rows) // (processes * 8))
    chunks = [rows[i:i + size] for i in range(0, len(rows), size)]
    with multiprocessing.get_context('fork').Pool(processes) as pool:
        return [code for part in pool.map(_sign_chunk, chunks)
            for code in part]


def _copy(cursor, table, columns, rows):
    "COPY rows into a table (what a bulk load of the ORM's rows does)."
    names = ', '.join(f'"{c}"' for c in columns)
    with cursor.copy(f'COPY "{table}" ({names}) FROM STDIN') as copy:
        for row in rows:
            copy.write_row(row)


def _ids(cursor, table, count):
    "Reserve `count` ids of a table's sequence."
    cursor.execute(f"SELECT nextval('{table}_id_seq') "
        "FROM generate_series(1, %s)", (count,))
    return [r[0] for r in cursor.fetchall()]


def erp_fill_hashes(conf, database):
    """What the cron does within a minute of new sales: derive the missing
    gate hashes (scenic.gate.hash.fill); returns count and CPU."""
    from trytond import config as tconfig
    tconfig.update_etc(str(conf))
    from trytond.pool import Pool
    from trytond.transaction import Transaction
    Pool.start()
    pool = Pool(database)
    pool.init()
    with Transaction().start(database, 0) as transaction:
        t0, cpu0 = time.monotonic(), time.process_time()
        derived = pool.get('scenic.gate.hash').fill()
        transaction.commit()
        cpu = time.process_time() - cpu0
    return {'holders': derived, 'wall_s': round(time.monotonic() - t0, 2),
        'cpu_s': round(cpu, 2), 'cpu_ms_per_holder': round(
            1000 * cpu / derived, 1) if derived else None}


def erp_setup(conf, params):
    """Fill the demo area of `params['database']` with the bench's tickets
    and cards, create the boxes and their enrolment tokens; returns what the
    bench needs (tokens, ids, the scan material)."""
    from trytond import config as tconfig
    tconfig.update_etc(str(conf))
    from trytond.pool import Pool
    from trytond.transaction import Transaction
    database = params['database']
    rng = random.Random(params['seed'])
    started = time.monotonic()
    Pool.start()
    pool = Pool(database)
    pool.init()
    timings = {}
    with Transaction().start(database, 0) as transaction:
        Company = pool.get('company.company')
        company, = Company.search([], order=[('id', 'ASC')], limit=1)
        with transaction.set_context(company=company.id,
                companies=[company.id]):
            result = _fill(pool, transaction, company, params, rng, timings)
        transaction.commit()
    timings['total_s'] = round(time.monotonic() - started, 2)
    result['timings'] = timings
    return result


def _fill(pool, transaction, company, params, rng, timings):
    from scenic_ticket.reservation import new_reference
    from scenic_ticket.slot import area_timezone
    from scenic_ticket.vault import pii_vault
    SigningKey = pool.get('scenic.signing_key')
    TicketType = pool.get('scenic.ticket.type')
    Gate = pool.get('scenic.gate')
    Box = pool.get('scenic.gate.box')
    Zone = pool.get('scenic.zone')
    Channel = pool.get('scenic.channel')
    cursor = transaction.connection.cursor()
    cid = company.id
    tz = area_timezone(company)
    now = dt.datetime.now(UTC)
    today = now.astimezone(tz).date()
    days = [today, today + dt.timedelta(days=1)]
    vault = pii_vault()
    total = params['tickets']
    n_cards = int(total * CARD_SHARE)
    n_tickets = total - n_cards

    # -- configuration: key, rule, gates, zone maximum, boxes ---------------
    signer = SigningKey.active_signer(company)
    main, = Zone.search([('company', '=', cid), ('code', '=', 'MAIN')])
    # The demo's main gate (scripts/load_demo.py GATES); it gave the area
    # its default rule.
    gates = {g.code: g for g in Gate.search([('company', '=', cid),
                ('code', 'in', ['MAIN-IN', 'MAIN-OUT'])])}
    if len(gates) != 2:
        raise BenchError("the demo has no MAIN-IN and MAIN-OUT gates: "
            "scripts/load_demo.py makes them")
    boxes = Box.create([{'company': cid, 'name': f"Bench box {i + 1}"}
            for i in range(params['boxes'])])
    tokens = [box.new_enrolment_token()[0] for box in boxes]
    cursor.execute('UPDATE scenic_zone SET instant_max = %s WHERE id = %s',
        (ZONE_INSTANT_MAX, main.id))
    # The area was configured before the day: nothing of it belongs in an
    # incremental sync of the run.
    before = _naive(now - dt.timedelta(hours=2))
    for table in ['scenic_signing_key', 'scenic_gate_rule', 'scenic_gate',
            'scenic_zone', 'scenic_zone_headcount']:
        cursor.execute(f'UPDATE "{table}" SET create_date = LEAST('
            'create_date, %s), write_date = CASE WHEN write_date IS NULL '
            'THEN NULL ELSE LEAST(write_date, %s) END WHERE company = %s',
            (before, before, cid))

    # -- what is sold: types, slots, channel ---------------------------------
    types = {t.code: t for t in TicketType.search([('company', '=', cid)])}
    channel, = Channel.search([('company', '=', cid), ('code', '=', 'web')])
    slots = {}
    cursor.execute('SELECT id, date, start_time, end_time FROM '
        'scenic_time_slot WHERE company = %s AND zone IS NULL AND date = '
        'ANY(%s) ORDER BY date, start_time', (cid, days))
    for slot_id, date, start, end in cursor.fetchall():
        slots.setdefault(date, []).append((slot_id,
                dt.datetime.combine(date, start, tz),
                dt.datetime.combine(date, end, tz)))
    if len(slots) < 2:
        raise BenchError(f"the demo has no slots on {days}")

    # -- visitors: one per ticket, and the cards' holders --------------------
    t0 = time.monotonic()
    n_visitors = n_tickets + n_cards
    visitor_ids = _ids(cursor, 'scenic_visitor', n_visitors)
    visitors = []           # (id, hash, masked)
    visitor_rows = []
    for index, visitor_id in enumerate(visitor_ids):
        number = bench_id(index)
        id_hash = vault.lookup_hash('resident_id', number)
        masked = idnumber.mask(number)
        created = _naive(now - dt.timedelta(
                days=rng.uniform(0.02, 8)))
        visitors.append((visitor_id, id_hash, masked))
        visitor_rows.append((visitor_id, cid, visitor_name(rng),
                'resident_id', vault.encrypt(number), masked, id_hash, 0,
                created))
    _copy(cursor, 'scenic_visitor', ['id', 'company', 'name', 'id_type',
            'id_encrypted', 'id_masked', 'id_hash', 'create_uid',
            'create_date'], visitor_rows)
    timings['visitors_s'] = round(time.monotonic() - t0, 2)

    # -- orders of 1-3 tickets of one type and slot, paid over the last week -
    t0 = time.monotonic()
    weights = [w for _, w in TICKET_MIX]
    codes_ = [c for c, _ in TICKET_MIX]
    orders = []            # (type, slot tuple, date, count)
    left = n_tickets
    while left:
        ttype = types[rng.choices(codes_, weights)[0]]
        date = days[len(orders) % 2]
        slot = rng.choice(slots[date])
        count = min(left, rng.choice([1, 1, 2, 2, 3]))
        if ttype.code == 'REENTRY2':
            count = 1       # used alone: its order is then 'used'
        orders.append([ttype, slot, date, count])
        left -= count
    order_ids = _ids(cursor, 'scenic_order', len(orders))
    line_ids = _ids(cursor, 'scenic_order_line', len(orders))
    ticket_ids = _ids(cursor, 'scenic_ticket', n_tickets)
    references = set()
    while len(references) < len(orders):
        references.add(new_reference())
    references = sorted(references)
    rng.shuffle(references)
    order_rows, line_rows, payment_rows, ticket_rows = [], [], [], []
    to_sign = []
    material = {'today': [], 'tomorrow': [], 'revoked': []}
    usage_rows = []
    position = 0
    currency = company.currency.id
    for k, (ttype, (slot_id, start, end), date, count) in enumerate(orders):
        order_id = order_ids[k]
        paid_at = now - dt.timedelta(minutes=rng.uniform(10, 7 * 24 * 60))
        created = paid_at - dt.timedelta(seconds=rng.uniform(20, 300))
        revoked = rng.random() < REVOKED_SHARE
        price = Decimal(ttype.base_price).quantize(Decimal('0.01'))
        amount = price * count
        if ttype.validity == 'time_slot':
            valid_from, valid_until = start, end
        else:
            valid_from = dt.datetime.combine(date, dt.time(), tz)
            valid_until = valid_from + dt.timedelta(
                days=ttype.validity_days or 1)
        used = (ttype.code == 'REENTRY2' and date == today and not revoked
            and rng.random() < REENTRY_USED_SHARE)
        closed = (paid_at + dt.timedelta(hours=rng.uniform(1, 20))
            if revoked else None)
        if closed and closed > now:
            closed = now - dt.timedelta(minutes=5)
        state = 'refunded' if revoked else ('used' if used else 'paid')
        order_rows.append((order_id, cid, references[k], channel.id, slot_id,
                date, state, visitor_name(rng), f'139{rng.randrange(10**8):08d}',
                _naive(created + dt.timedelta(minutes=15)), amount, currency,
                str(uuid.uuid4()), _naive(paid_at),
                _naive(closed) if closed else None, 0, _naive(created)))
        line_rows.append((line_ids[k], order_id, ttype.id, count,
                count * ttype.persons, price, amount, 0, _naive(created)))
        payment_rows.append((cid, order_id, 'payment', 'simulated',
                f'SIM-{references[k]}', amount, currency, _naive(paid_at),
                0, _naive(paid_at)))
        if revoked:
            payment_rows.append((cid, order_id, 'refund', 'simulated',
                    f'SIM-R-{references[k]}', -amount, currency,
                    _naive(closed), 0, _naive(closed)))
        for _ in range(count):
            ticket_id = ticket_ids[position]
            visitor_id, id_hash, masked = visitors[position]
            ticket_state = 'revoked' if revoked else (
                'used' if used else 'valid')
            entries = ttype.entries
            ticket_rows.append([ticket_id, cid, order_id, line_ids[k],
                    ttype.id, slot_id, date, visitor_id, id_hash, masked,
                    ttype.persons, entries, _naive(valid_from),
                    _naive(valid_until), ticket_state, signer.key_id, None,
                    _naive(closed) if revoked else None, 0, _naive(created),
                    0, _naive(closed or paid_at)])
            to_sign.append((ticket_id, cid, ttype.id,
                    int(valid_from.timestamp()),
                    int(valid_until.timestamp()), ttype.persons, entries,
                    id_hash))
            item = {'id': ticket_id, 'visitor': position,
                'valid_from': valid_from.isoformat(),
                'valid_until': valid_until.isoformat(),
                'single': entries == 1}
            if revoked:
                material['revoked'].append(item)
            elif date == today and entries == 1:
                material['today'].append(item)
            elif date != today and entries == 1:
                material['tomorrow'].append(item)
            if used:
                entries_used = rng.randint(1, 2)
                last_entry = min(valid_from + dt.timedelta(
                        minutes=rng.uniform(30, 300)),
                    now - dt.timedelta(minutes=rng.uniform(5, 30)))
                inside = entries_used == 1 or rng.random() < 0.5
                last_exit = None if inside and entries_used == 1 else (
                    last_entry - dt.timedelta(minutes=rng.uniform(5, 60))
                    if inside else last_entry + dt.timedelta(minutes=
                        rng.uniform(1, 4)))
                if last_exit and last_exit > now:
                    last_exit = now - dt.timedelta(minutes=1)
                usage_rows.append((cid, ticket_id, None, entries_used,
                        0 if last_exit is None else entries_used - (
                            1 if inside else 0),
                        _naive(last_entry),
                        _naive(last_exit) if last_exit else None, inside,
                        None, None, 0, _naive(last_entry),
                        0, _naive(last_exit or last_entry)))
            position += 1
    timings['plan_s'] = round(time.monotonic() - t0, 2)

    t0 = time.monotonic()
    codes = sign_all(signer, to_sign, params['processes'])
    timings['sign_s'] = round(time.monotonic() - t0, 2)
    timings['sign_processes'] = params['processes']
    for row, code in zip(ticket_rows, codes):
        row[16] = code
    by_id = dict(zip((r[0] for r in to_sign), codes))
    for items in material.values():
        for item in items:
            item['code'] = by_id[item['id']]

    t0 = time.monotonic()
    _copy(cursor, 'scenic_order', ['id', 'company', 'reference', 'channel',
            'slot', 'visit_date', 'state', 'contact_name', 'contact_phone',
            'hold_expires_at', 'total', 'currency', 'idempotency_key',
            'paid_at', 'closed_at', 'create_uid', 'create_date'], order_rows)
    _copy(cursor, 'scenic_order_line', ['id', 'order', 'ticket_type',
            'quantity', 'persons', 'unit_price', 'amount', 'create_uid',
            'create_date'], line_rows)
    _copy(cursor, 'scenic_payment', ['company', 'order', 'kind', 'provider',
            'provider_reference', 'amount', 'currency', 'date', 'create_uid',
            'create_date'], payment_rows)
    _copy(cursor, 'scenic_ticket', ['id', 'company', 'order', 'line',
            'ticket_type', 'slot', 'visit_date', 'visitor', 'holder_hash',
            'holder_masked', 'persons', 'entries_allowed', 'valid_from',
            'valid_until', 'state', 'key_id', 'code', 'revoked_at',
            'create_uid', 'create_date', 'write_uid', 'write_date'],
        ticket_rows)

    # -- cards, issued at the box office over the last year ------------------
    card_codes = [c for c, _ in CARD_MIX]
    card_weights = [w for _, w in CARD_MIX]
    card_ids = _ids(cursor, 'scenic_card', n_cards)
    card_rows = []
    for k, card_id in enumerate(card_ids):
        visitor_id, id_hash, _ = visitors[n_tickets + k]
        ttype = types[rng.choices(card_codes, card_weights)[0]]
        issued = now - dt.timedelta(days=rng.uniform(1, 300))
        state = 'active'
        changed = None
        if rng.random() < CARD_INACTIVE_SHARE:
            state = rng.choice(['suspended', 'lost'])
            changed = now - dt.timedelta(days=rng.uniform(0.1, 20))
        remaining = None
        if ttype.category == 'count_card':
            remaining = rng.randint(0, ttype.entries_allowed or 10)
        card_rows.append((card_id, cid, f'04{card_id:012X}', ttype.id,
                visitor_id, id_hash, _naive(issued),
                _naive(issued + dt.timedelta(days=365)), remaining, state,
                _naive(changed) if changed else None,
                ttype.reentry_binding or 'none', 1, _naive(issued),
                1 if changed else None, _naive(changed) if changed else None))
        if rng.random() < CARD_USED_SHARE:
            last_entry = now - dt.timedelta(days=rng.uniform(0.05, 30))
            last_exit = last_entry + dt.timedelta(hours=rng.uniform(1, 6))
            if last_exit > now:
                last_exit = now - dt.timedelta(minutes=1)
            entries_used = rng.randint(1, 9)
            usage_rows.append((cid, None, card_id, entries_used,
                    entries_used, _naive(last_entry), _naive(last_exit),
                    False, None, None, 0, _naive(last_entry), 0,
                    _naive(last_exit)))
    _copy(cursor, 'scenic_card', ['id', 'company', 'number', 'ticket_type',
            'holder', 'holder_hash', 'valid_from', 'valid_until',
            'remaining', 'state', 'state_changed_at', 'binding_method',
            'create_uid', 'create_date', 'write_uid', 'write_date'],
        card_rows)
    _copy(cursor, 'scenic_ticket_usage', ['company', 'ticket', 'card',
            'entries', 'exits', 'last_entry', 'last_exit', 'inside',
            'binding_method', 'binding_ref', 'create_uid', 'create_date',
            'write_uid', 'write_date'], usage_rows)
    timings['insert_s'] = round(time.monotonic() - t0, 2)

    # -- gate hashes (scenic_gate.gatehash), as the cron leaves them ---------
    # The sync only reads stored hashes. Holders of today's single-entry
    # tickets picked for ID-card scans get theirs from the cron's own
    # derivation (scrypt, ~40 ms each: measured here); the others get rows
    # of the same shape standing for what the cron derived earlier in the
    # day (95 000 real derivations would cost the bench an hour of CPU).
    t0 = time.monotonic()
    single_today = [item for item in material['today'] if item['single']]
    real = rng.sample(single_today, min(params['id_holders'],
            len(single_today)))
    real_visitors = set()
    for item in real:
        item['real_hash'] = True
        real_visitors.add(visitors[item['visitor']][0])
    window_visitors = sorted({row[7] for row in ticket_rows
            if row[14] in ('valid', 'used')} - real_visitors)
    created = _naive(now - dt.timedelta(hours=1))
    _copy(cursor, 'scenic_gate_hash', ['company', 'visitor', 'generation',
            'hash', 'create_uid', 'create_date'],
        [(cid, visitor_id, 1, os.urandom(32).hex(), 0, created)
            for visitor_id in window_visitors])
    timings['gate_hash_rows_s'] = round(time.monotonic() - t0, 2)
    GateHash = pool.get('scenic.gate.hash')
    t0, cpu0 = time.monotonic(), time.process_time()
    derived = GateHash.fill()
    cpu = time.process_time() - cpu0
    timings['gate_hash_fill'] = {'holders': derived,
        'wall_s': round(time.monotonic() - t0, 2), 'cpu_s': round(cpu, 2),
        'cpu_ms_per_holder': round(1000 * cpu / derived, 1)
        if derived else None, 'stand_in_rows': len(window_visitors)}
    t0 = time.monotonic()
    transaction.commit()
    for table in ['scenic_visitor', 'scenic_order', 'scenic_order_line',
            'scenic_payment', 'scenic_ticket', 'scenic_card',
            'scenic_ticket_usage', 'scenic_gate_hash']:
        cursor.execute(f'ANALYZE "{table}"')
    timings['commit_analyze_s'] = round(time.monotonic() - t0, 2)
    return {
        'company': cid,
        'timezone': str(tz),
        'today': today.isoformat(),
        'boxes': [b.id for b in boxes],
        'tokens': tokens,
        'gates': {code: g.id for code, g in gates.items()},
        'rows': {'visitors': len(visitor_rows), 'orders': len(order_rows),
            'tickets': len(ticket_rows), 'cards': len(card_rows),
            'usage': len(usage_rows), 'payments': len(payment_rows)},
        'material': material,
        }


# =============================================================================
# Bench side
# =============================================================================

class Wire:
    """Times and bytes of the box's HTTP calls: wraps the opener each
    ErpClient sends through (``client.opener.open``, pinned-CA TLS or
    plain http to loopback), changing nothing of what goes over the
    wire."""

    def __init__(self):
        self.last = None

    def attach(self, client):
        "Time every call `client` (an ErpClient) makes from now on."
        original = client.opener.open

        def open_(request, *args, **kwargs):
            record = {'start': time.perf_counter(),
                'sent': len(getattr(request, 'data', None) or b'')}
            response = original(request, *args, **kwargs)
            record['headers'] = time.perf_counter()
            self.last = record
            return _Counted(response, record)
        client.opener.open = open_
        return client


class _Counted:

    def __init__(self, response, record):
        self.response = response
        self.record = record
        self.status = response.status
        self.headers = response.headers

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.response.close()
        return False

    def read(self, *args):
        data = self.response.read(*args)
        self.record['body'] = data
        self.record['received'] = len(data)
        self.record['end'] = time.perf_counter()
        return data


class TimedStore(Store):
    "The box's store, timing apply_sync."

    def apply_sync(self, answer, now, acked_before=None):
        start = time.perf_counter()
        try:
            return super().apply_sync(answer, now,
                acked_before=acked_before)
        finally:
            self.apply_s = time.perf_counter() - start


def new_box(tmpdir, name, port, wire):
    data = Path(tmpdir) / name
    data.mkdir()
    store = TimedStore(data / 'box.sqlite')
    client = wire.attach(box_sync.ErpClient(f'http://127.0.0.1:{port}',
        DATABASE, timeout=TIMEOUT_HTTP))
    client.credentials = store.credentials
    engine = box_sync.SyncEngine(store, client, name=name,
        hostname='bench')
    return store, engine, data


def timed_sync(engine, wire):
    "One SyncEngine.sync() with its parts: ERP, transfer, parse, apply."
    start = time.perf_counter()
    result = engine.sync()
    total = time.perf_counter() - start
    record = wire.last
    if record is None or 'end' not in record:
        raise BenchError("the box's HTTP call was not timed (Wire)")
    erp = record['headers'] - record['start']
    transfer = record['end'] - record['headers']
    apply_s = engine.store.apply_s
    body = record['body']
    try:
        json_bytes = len(gzip.decompress(body))
    except OSError:
        json_bytes = len(body)
    return {
        'seconds': total,
        'erp_s': erp,
        'transfer_s': transfer,
        'box_parse_s': max(0.0, total - erp - transfer - apply_s),
        'box_apply_s': apply_s,
        'bytes': record['received'],
        'json_bytes': json_bytes,
        'rows': result['rows'],
        }


def erp_expected(uri, company, tz, now):
    """What a full sync must bring, counted in the ERP's tables with the
    sync's rules (PROTOCOL.md, addons/scenic_gate/sync.py)."""
    today = now.astimezone(tz).date()
    start = _naive(dt.datetime.combine(today, dt.time(), tz))
    end = _naive(dt.datetime.combine(today + dt.timedelta(days=2), dt.time(),
            tz))
    now_naive = _naive(now)
    queries = {
        # with a stored gate hash of the current generation (1)
        'tickets': ("SELECT count(*) FROM scenic_ticket t JOIN "
            "scenic_gate_hash g ON g.visitor = t.visitor AND g.company = "
            "t.company AND g.generation = 1 WHERE t.company = %s "
            "AND t.state IN ('valid', 'used') AND t.holder_hash IS NOT NULL "
            "AND t.valid_from < %s AND t.valid_until > %s", (end, start)),
        'cards': ("SELECT count(*) FROM scenic_card WHERE company = %s "
            "AND valid_until > %s", (now_naive - dt.timedelta(days=30),)),
        'keys': ("SELECT count(*) FROM scenic_signing_key "
            "WHERE company = %s", ()),
        'revoked': ("SELECT count(*) FROM scenic_ticket WHERE company = %s "
            "AND state = 'revoked' AND revoked_at IS NOT NULL "
            "AND valid_until > %s", (now_naive,)),
        'ticket_types': ("SELECT count(*) FROM scenic_ticket_type "
            "WHERE company = %s", ()),
        'gates': ("SELECT count(*) FROM scenic_gate WHERE company = %s",
            ()),
        'usage': ("SELECT count(*) FROM scenic_ticket_usage u "
            "LEFT JOIN scenic_ticket t ON t.id = u.ticket "
            "LEFT JOIN scenic_card c ON c.id = u.card "
            "WHERE u.company = %s AND (t.valid_until > %s "
            "OR c.valid_until > %s)", (now_naive, now_naive)),
        }
    with _measure.pg_connect(uri, DATABASE) as conn:
        return {name: conn.execute(sql, (company, *params)).fetchone()[0]
            for name, (sql, params) in queries.items()}


def compare_counts(store, expected):
    "{table: [box, ERP]} of the tables that differ."
    counts = store.counts()
    return {name: [counts.get(name), value]
        for name, value in expected.items() if counts.get(name) != value}


def check_codes(store, sample=200, seed=0):
    """A sample of the synced codes verified with the synced keys, as the
    box's validator does; returns the number that failed."""
    ring = ticketcode.Keyring()
    for key_id, raw, retired in store.keys():
        ring.add(key_id, raw, retired)
    rows = store.query('SELECT ticket, code, valid_from FROM tickets '
        'ORDER BY random() LIMIT ?', (sample,))
    bad = 0
    for row in rows:
        at = dt.datetime.fromisoformat(row['valid_from']) + dt.timedelta(
            minutes=1)
        result = ticketcode.verify(row['code'], ring, now=at)
        if not result.ok or result.payload.ticket_id != row['ticket']:
            bad += 1
    return bad


# --- the booking API: tickets made after the full sync -----------------------

def _http(port, method, path, body=None, headers=None):
    conn = http.client.HTTPConnection('127.0.0.1', port,
        timeout=TIMEOUT_HTTP)
    try:
        data = json.dumps(body).encode() if body is not None else None
        conn.request(method, path, body=data, headers={
                'Content-Type': 'application/json', **(headers or {})})
        response = conn.getresponse()
        payload = response.read()
    finally:
        conn.close()
    try:
        return response.status, json.loads(payload or b'null')
    except ValueError:
        return response.status, payload[:300]


def book_new_tickets(port, uri, count, day, rng):
    """`count` real-name tickets for `day` through the booking API (order
    and payment, as the web page does); returns their ids."""
    auth = {'Authorization': f'Bearer {API_KEY}'}
    status, answer = _http(port, 'GET',
        f'{BOOKING}/availability?date={day.isoformat()}', headers=auth)
    if status != 200:
        raise BenchError(f"GET /availability answered {status}: {answer}")
    # the area's own slots (the cable car has slots of its own)
    slots = [s for s in answer.get('slots', [])
        if s.get('zone') is None and (s.get('available') or 0) >= 3]
    if not slots:
        raise BenchError(f"no slot with places on {day}: {answer}")
    references = []
    made = index = 0
    while made < count:
        n = min(count - made, rng.randint(1, 3))
        visitors = [{'name': visitor_name(rng), 'id_number': bench_id(
                    index + i, NEW_ID_AREA, NEW_ID_BIRTH)} for i in range(n)]
        index += n
        slot = rng.choice(slots)
        status, order = _http(port, 'POST', f'{BOOKING}/orders', {
                'slot': slot['id'], 'items': [{'ticket_type': 'ADULT',
                        'visitors': visitors}],
                'contact': {'name': visitors[0]['name'],
                    'phone': '13800138000'}},
            headers={**auth, 'Idempotency-Key': str(uuid.uuid4())})
        if status != 201:
            raise BenchError(f"POST /orders answered {status}: {order}")
        reference = order.get('reference') or order.get('order')
        status, paid = _http(port, 'POST',
            f'{BOOKING}/orders/{reference}/pay',
            {'provider': 'simulated', 'amount': order['total']},
            headers=auth)
        if status != 200:
            raise BenchError(f"POST /orders/.../pay answered {status}: "
                f"{paid}")
        references.append(reference)
        made += n
    with _measure.pg_connect(uri, DATABASE) as conn:
        return [r[0] for r in conn.execute(
                'SELECT t.id FROM scenic_ticket t JOIN scenic_order o '
                'ON o.id = t."order" WHERE o.reference = ANY(%s) '
                "AND t.state = 'valid' ORDER BY t.id", (references,))]


# --- scans -------------------------------------------------------------------

# Entries by ID card (the rest by QR code): the holders whose gate hashes
# the bench derives for real (--id-holders, spread over today's tickets);
# each such scan costs the box one scrypt (~40 ms of CPU).
SCAN_MIX = [    # kind, share, what the box must decide
    ('entry', 0.80, 'open'),        # today's tickets, some by ID card
    ('rescan', 0.06, 'deny'),       # the same ticket again: already_used
    ('exit', 0.04, None),           # MAIN-OUT after the entry
    ('early', 0.05, 'deny'),        # tomorrow's ticket: not_yet_valid
    ('revoked', 0.03, 'deny'),      # a refunded ticket's code
    ('damaged', 0.02, 'deny'),      # a code with one character changed
    ]


def plan_scans(material, tickets, count, tz, today, rng):
    """`count` scans (time, gate, medium, data, direction, kind), in time
    order, on `tickets` (today's single-entry tickets no other round
    uses): what a busy entrance sees in a day."""
    shares = {kind: int(count * share) for kind, share, _ in SCAN_MIX}
    shares['entry'] += count - sum(shares.values())
    if len(tickets) < shares['entry']:
        raise BenchError(f"{len(tickets)} tickets of today left for "
            f"{shares['entry']} entries: use more --tickets or fewer "
            "--scans")
    opening = dt.datetime.combine(today, dt.time(8), tz)
    events = []
    entries = []
    for ticket in tickets[:shares['entry']]:
        at = dt.datetime.fromisoformat(ticket['valid_from']) + dt.timedelta(
            seconds=rng.uniform(0, 25 * 60))
        if ticket.get('real_hash'):
            data, medium = bench_id(ticket['visitor']), 'id_card'
        else:
            data, medium = ticket['code'], 'qr'
        events.append((at, 'MAIN-IN', medium, data, 'in', 'entry'))
        entries.append((at, ticket))
    for at, ticket in rng.sample(entries, shares['rescan']):
        events.append((at + dt.timedelta(seconds=rng.uniform(30, 1800)),
                'MAIN-IN', 'qr', ticket['code'], 'in', 'rescan'))
    for at, ticket in rng.sample(entries, shares['exit']):
        events.append((at + dt.timedelta(minutes=rng.uniform(30, 120)),
                'MAIN-OUT', 'qr', ticket['code'], 'out', 'exit'))
    for _ in range(shares['early']):
        ticket = rng.choice(material['tomorrow'])
        events.append((opening + dt.timedelta(
                    seconds=rng.uniform(0, 9 * 3600)), 'MAIN-IN', 'qr',
                ticket['code'], 'in', 'early'))
    # Refunded tickets the box knows as revoked (the sync sends those not
    # expired yet), scanned while their code would otherwise be valid.
    now = dt.datetime.now(UTC)
    revoked = [t for t in material['revoked']
        if dt.datetime.fromisoformat(t['valid_until']) > now]
    if shares['revoked'] and not revoked:
        raise BenchError("no revoked ticket that is not expired yet")
    for _ in range(shares['revoked']):
        ticket = rng.choice(revoked)
        events.append((dt.datetime.fromisoformat(ticket['valid_from'])
                + dt.timedelta(seconds=rng.uniform(0, 25 * 60)), 'MAIN-IN',
                'qr', ticket['code'], 'in', 'revoked'))
    for at, ticket in rng.sample(entries, shares['damaged']):
        code = ticket['code']
        i = rng.randrange(len(ticketcode.PREFIX) + 5, len(code) - 5)
        other = '0' if code[i] != '0' else '1'
        events.append((at - dt.timedelta(seconds=1), 'MAIN-IN', 'qr',
                code[:i] + other + code[i + 1:], 'in', 'damaged'))
    events.sort(key=lambda e: e[0])
    return events


def run_scans(validator, events, failures):
    """Decide the events with the box's validator (each a durable
    transaction: usage and outbox row); returns decisions by kind."""
    expected = {kind: want for kind, _, want in SCAN_MIX}
    outcome = Counter()
    reasons = Counter()
    for lane, (at, gate, medium, data, direction, kind) in enumerate(events):
        # the demo's gates have two lanes each
        result = validator.scan(ScanRequest(gate=gate, lane=lane % 2 + 1,
                medium=medium, data=data, direction=direction), now=at)
        action = result.decision.action
        outcome[f'{kind}:{action}'] += 1
        reasons[result.decision.reason] += 1
        want = expected[kind]
        if want and action != want:
            failures.add(f'scan_{kind}_not_{want}',
                f'{medium} at {at.isoformat()}: {result.decision.reason}')
    return dict(sorted(outcome.items())), dict(reasons.most_common())


class Failures:
    "Correctness findings: each makes the run fail."

    def __init__(self):
        self.counts = Counter()
        self.examples = {}

    def add(self, what, detail=''):
        self.counts[what] += 1
        self.examples.setdefault(what, str(detail)[:300])

    def as_json(self):
        return {k: {'count': v, 'example': self.examples[k]}
            for k, v in sorted(self.counts.items())}


def erp_scans(uri, box_id, nonces=None):
    "Scans the ERP holds for a box: rows, distinct nonces, opens, conflicts."
    where, params = 'box = %s', [box_id]
    if nonces is not None:
        where += ' AND nonce = ANY(%s)'
        params.append(list(nonces))
    with _measure.pg_connect(uri, DATABASE) as conn:
        rows, distinct, opened, conflicts = conn.execute(
            'SELECT count(*), count(DISTINCT nonce), '
            "count(*) FILTER (WHERE decision = 'open'), "
            'count(*) FILTER (WHERE conflict) '
            f'FROM scenic_gate_scan WHERE {where}', params).fetchone()
    return {'rows': rows, 'distinct_nonces': distinct, 'open': opened,
        'conflicts': conflicts}


def upload_round(engine, wire, meter):
    """SyncEngine.upload_pending until the outbox is empty; timed, with
    each POST /scans call."""
    calls = []
    original = engine.client.upload

    def upload(scans):
        start = time.perf_counter()
        answer = original(scans)
        record = wire.last
        calls.append({'seconds': time.perf_counter() - start,
                'erp_s': record['headers'] - record['start'],
                'scans': len(scans), 'sent': record['sent'],
                'received': record['received']})
        return answer
    engine.client.upload = upload
    try:
        with meter.measure() as cpu:
            start = time.perf_counter()
            total = 0
            while engine.store.outbox_size():
                done = engine.upload_pending()
                if not done:
                    break
                total += done
            seconds = time.perf_counter() - start
    finally:
        engine.client.upload = original
    return seconds, total, calls, cpu


def send_again(engine, payloads):
    """The same scans posted again in batches of 1000, as a box whose
    answers were lost would: {accepted, duplicates, conflicts, seconds}."""
    result = Counter()
    start = time.perf_counter()
    for i in range(0, len(payloads), box_sync.BATCH_SIZE):
        answer = engine.client.upload(payloads[i:i + box_sync.BATCH_SIZE])
        for name in ('accepted', 'duplicates', 'conflicts'):
            result[name] += len(answer.get(name) or [])
    result = dict(result)
    result['seconds'] = round(time.perf_counter() - start, 3)
    return result


# --- output ------------------------------------------------------------------

def _cpu(cpu, per=None, unit=None):
    seconds = cpu.pop('seconds')
    if per:
        cpu[f'ms_per_{unit}'] = {k: round(1000 * v / per, 3)
            for k, v in seconds.items()}
    cpu['cpu_s'] = {k: round(v, 3) for k, v in seconds.items()}
    return cpu


def _r(value, digits=3):
    return None if value is None else round(value, digits)


def p50(values, digits=3):
    return percentile(values, 50, digits=digits)


def emit(line):
    print(json.dumps(line, ensure_ascii=False), flush=True)


def parse_args(argv):
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0],
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--quick', action='store_true',
        help="smoke run: 10 000 tickets and cards, 1 000 scans, 2 repeats")
    parser.add_argument('--tickets', type=int,
        help="tickets and cards in the area (default 100000, 10000 with "
        "--quick; 5 %% of them cards)")
    parser.add_argument('--scans', type=int,
        help="scans per upload round (default 10000, 1000 with --quick)")
    parser.add_argument('--repeats', type=int,
        help="full syncs (one fresh box each) and upload rounds (default "
        "3, 2 with --quick)")
    parser.add_argument('--new-tickets', type=int, default=None,
        help="tickets booked through the API before the incremental sync "
        "(default 50, 10 with --quick)")
    parser.add_argument('--workers', type=int, default=2,
        help="gunicorn worker processes (default %(default)s)")
    parser.add_argument('--threads', type=int, default=4,
        help="threads per gunicorn worker (default %(default)s)")
    parser.add_argument('--sign-processes', type=int,
        default=os.cpu_count() or 1,
        help="processes signing the codes (default: one per core)")
    parser.add_argument('--pg-uri',
        help="use this PostgreSQL server instead of a throwaway cluster "
        f"(database {DATABASE!r} is created and initialised if missing; "
        "it must not hold a previous run's data; for development)")
    parser.add_argument('--id-holders', type=int, default=None,
        help="holders whose gate hashes the ERP's cron derives for real "
        "(scrypt) and who enter by ID card (default 400, 100 with "
        "--quick); the others' stored hashes stand in for earlier runs")
    parser.add_argument('--seed', type=int, default=1)
    parser.add_argument('--erp-setup', nargs=2, metavar=('CONF', 'PARAMS'),
        help=argparse.SUPPRESS)
    parser.add_argument('--erp-fill-hashes', nargs=2,
        metavar=('CONF', 'OUT'), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    q = args.quick
    if args.tickets is None:
        args.tickets = 10_000 if q else 100_000
    if args.scans is None:
        args.scans = 1000 if q else 10_000
    if args.repeats is None:
        args.repeats = 2 if q else 3
    if args.new_tickets is None:
        args.new_tickets = 10 if q else 50
    if args.id_holders is None:
        args.id_holders = 100 if q else 400
    if args.tickets < 1000 or args.scans < 100 or args.repeats < 1:
        parser.error("at least 1000 tickets, 100 scans and 1 repeat")
    return args


def main(argv=None):
    args = parse_args(argv)
    if args.erp_fill_hashes:
        conf, out = args.erp_fill_hashes
        Path(out).write_text(json.dumps(erp_fill_hashes(conf, DATABASE)))
        return 0
    if args.erp_setup:
        conf, params = args.erp_setup
        params = Path(params)
        result = erp_setup(conf, json.loads(params.read_text()))
        params.with_suffix('.out').write_text(json.dumps(result))
        return 0
    signal.signal(signal.SIGTERM, _measure.terminate)
    signal.signal(signal.SIGALRM, _alarm)
    signal.alarm(TIMEOUT_TOTAL)
    started = time.monotonic()
    failures = Failures()
    rng = random.Random(args.seed)
    lines = {}
    wire = Wire()
    with contextlib.ExitStack() as stack:
        tmpdir = stack.enter_context(
            tempfile.TemporaryDirectory(prefix='scenic-box-sync-'))
        if args.pg_uri:
            uri = args.pg_uri
            pg = {'cluster': 'given'}
        else:
            log("starting a throwaway PostgreSQL cluster")
            uri = stack.enter_context(throwaway_cluster(settings=PG_SETTINGS))
            pg = {'cluster': 'throwaway', **PG_SETTINGS}
        conf = _measure.write_config(tmpdir, uri, PII_KEY)
        _measure.initialise(uri, conf, tmpdir, DATABASE, log,
            timeout_admin=TIMEOUT_ADMIN,
            timeout_demo=TIMEOUT_LOAD_DEMO)
        with _measure.pg_connect(uri, DATABASE) as conn:
            if conn.execute("SELECT count(*) FROM scenic_gate_box "
                    "WHERE name LIKE 'Bench box %%'").fetchone()[0]:
                raise BenchError(f"database {DATABASE!r} holds a previous "
                    "run's data: drop it first")
        init_s = time.monotonic() - started

        # -- the area's data -------------------------------------------------
        params = Path(tmpdir) / 'setup.json'
        params.write_text(json.dumps({'database': DATABASE,
                    'tickets': args.tickets, 'seed': args.seed,
                    'boxes': args.repeats + 1,
                    'id_holders': args.id_holders,
                    'processes': args.sign_processes}))
        _measure.run_step([sys.executable, __file__, '--erp-setup', conf,
                params], _measure.setup_env(tmpdir),
            f"{args.tickets} tickets and cards into the area", TIMEOUT_DATA,
            log)
        setup = json.loads(params.with_suffix('.out').read_text())
        material = setup.pop('material')
        tz = ZoneInfo(setup['timezone'])
        today = dt.date.fromisoformat(setup['today'])
        lines['setup'] = {'measurement': 'setup', 'quick': args.quick,
            'rows': setup['rows'], 'timings_s': setup['timings'],
            'init_s': round(init_s, 1),
            'scan_material': {k: len(v) for k, v in material.items()}}
        emit(lines['setup'])

        server = _measure.Server(conf, tmpdir, DATABASE, args.workers,
            args.threads, log)
        stack.callback(server.stop)
        server.start()
        meter = _measure.CPUMeter({'server': server.process.pid,
                'postgres': _measure.postmaster_pid(uri, DATABASE)},
            own='box')
        tokens = list(setup['tokens'])
        box_ids = list(setup['boxes'])

        # -- 1. full sync of fresh boxes -------------------------------------
        log("warm-up: one full sync (not measured)")
        store, engine, _ = new_box(tmpdir, 'warm-up', server.port, wire)
        engine.enrol(tokens.pop())
        box_ids.pop()
        timed_sync(engine, wire)
        store.close()
        runs = []
        expected = None
        for i in range(args.repeats):
            log(f"1. full sync of a fresh box ({i + 1}/{args.repeats})")
            with meter.measure() as cpu:
                start = time.perf_counter()
                store, engine, data_dir = new_box(tmpdir, f'box-{i + 1}',
                    server.port, wire)
                engine.enrol(tokens[i])
                enrol_s = time.perf_counter() - start
                part = timed_sync(engine, wire)
                seconds = time.perf_counter() - start
            now = dt.datetime.now(UTC)
            expected = erp_expected(uri, setup['company'], tz, now)
            mismatch = compare_counts(store, expected)
            for name, (box, erp) in mismatch.items():
                failures.add(f'full_sync_count_{name}',
                    f'box {box}, ERP {erp}')
            bad_codes = check_codes(store, seed=args.seed)
            if bad_codes:
                failures.add('full_sync_codes_invalid', bad_codes)
            runs.append(dict(part, seconds_from_nothing=seconds,
                    enrol_s=enrol_s, counts=store.counts(),
                    mismatch=mismatch, codes_invalid=bad_codes,
                    cpu=_cpu(cpu)))
            if i < args.repeats - 1:
                store.close()
        totals = [r['seconds_from_nothing'] for r in runs]
        synced = expected['tickets'] + expected['cards']
        full = {
            'measurement': 'full_sync',
            'runs': len(runs),
            'p50_s': p50(totals),
            'max_s': _r(max(totals)),
            'erp_p50_s': p50([r['erp_s'] for r in runs]),
            'transfer_p50_s': p50([r['transfer_s'] for r in runs]),
            'box_parse_p50_s': p50([r['box_parse_s'] for r in runs]),
            'box_apply_p50_s': p50([r['box_apply_s'] for r in runs]),
            'enrol_p50_s': p50([r['enrol_s'] for r in runs]),
            'bytes': runs[-1]['bytes'],
            'json_bytes': runs[-1]['json_bytes'],
            'rows': runs[-1]['rows'],
            'tickets_and_cards': synced,
            'rows_per_s': round(runs[-1]['rows'] / p50(totals)),
            'expected': expected,
            'counts_match': not any(r['mismatch'] for r in runs),
            'codes_checked': 200 * len(runs),
            'codes_invalid': sum(r['codes_invalid'] for r in runs),
            'target_s': TARGETS_S['full_sync'],
            'met': p50(totals) < TARGETS_S['full_sync'],
            'each_s': [_r(t) for t in totals],
            'cpu': runs[len(runs) // 2]['cpu'],
            }
        lines['full_sync'] = full
        emit(full)

        # -- 2. incremental sync after new tickets ---------------------------
        box_id = box_ids[args.repeats - 1]
        tomorrow = today + dt.timedelta(days=1)
        log(f"2. {args.new_tickets} tickets booked through the API, then an "
            "incremental sync")
        before = store.counts()
        new_ids = book_new_tickets(server.port, uri, args.new_tickets,
            tomorrow, rng)
        if len(new_ids) != args.new_tickets:
            failures.add('incremental_booked', f'{len(new_ids)} tickets '
                f'of {args.new_tickets}')
        out = Path(tmpdir) / 'fill.json'
        _measure.run_step([sys.executable, __file__, '--erp-fill-hashes',
                conf, out], _measure.setup_env(tmpdir),
            "the cron's gate hashes of the new tickets", TIMEOUT_DATA, log)
        cron_fill = json.loads(out.read_text())
        with meter.measure() as cpu:
            part = timed_sync(engine, wire)
        after = store.counts()
        have = {r[0] for r in store.query(
                'SELECT ticket FROM tickets WHERE ticket IN (%s)' % ','.join(
                    '?' * len(new_ids)), new_ids)} if new_ids else set()
        missing = sorted(set(new_ids) - have)
        if missing:
            failures.add('incremental_missing_tickets', missing[:10])
        if after['tickets'] - before['tickets'] != len(new_ids):
            failures.add('incremental_ticket_count', f"{before['tickets']}"
                f" -> {after['tickets']} for {len(new_ids)} new")
        lines['incremental'] = dict({'measurement': 'incremental_sync',
            'new_tickets': len(new_ids)},
            **{k: _r(v) if isinstance(v, float) else v
                for k, v in part.items()},
            tickets_before=before['tickets'], tickets_after=after['tickets'],
            missing=len(missing), cpu=_cpu(cpu), cron_fill=cron_fill)
        emit(lines['incremental'])

        # -- 3. scans decided by the box, then uploaded ----------------------
        validator = Validator(store, data_dir, online=lambda: False,
            timezone_name=setup['timezone'])
        pool = [t for t in material['today'] if t['single']]
        rng.shuffle(pool)
        per_round = max(1, len(pool) // args.repeats)
        rounds = []
        uploaded = 0
        for r in range(args.repeats):
            tickets = pool[r * per_round:(r + 1) * per_round]
            events = plan_scans(material, tickets, args.scans, tz, today,
                rng)
            log(f"3. round {r + 1}/{args.repeats}: {len(events)} scans "
                "decided by the box's validator")
            first_seq = store.query_one(
                'SELECT coalesce(max(seq), 0) FROM outbox')[0]
            start = time.perf_counter()
            outcome, reasons = run_scans(validator, events, failures)
            decide_s = time.perf_counter() - start
            pending = store.outbox_size()
            log(f"3. round {r + 1}: uploading {pending} scans")
            seconds, acked, calls, cpu = upload_round(engine, wire, meter)
            rows = store.query('SELECT nonce, payload, result FROM outbox '
                'WHERE seq > ?', (first_seq,))
            results = Counter(row['result'] for row in rows)
            nonces = [row['nonce'] for row in rows]
            payloads = [json.loads(row['payload']) for row in rows]
            uploaded += len(rows)
            stored = erp_scans(uri, box_id, nonces)
            stored_all = erp_scans(uri, box_id)
            box_open = sum(1 for p in payloads if p['decision'] == 'open')
            checks = {
                'outbox_left': store.outbox_size(),
                'acknowledged': acked,
                'erp_rows': stored['rows'],
                'erp_distinct_nonces': stored['distinct_nonces'],
                'erp_open': stored['open'], 'box_open': box_open,
                'erp_conflicts': stored['conflicts'],
                'erp_rows_all_rounds': stored_all['rows'],
                }
            if checks['outbox_left'] or acked != len(events):
                failures.add('upload_not_acknowledged',
                    f"{acked} of {len(events)}")
            if results.get('accepted') != len(events):
                failures.add('upload_not_accepted', dict(results))
            if stored['rows'] != len(events) or \
                    stored['distinct_nonces'] != len(events):
                failures.add('erp_scan_rows', f"{stored['rows']} rows, "
                    f"{stored['distinct_nonces']} nonces for {len(events)}")
            if stored_all['rows'] != uploaded:
                failures.add('erp_scan_rows_all', f"{stored_all['rows']} "
                    f"for {uploaded}")
            if stored['open'] != box_open:
                failures.add('erp_open_mismatch',
                    f"ERP {stored['open']}, box {box_open}")
            if stored['conflicts']:
                failures.add('erp_conflicts', stored['conflicts'])
            log(f"3. round {r + 1}: the same {len(payloads)} scans again")
            again = send_again(engine, payloads)
            after_again = erp_scans(uri, box_id)
            if again.get('duplicates') != len(payloads) or \
                    again.get('accepted'):
                failures.add('reupload_not_duplicates', again)
            if after_again['rows'] != uploaded:
                failures.add('reupload_stored_again',
                    f"{after_again['rows']} rows for {uploaded}")
            batch_s = [c['seconds'] for c in calls]
            rounds.append({
                'scans': len(events),
                'seconds': round(seconds, 3),
                'scans_per_s': round(len(events) / seconds),
                'batches': len(calls),
                'batch_p50_s': p50(batch_s),
                'batch_max_s': _r(max(batch_s)) if batch_s else None,
                'erp_s': round(sum(c['erp_s'] for c in calls), 3),
                'bytes_sent': sum(c['sent'] for c in calls),
                'bytes_received': sum(c['received'] for c in calls),
                'decide_s': round(decide_s, 2),
                'decided': outcome,
                'reasons': reasons,
                'checks': checks,
                'again': dict(again, erp_rows_after=after_again['rows']),
                'cpu': _cpu(cpu, per=len(events) / 1000, unit='1000_scans'),
                })
        seconds = [x['seconds'] for x in rounds]
        upload = {
            'measurement': 'upload',
            'rounds': len(rounds),
            'scans_per_round': args.scans,
            'p50_s': p50(seconds),
            'max_s': _r(max(seconds)),
            'scans_per_s_p50': round(args.scans / p50(seconds)),
            'batches': rounds[0]['batches'],
            'batch_p50_s': p50([x['batch_p50_s'] for x in rounds]),
            'duplicates_p50_s': p50([x['again']['seconds'] for x in rounds]),
            'target_s': TARGETS_S['upload'],
            'met': p50(seconds) < TARGETS_S['upload'],
            'each': rounds,
            }
        lines['upload'] = upload
        emit(upload)
        store.close()
    signal.alarm(0)
    summary = {
        'summary': True,
        'tickets_and_cards': args.tickets,
        'full_sync_p50_s': full['p50_s'],
        'full_sync_met': full['met'],
        'incremental_s': lines['incremental']['seconds'],
        'upload_p50_s': upload['p50_s'],
        'upload_met': upload['met'],
        'targets_s': TARGETS_S,
        'failures': failures.as_json(),
        'ok': not failures.counts,
        'server': server.settings,
        'postgresql': pg,
        'quick': args.quick,
        'total_s': round(time.monotonic() - started, 1),
        }
    emit(summary)
    human(lines, summary)
    return 0 if summary['ok'] else 1


def human(lines, summary):
    full, inc, up = lines['full_sync'], lines['incremental'], lines['upload']
    mark = {True: 'met', False: 'MISSED'}
    log(f"full sync of {full['tickets_and_cards']} tickets and cards: "
        f"p50 {full['p50_s']} s ({mark[full['met']]}, target "
        f"< {full['target_s']:g} s): ERP {full['erp_p50_s']} s, transfer "
        f"{full['transfer_p50_s']} s, box parse {full['box_parse_p50_s']} "
        f"s, apply {full['box_apply_p50_s']} s; {full['bytes']} bytes "
        f"gzipped ({full['json_bytes']} JSON), {full['rows_per_s']} rows/s")
    log(f"incremental sync after {inc['new_tickets']} new tickets: "
        f"{inc['seconds']} s, {inc['rows']} rows, {inc['bytes']} bytes")
    log(f"upload of {up['scans_per_round']} scans: p50 {up['p50_s']} s "
        f"({mark[up['met']]}, target < {up['target_s']:g} s), "
        f"{up['scans_per_s_p50']} scans/s, {up['batches']} batches; sent "
        f"again: all duplicates in {up['duplicates_p50_s']} s")
    if summary['failures']:
        log(f"FAILURES: {json.dumps(summary['failures'])}")
    log(f"total {summary['total_s']} s")


if __name__ == '__main__':
    try:
        sys.exit(main())
    except BenchError as error:
        log(f"ERROR: {error}")
        sys.exit(2)
    except KeyboardInterrupt:
        log("interrupted; everything was stopped and removed")
        sys.exit(130)
