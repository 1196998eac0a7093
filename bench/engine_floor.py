#!/usr/bin/env python3
"""The booking engine's cost floor: the irreducible CPU per paid order of
each layer, measured on this machine by stripped-down experiments.

    python bench/engine_floor.py [--quick] [--clients 64] [--seconds 20]
        [--orders 3000] [--parts http,pg,python]

An order is a book and a pay (bench/reservation_rush.py), 2 real-name
ADULT visitors each (the rush averages 2 persons an order). Each part keeps
the guarantees issue 13 requires and drops everything else:

1. `http`: the rush's HTTP server and settings (granian, 2 workers x 4
   blocking threads, _measure.Server) serving bench/http_app.py, which
   reads a booking-sized JSON body and answers an order-sized one, driven
   by bench/http_servers.py's keep-alive asyncio clients (the rush's
   load generator minus its booking logic). Server CPU (granian's processes)
   per request, x 2 requests an order.
2. `pg`: a throwaway cluster with the rush's durable settings
   (_measure.DURABLE_PG_SETTINGS: fsync and synchronous_commit on), 64
   connections, each order two durable transactions, each one statement
   (prepared, autocommit, one round trip): the book inserts one row into a
   narrow table with a primary key and claims a place on one of 26
   counter rows (the slots), the pay inserts one row. CPU of every
   PostgreSQL process (backends, walwriter, checkpointer...) per order.
   Then the same with synchronous_commit off, to show what durability
   costs; then (shape `rows`, durable) the order's rows as the engine
   writes them, in one function call each for the book and the pay
   (sql/engine.sql's scenic_book and scenic_pay narrowed: order, line, 2
   visitors, 2 tickets, 2 per-ID day claims, the slot, a stripe of the
   day's counter; payment, ticket codes, order state, slot-sales rollup),
   without the engine's other reads (channel, replay, slot, holds, hold
   counter). Then (`round_trips`, not in the floor): what the engine's 8
   round trips an order cost by themselves, as trivial prepared statements
   from 8 threads of one process (granian's 2 x 4), client and server CPU.
   Last (`transactions`, not in the floor), from the same 8 threads: a
   statement alone, in psycopg's implicit transaction (BEGIN and COMMIT
   round trips of their own), with BEGIN in its pipeline (the engine's
   way), and the hold counter's own transaction (an upsert of one hot row,
   commit not waiting for the disk): what framing a transaction and the
   engine's third transaction cost.
3. `python`: the engine's own Python per order, in one thread, no HTTP, no
   database: the real functions with an in-memory catalogue and slot
   (api.parse_booking, reservation.plan_booking: rules, ID validation and
   look-up hash, pricing; reservation.write_booking_db up to the statement
   it sends: ID encryption, the payload's JSON; engine.Engine.planned_order
   and api.order_json rendered as engine.Answer; for the pay:
   reservation.check_payable, reservation.ticket_code (Ed25519 per ticket),
   the payload's JSON, engine.order_from and the answer). Its CPU per order;
   then the same in 4 threads, as a granian worker's 4 blocking threads
   take turns on the GIL.

One JSON line per part, with the load average and the other processes' CPU
beside it, and a summary: the floor per order, against the 6.7 ms of CPU
that 300 orders/s allow on 2 cores and the engine's measured ~5.6 ms of
server and PostgreSQL CPU (bench/README.md, "The floor, measured" and the
sixth pass).
"""
import argparse
import asyncio
import datetime as dt
import json
import random
import signal
import sys
import tempfile
import time
from decimal import Decimal
from types import SimpleNamespace

import _measure
from _measure import BenchError

ROOT = _measure.ROOT
_measure.ensure_venv('psycopg', 'scenic_common')

sys.path.insert(0, str(ROOT / 'scripts'))
from pgcluster import throwaway_cluster  # noqa: E402

TARGET_ORDERS_PER_S = 300
ENGINE_CPU_MS = 5.6  # server + PostgreSQL, bench/README.md, sixth pass, 64 clients
SLOTS = 26  # the rush's day: 26 slots, each a hot counter row
VISITORS = 2  # per order
PII_KEY = 'bench-only-key-floor-0123456789abcdef0123456789'


def log(message):
    print(f"engine_floor: {message}", file=sys.stderr, flush=True)


load = _measure.load_average
cores = _measure.cores
ms_per = _measure.ms_per


# --- 1. HTTP ----------------------------------------------------------------

def http_floor(clients, seconds):
    import http_servers
    with tempfile.TemporaryDirectory(prefix='scenic-floor-') as tmpdir:
        conf = _measure.write_config(tmpdir, 'sqlite://', 'unused')
        server = _measure.Server(conf, tmpdir, 'bench', 2, 4, log,
            ready_path='/', app='http_app:app',
            pythonpath=ROOT / 'bench', http=_measure.ENGINE_HTTP)
        try:
            server.start()
            meter = _measure.CPUMeter({'server': server.process.pid})
            http_servers.run(server.port, 4, 1, meter)  # warm-up
            load_before = load()
            latencies, errors, duration, cpu = http_servers.run(
                server.port, clients, seconds, meter)
        finally:
            server.stop()
    if errors:
        raise BenchError(f"{len(errors)} answers were not 200, e.g. "
            f"{errors[0]!r}")
    count = len(latencies) or 1
    per_request = ms_per(cpu, 'server', count, 6)
    from http_app import ANSWER
    return {
        'part': 'http', 'http': _measure.ENGINE_HTTP, 'workers': 2,
        'threads': 4, 'clients': clients, 'seconds': round(duration, 1),
        'request_bytes': len(http_servers.BODY),
        'answer_bytes': len(ANSWER),
        'requests_per_s': round(len(latencies) / duration),
        'server_cpu_ms_per_request': round(per_request, 3),
        'cpu_ms_per_order': round(2 * per_request, 3),
        'loadgen_cpu_ms_per_request': ms_per(cpu, 'loadgen', count),
        'server_pct': cpu['server_pct'],
        **_measure.machine(cpu, load_before),
        }


# --- 2. PostgreSQL ----------------------------------------------------------

SCHEMA = f"""
CREATE TABLE floor_slot (id int PRIMARY KEY, capacity int NOT NULL,
    booked int NOT NULL DEFAULT 0);
INSERT INTO floor_slot (id, capacity)
    SELECT g, 1000000000 FROM generate_series(1, {SLOTS}) g;
CREATE TABLE floor_order (id bigint PRIMARY KEY, slot int NOT NULL,
    persons int NOT NULL, created timestamptz NOT NULL DEFAULT now());
CREATE TABLE floor_payment (id bigint PRIMARY KEY, "order" bigint NOT NULL,
    amount numeric NOT NULL, created timestamptz NOT NULL DEFAULT now());
"""
# One transaction, one statement: the order's row and the slot's claim
# (refused when full: no row comes back).
BOOK = """WITH o AS (INSERT INTO floor_order (id, slot, persons)
    VALUES (%(id)s, %(slot)s, %(persons)s) RETURNING slot, persons)
UPDATE floor_slot s SET booked = s.booked + o.persons FROM o
WHERE s.id = o.slot AND s.booked + o.persons <= s.capacity
RETURNING s.booked"""
PAY = """INSERT INTO floor_payment (id, "order", amount)
VALUES (%(id)s, %(id)s, %(amount)s)"""


# The order's rows as the engine writes them (sql/engine.sql scenic_book
# and scenic_pay, narrowed to the columns that matter): the order, its
# line, 2 visitors (unique by ID hash), 2 tickets, 2 per-ID day claims,
# the slot's places and a stripe of the day's counter; then the payment,
# the tickets' codes, the order's state and the slot-sales rollup row.
ROWS_SCHEMA = """
CREATE TABLE floor_day_stripe (id serial PRIMARY KEY, stripe int NOT NULL,
    booked int NOT NULL DEFAULT 0, maximum int NOT NULL);
INSERT INTO floor_day_stripe (stripe, maximum)
    SELECT g, 1000000000 FROM generate_series(0, 7) g;
CREATE TABLE r_order (id serial PRIMARY KEY, reference text NOT NULL UNIQUE,
    channel int NOT NULL, slot int NOT NULL REFERENCES floor_slot,
    visit_date date NOT NULL, state text NOT NULL, contact_name text,
    contact_phone text, hold_expires_at timestamp, total numeric,
    idempotency_key text, request_hash text, paid_at timestamp,
    create_uid int, create_date timestamp, write_uid int,
    write_date timestamp);
CREATE INDEX ON r_order (slot, state, hold_expires_at);
CREATE UNIQUE INDEX ON r_order (channel, idempotency_key);
CREATE TABLE r_line (id serial PRIMARY KEY,
    "order" int NOT NULL REFERENCES r_order ON DELETE CASCADE,
    ticket_type int, quantity int, persons int, unit_price numeric,
    amount numeric, price_explanation text, create_uid int,
    create_date timestamp);
CREATE TABLE r_visitor (id serial PRIMARY KEY, name text, id_type text,
    id_encrypted text, id_masked text, id_hash text NOT NULL UNIQUE,
    create_uid int, create_date timestamp);
CREATE TABLE r_ticket (id serial PRIMARY KEY,
    "order" int NOT NULL REFERENCES r_order ON DELETE CASCADE,
    line int REFERENCES r_line, visitor int REFERENCES r_visitor,
    slot int, visit_date date, holder_hash text, holder_masked text,
    persons int, entries_allowed int, valid_from timestamp,
    valid_until timestamp, state text NOT NULL, code text, key_id int,
    create_uid int, create_date timestamp, write_uid int,
    write_date timestamp);
CREATE INDEX ON r_ticket ("order");
CREATE INDEX ON r_ticket (holder_hash);
CREATE TABLE r_id_day (id serial PRIMARY KEY, date date NOT NULL,
    id_hash text NOT NULL, count int NOT NULL, UNIQUE (date, id_hash));
CREATE TABLE r_payment (id serial PRIMARY KEY,
    "order" int NOT NULL REFERENCES r_order, provider text,
    provider_reference text, amount numeric, date timestamp,
    create_uid int, create_date timestamp);
CREATE TABLE r_slot_sales (id serial PRIMARY KEY, slot int NOT NULL,
    channel int NOT NULL, ticket_type int NOT NULL, tickets int NOT NULL,
    amount numeric NOT NULL, UNIQUE (slot, channel, ticket_type));

CREATE FUNCTION floor_book(p json) RETURNS int LANGUAGE plpgsql AS $$
DECLARE
    v_now timestamp := now();
    v_order int;
    v_line int;
    v_slot int := (p->>'slot')::int;
    v_date date := current_date + 1;
    v_persons int := json_array_length(p->'visitors');
    r record;
BEGIN
    INSERT INTO r_order (reference, channel, slot, visit_date, state,
        contact_name, contact_phone, hold_expires_at, total,
        idempotency_key, request_hash, create_uid, create_date)
    VALUES (p->>'reference', 2, v_slot, v_date, 'reserved',
        p->>'contact_name', p->>'contact_phone', v_now + interval '15 min',
        (p->>'total')::numeric, p->>'reference', md5(p->>'reference'), 0,
        v_now)
    RETURNING id INTO v_order;
    INSERT INTO r_line ("order", ticket_type, quantity, persons,
        unit_price, amount, price_explanation, create_uid, create_date)
    VALUES (v_order, 1, v_persons, v_persons, 115.20,
        (p->>'total')::numeric, 'base 120.00; Winter season -20 %', 0,
        v_now)
    RETURNING id INTO v_line;
    INSERT INTO r_visitor (name, id_type, id_encrypted, id_masked, id_hash,
        create_uid, create_date)
    SELECT x->>'name', 'resident_id', x->>'encrypted', x->>'masked',
        x->>'hash', 0, v_now
    FROM json_array_elements(p->'visitors') x ORDER BY x->>'hash'
    ON CONFLICT (id_hash) DO NOTHING;
    INSERT INTO r_ticket ("order", line, visitor, slot, visit_date,
        holder_hash, holder_masked, persons, entries_allowed, valid_from,
        valid_until, state, create_uid, create_date)
    SELECT v_order, v_line, (SELECT v.id FROM r_visitor v
            WHERE v.id_hash = x->>'hash'), v_slot, v_date, x->>'hash',
        x->>'masked', 1, 1, v_now, v_now + interval '30 min', 'reserved',
        0, v_now
    FROM json_array_elements(p->'visitors') x;
    FOR r IN SELECT x->>'hash' AS id_hash
            FROM json_array_elements(p->'visitors') x ORDER BY 1 LOOP
        INSERT INTO r_id_day AS u (date, id_hash, count)
        VALUES (v_date, r.id_hash, 1)
        ON CONFLICT (date, id_hash) DO UPDATE SET count = u.count + 1
            WHERE u.count < 1;
        IF NOT FOUND THEN RETURN NULL; END IF;
    END LOOP;
    UPDATE floor_slot SET booked = booked + v_persons
        WHERE id = v_slot AND booked + v_persons <= capacity;
    IF NOT FOUND THEN RETURN NULL; END IF;
    UPDATE floor_day_stripe s SET booked = s.booked + v_persons
        WHERE s.id = (SELECT f.id FROM floor_day_stripe f
            WHERE f.booked + v_persons <= f.maximum
            ORDER BY (f.stripe + 8 - v_order % 8) % 8
            LIMIT 1 FOR UPDATE SKIP LOCKED);
    IF NOT FOUND THEN  -- every stripe busy: wait for one (the engine's
                       -- _claim_daily, in the same transaction)
        UPDATE floor_day_stripe s SET booked = s.booked + v_persons
            WHERE s.stripe = v_order % 8
            AND s.booked + v_persons <= s.maximum;
        IF NOT FOUND THEN RETURN NULL; END IF;
    END IF;
    -- the narrow runs' tables too (counters = persons), ids apart
    INSERT INTO floor_order (id, slot, persons)
        VALUES (-v_order, v_slot, v_persons);
    RETURN v_order;
END;
$$;

CREATE FUNCTION floor_pay(p json) RETURNS int LANGUAGE plpgsql AS $$
DECLARE
    v_now timestamp := now();
    v_order int := (p->>'order')::int;
    v_slot int;
    v_tickets int;
BEGIN
    SELECT slot INTO v_slot FROM r_order WHERE id = v_order
        AND state = 'reserved' FOR UPDATE;
    IF NOT FOUND THEN RETURN NULL; END IF;
    INSERT INTO r_payment ("order", provider, provider_reference, amount,
        date, create_uid, create_date)
    VALUES (v_order, 'simulated', 'SIM-' || v_order,
        (p->>'amount')::numeric, v_now, 0, v_now);
    UPDATE r_ticket t SET state = 'valid', code = p->>'code', key_id = 1,
        write_uid = 0, write_date = v_now
    WHERE t."order" = v_order AND t.state = 'reserved';
    GET DIAGNOSTICS v_tickets = ROW_COUNT;
    UPDATE r_order SET state = 'paid', paid_at = v_now, write_uid = 0,
        write_date = v_now WHERE id = v_order;
    INSERT INTO r_slot_sales AS s (slot, channel, ticket_type, tickets,
        amount)
    VALUES (v_slot, 2, 1, v_tickets, (p->>'amount')::numeric)
    ON CONFLICT (slot, channel, ticket_type) DO UPDATE
        SET tickets = s.tickets + excluded.tickets,
            amount = s.amount + excluded.amount;
    INSERT INTO floor_payment (id, "order", amount)
        VALUES (-v_order, -v_order, (p->>'amount')::numeric);
    RETURN v_tickets;
END;
$$;
"""
ROWS_BOOK = 'SELECT floor_book(%s::json)'
ROWS_PAY = 'SELECT floor_pay(%s::json)'
CODE = 'S' * 160  # a signed ticket code's length, about


def rows_book_params(order_id, rng):
    visitors = [{'name': '王伟', 'masked': '1101**********123X',
            'hash': f'{order_id:016x}{v}' + 'h' * 46,
            'encrypted': 'e' * 120} for v in range(VISITORS)]
    return (json.dumps({'reference': f'W{order_id:015d}',
            'slot': rng.randint(1, SLOTS), 'contact_name': '王伟',
            'contact_phone': '13800138000', 'total': '230.40',
            'visitors': visitors}, ensure_ascii=False),)


async def pg_orders(uri, clients, seconds, synchronous_commit, first_id,
        meter=None, shape='narrow'):
    """`clients` connections booking and paying for `seconds`; with a
    meter, measured between the connections' opening and closing (a
    backend's CPU is lost to the meter once it has exited). Return
    (orders, duration, cpu)."""
    import psycopg
    counts = [0] * clients
    refused = []
    conns = await asyncio.gather(*[psycopg.AsyncConnection.connect(
                _measure.conninfo(uri, 'floor'), autocommit=True,
                prepare_threshold=0,
                options=f'-c synchronous_commit={synchronous_commit}')
            for _ in range(clients)])

    async def client(n, conn, deadline):
        rng = random.Random(n)
        order_id = first_id + n * 10_000_000
        while time.monotonic() < deadline:
            order_id += 1
            if shape == 'rows':
                cursor = await conn.execute(ROWS_BOOK,
                    rows_book_params(order_id, rng))
                order, = await cursor.fetchone()
                if order is None:
                    refused.append(order_id)
                    continue
                cursor = await conn.execute(ROWS_PAY, (json.dumps({
                            'order': order, 'amount': '230.40',
                            'code': CODE}),))
                if (await cursor.fetchone())[0] != VISITORS:
                    refused.append(order_id)
                    continue
            else:
                cursor = await conn.execute(BOOK, {'id': order_id,
                        'slot': rng.randint(1, SLOTS), 'persons': VISITORS})
                if await cursor.fetchone() is None:
                    refused.append(order_id)
                    continue
                await conn.execute(PAY, {'id': order_id,
                        'amount': Decimal('240.00')})
            counts[n] += 1
    cpu = {}
    try:
        if meter:
            meter.start()
        started = time.monotonic()
        await asyncio.gather(*[client(n, conn, started + seconds)
                for n, conn in enumerate(conns)])
        duration = time.monotonic() - started
        if meter:
            cpu = meter.stop()
    finally:
        for conn in conns:
            await conn.close()
    if refused:
        raise BenchError(f"{len(refused)} claims refused: the slots' "
            "capacity is meant to be out of reach")
    return sum(counts), duration, cpu


# the engine's round trips per order: 8 since the sixth pass, 4 since the
# commits go with the writes and a booking's reads together (engine-plan)
ROUND_TRIPS = 4


def _run_threads(uri, conns, one, seconds):
    """Call one(n, conn) over and over for `seconds`, a thread per
    connection (the engine's blocking threads, each on its own
    connection), then close the connections. Return (calls, duration,
    CPU of this process and of PostgreSQL meanwhile)."""
    import threading
    postmaster = _measure.postmaster_pid(uri, 'floor')
    meter = _measure.CPUMeter({'postgres': postmaster}, own='client')
    counts = [0] * len(conns)
    stop = threading.Event()

    def work(n, conn):
        while not stop.is_set():
            one(n, conn)
            counts[n] += 1
    workers = [threading.Thread(target=work, args=(n, conn))
        for n, conn in enumerate(conns)]
    try:
        meter.start()
        started = time.monotonic()
        for worker in workers:
            worker.start()
        time.sleep(seconds)
        stop.set()
        for worker in workers:
            worker.join()
        duration = time.monotonic() - started
        cpu = meter.stop()
    finally:
        stop.set()
        for conn in conns:
            conn.close()
    return sum(counts), duration, cpu


def round_trips(uri, seconds, threads=8):
    """What the engine's round trips cost by themselves: `threads` threads
    in one process (granian's 2 x 4 blocking threads), each on its own
    connection, sending ROUND_TRIPS trivial prepared statements per
    "order" as the engine sends its reads and calls. CPU of this process
    (psycopg's client side and the threads' hand-offs) and of PostgreSQL
    per order. Return (orders, duration, cpu)."""
    import psycopg
    conns = [psycopg.connect(_measure.conninfo(uri, 'floor'),
            autocommit=True, prepare_threshold=0) for _ in range(threads)]

    def order(n, conn):
        for i in range(ROUND_TRIPS):
            conn.execute('SELECT %s::int', (i,)).fetchone()
    return _run_threads(uri, conns, order, seconds)


# What a transaction's framing and the engine's third transaction cost
# (`transactions`): per "operation", as the engine sends them.
TRANSACTIONS = {
    # one autocommit statement: the baseline
    'statement': "a statement alone (autocommit)",
    # psycopg's implicit transaction: BEGIN, the statement, COMMIT, three
    # round trips (the engine before the sixth pass)
    'begin_commit': "BEGIN, statement, COMMIT: 3 round trips",
    # the engine since the sixth pass: BEGIN with the statement in one
    # pipeline, then COMMIT
    'pipelined': "BEGIN + statement in one pipeline, COMMIT: 2 round trips",
    # the hold counter: one upsert of one row every booking updates (all
    # the rush's clients share an address), its own transaction, commit
    # not waiting for the disk
    'hold_counter': "the hold counter's own transaction (hot row, "
        "synchronous_commit off)",
    }
RATE_SCHEMA = """CREATE TABLE IF NOT EXISTS floor_rate (key text PRIMARY KEY,
    count int NOT NULL)"""
RATE_ADD = """INSERT INTO floor_rate AS r (key, count) VALUES (%s, 1)
ON CONFLICT (key) DO UPDATE SET count = r.count + 1"""


def transactions(uri, mode, seconds, threads=8):
    """One kind of transaction (TRANSACTIONS) sent over and over from
    `threads` threads of one process, each on its own connection, as the
    engine's threads send them: CPU of this process and of PostgreSQL per
    operation. Return (operations, duration, cpu)."""
    import psycopg
    options = '-c synchronous_commit=off' if mode == 'hold_counter' else ''
    conns = [psycopg.connect(_measure.conninfo(uri, 'floor'),
            autocommit=mode != 'begin_commit', prepare_threshold=0,
            options=options) for _ in range(threads)]

    def operation(n, conn):
        if mode == 'pipelined':
            with conn.pipeline():
                conn.execute('BEGIN')
                cursor = conn.execute('SELECT %s::int', (n,))
            cursor.fetchone()
            conn.execute('COMMIT')
        elif mode == 'hold_counter':
            conn.execute(RATE_ADD, ('hold-client:127.0.0.1',))
        else:
            conn.execute('SELECT %s::int', (n,)).fetchone()
            if mode == 'begin_commit':
                conn.commit()
    return _run_threads(uri, conns, operation, seconds)


def pg_floor(clients, seconds):
    lines = []
    with throwaway_cluster(settings=dict(_measure.DURABLE_PG_SETTINGS)) as uri:
        with _measure.pg_connect(uri, 'postgres', autocommit=True) as conn:
            conn.execute('CREATE DATABASE floor')
        with _measure.pg_connect(uri, 'floor', autocommit=True) as conn:
            conn.execute(SCHEMA)
            conn.execute(ROWS_SCHEMA)
            conn.execute(RATE_SCHEMA)
            settings = dict(conn.execute(
                "SELECT name, setting FROM pg_settings WHERE name IN "
                "('fsync', 'synchronous_commit', 'full_page_writes', "
                "'wal_sync_method', 'shared_buffers')").fetchall())
        if settings.get('fsync') != 'on' or (
                settings.get('synchronous_commit') != 'on'):
            raise BenchError(f"the cluster is not durable: {settings}")
        postmaster = _measure.postmaster_pid(uri, 'floor')
        meter = _measure.CPUMeter({'postgres': postmaster})
        for shape in ('narrow', 'rows'):  # warm-up
            asyncio.run(pg_orders(uri, 4, 1, 'on', 0, shape=shape))
        runs = [('narrow', 'on'), ('narrow', 'off'), ('rows', 'on')]
        for n, (shape, synchronous_commit) in enumerate(runs, start=1):
            load_before = load()
            orders, duration, cpu = asyncio.run(pg_orders(uri, clients,
                    seconds, synchronous_commit, n * 10**12, meter, shape))
            with _measure.pg_connect(uri, 'floor') as conn:
                booked, = conn.execute(
                    'SELECT sum(booked) FROM floor_slot').fetchone()
                ordered, = conn.execute(
                    'SELECT sum(persons) FROM floor_order').fetchone()
            if booked != ordered:
                raise BenchError(f"counters {booked} != orders' persons "
                    f"{ordered}")
            count = orders or 1
            lines.append({
                'part': 'pg', 'shape': shape,
                'synchronous_commit': synchronous_commit,
                'durable': synchronous_commit == 'on',
                'fsync': settings.get('fsync'),
                'wal_sync_method': settings.get('wal_sync_method'),
                'clients': clients, 'seconds': round(duration, 1),
                'transactions_per_order': 2, 'statements_per_order': 2,
                'orders_per_s': round(orders / duration),
                'cpu_ms_per_order': ms_per(cpu, 'postgres', count),
                'loadgen_cpu_ms_per_order': ms_per(cpu, 'loadgen', count),
                'postgres_pct': cpu['postgres_pct'],
                **_measure.machine(cpu, load_before),
                })
        load_before = load()
        orders, duration, cpu = round_trips(uri, seconds)
        count = orders or 1
        lines.append({
            'part': 'round_trips', 'threads': 8,
            'statements_per_order': ROUND_TRIPS,
            'seconds': round(duration, 1),
            'orders_per_s': round(orders / duration),
            'client_cpu_ms_per_order': ms_per(cpu, 'client', count),
            'pg_cpu_ms_per_order': ms_per(cpu, 'postgres', count),
            **_measure.machine(cpu, load_before),
            })
        for mode, what in TRANSACTIONS.items():
            load_before = load()
            operations, duration, cpu = transactions(uri, mode, seconds)
            count = operations or 1
            lines.append({
                'part': 'transactions', 'mode': mode, 'what': what,
                'threads': 8, 'seconds': round(duration, 1),
                'operations_per_s': round(operations / duration),
                'client_cpu_ms_per_operation': ms_per(cpu, 'client', count),
                'pg_cpu_ms_per_operation': ms_per(cpu, 'postgres', count),
                **_measure.machine(cpu, load_before),
                })
    return lines


# --- 3. Python rules --------------------------------------------------------

class _Cursor:
    "What write_booking_db's statement would get back: the order's id."

    def __init__(self, conn):
        self.conn = conn

    def execute(self, query, params=()):
        self.conn.sent.append(params)
        self.conn.next_id += 1

    def fetchone(self):
        return ({'order': self.conn.next_id},)


class _Connection:
    "Stands for the engine's psycopg connection: keeps what was sent."

    def __init__(self):
        self.sent = []
        self.next_id = 0

    def cursor(self):
        return _Cursor(self)


def _configure():
    "trytond's configuration as the engine's: a bench-only personal-data key."
    from trytond import config
    if not config.has_section('scenic'):
        config.add_section('scenic')
    config.set('scenic', 'pii_key', PII_KEY)


def python_setup():
    """The real engine functions with an in-memory catalogue (the demo's
    ADULT type and price rules) and slot: what the database reads would
    have returned."""
    _configure()
    from zoneinfo import ZoneInfo

    from scenic_common import ticketcode
    from scenic_ticket import catalogue, pricing
    rules = (
        pricing.Rule(1, "Public holiday adult price", 10, 'fixed',
            Decimal(150), final=True, ticket_types=frozenset({1}),
            day_kind='holiday'),
        pricing.Rule(2, "Weekend", 20, 'percentage', Decimal(20),
            weekdays=frozenset({5, 6})),
        pricing.Rule(3, "Winter season", 30, 'percentage', Decimal(-20),
            date_from=dt.date(2026, 12, 1), date_to=dt.date(2027, 2, 28)),
        pricing.Rule(4, "Early bird (before 09:00)", 40, 'amount',
            Decimal(-10), time_to=dt.time(9, 0)),
        pricing.Rule(5, "High demand (80 % sold)", 50, 'percentage',
            Decimal(10), min_fill_ratio=Decimal('0.80')),
        pricing.Rule(6, "OTA commission", 60, 'amount', Decimal(-5),
            channels=frozenset({9})),
        )
    adult = catalogue.TypeInfo(id=1, code='ADULT', name='成人票',
        active=True, is_card=False, validity='time_slot',
        validity_days=None, persons=1, entries=1, real_name=True,
        id_limit=1, base_price=Decimal(120), channels=frozenset(),
        zones=((1, 10080),))
    snapshot = catalogue.Snapshot(company=1, timezone='Asia/Shanghai',
        daily_max=10080, currency=1, currency_code='CNY', digits=2,
        types=(adult,), rules=rules,
        holidays=frozenset({dt.date(2027, 1, 1)}))
    tz = ZoneInfo('Asia/Shanghai')
    day = (dt.datetime.now(tz) + dt.timedelta(days=1)).date()
    slot = catalogue.SlotInfo(7, 1, day, dt.time(10), dt.time(10, 30),
        400, 120, tz, 'MAIN')

    class FloorCatalogue(catalogue.Catalogue):
        def slot(self, slot_id):
            return slot if slot_id == slot.id else None

    return SimpleNamespace(
        catalogue=FloorCatalogue(1, snapshot=snapshot), slot=slot, tz=tz,
        channel=SimpleNamespace(id=2, code='web', hold_minutes=15,
            company=SimpleNamespace(id=1), stamp=None),
        signer=ticketcode.SigningKey.generate(1))


def python_order(env, body, pay_body, conn):
    """One order's Python, as engine.Engine.book and .pay run it between
    their reads and writes. Return the two answers' bytes."""
    from scenic_ticket import api, dbtools, reservation
    from scenic_ticket.engine import Answer, Engine, order_from
    from scenic_ticket.order import ORDER_TRANSITIONS
    from scenic_ticket.workflow import StateMachine

    class Order(StateMachine):  # scenic.order's declared moves
        _transitions = ORDER_TRANSITIONS
    # book
    booking = api.parse_booking(json.loads(body))
    now = dbtools.now_utc()
    plan = reservation.plan_booking(env.channel, booking, now=now,
        catalogue=env.catalogue)
    order_id = reservation.write_booking_db(plan, 'k' * 32, now=now)
    booked = Answer(api.order_json(
            Engine.planned_order(plan, env.catalogue, now), 'rush',
            tz=env.catalogue.timezone), status=201).get_data()
    # pay
    if pay_body is None:  # warm-up: the client sends the booked total
        pay_body = json.dumps({'provider': 'simulated',
                'amount': str(plan.total)}).encode()
    data = json.loads(pay_body)
    amount = api.parse_amount(data['amount'])
    expires = dbtools.naive(now + dt.timedelta(minutes=15))
    if reservation.check_payable(Order, 'reserved', Decimal(0), expires,
            plan.total, amount, now) is not None:
        raise BenchError("the order was not payable")
    tickets = [(order_id * 10 + n, t.ticket_type.id,
            dbtools.naive(t.valid_from), dbtools.naive(t.valid_until),
            t.ticket_type.persons, t.ticket_type.entries, t.holder_hash)
        for n, t in enumerate(plan.tickets)]
    codes = [reservation.ticket_code(env.signer, 1, *t) for t in tickets]
    sent = json.dumps({
            'order': order_id, 'company': 1, 'provider': 'simulated',
            'provider_reference': 'SIM-' + plan.reference,
            'amount': amount, 'currency': 1, 'now': dbtools.naive(now),
            'uid': 0, 'key_id': env.signer.key_id,
            'tickets': [t[0] for t in tickets], 'codes': codes,
            'ticket_sources': ['reserved'], 'order_sources': ['reserved'],
            'ticket_hooks': [], 'order_hooks': [],
            }, default=str)
    conn.sent.append(sent)
    # what scenic_pay answers (sql/engine.sql scenic_order_answer)
    slot = env.slot
    answer = {
        'id': order_id, 'reference': plan.reference, 'state': 'paid',
        'total': str(plan.total), 'currency': 'CNY',
        'visit_date': slot.date.isoformat(),
        'contact_name': booking.contact_name,
        'hold_expires_at': expires.isoformat(),
        'timezone': 'Asia/Shanghai',
        'slot': [slot.id, slot.zone, slot.date.isoformat(),
            slot.start_time.isoformat(), slot.end_time.isoformat(),
            slot.capacity, slot.booked],
        'lines': [['ADULT', '成人票', l['quantity'], l['persons'],
                str(l['unit_price']), str(l['amount'])] for l in plan.lines],
        'tickets': [[t[0], 'ADULT', 'valid', code, pt.holder_masked, 1, 1,
                t[2].isoformat(), t[3].isoformat()]
            for t, code, pt in zip(tickets, codes, plan.tickets)],
        }
    answer = json.loads(json.dumps(answer))  # as psycopg hands it over
    order = order_from(answer)
    paid = Answer(api.order_json(order, 'rush', tz=order.tz)).get_data()
    return booked, paid


def python_bodies(orders, seed=1):
    "Distinct booking bodies with valid resident IDs, as the rush sends."
    from scenic_common import idnumber
    rng = random.Random(seed)
    bodies = []
    for n in range(orders):
        people = []
        for v in range(VISITORS):
            birth = dt.date(1950, 1, 1) + dt.timedelta(days=rng.randrange(
                    20000))
            people.append({'name': '王伟', 'id_type': 'resident_id',
                    'id_number': idnumber.make_resident_id(
                        birth=birth, sequence=rng.randrange(1000))})
        bodies.append(json.dumps({'slot': 7, 'items': [
                    {'ticket_type': 'ADULT', 'visitors': people}],
                'contact': {'name': '王伟',
                    'phone': f'13{rng.randrange(10**9):09d}'},
                }, ensure_ascii=False).encode())
    return bodies


def python_floor(orders, threads=1):
    """The engine's Python for `orders` orders, in `threads` threads (the
    engine runs 4 blocking threads a process: they take turns on the
    GIL)."""
    import threading

    from scenic_ticket import dbtools
    env = python_setup()
    bodies = python_bodies(orders + 50)
    conn = _Connection()
    token = dbtools.use_session(dbtools.Session(conn, 0))
    try:
        for body in bodies[:50]:  # warm-up
            booked, _ = python_order(env, body, None, conn)
    finally:
        dbtools.end_session(token)
    total = json.loads(booked)['total']
    pay_body = json.dumps({'provider': 'simulated',
            'amount': total}).encode()
    answers, failures = [], []

    def work(share):
        conn = _Connection()
        token = dbtools.use_session(dbtools.Session(conn, 0))
        try:
            for body in share:
                answer = python_order(env, body, pay_body, conn)
            answers.append(answer)
        except BaseException as error:
            failures.append(error)
        finally:
            dbtools.end_session(token)
    shares = [bodies[50 + n::threads] for n in range(threads)]
    workers = [threading.Thread(target=work, args=(share,))
        for share in shares]
    meter = _measure.CPUMeter({})
    load_before = load()
    with meter.measure() as cpu:
        started = time.perf_counter()
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()
        duration = time.perf_counter() - started
    if failures:
        raise failures[0]
    booked, paid = answers[0]
    sizes = [len(booked), len(paid)]
    paid = json.loads(paid)
    if paid['state'] != 'paid' or len(paid['tickets']) != VISITORS or not (
            all(t['code'] for t in paid['tickets'])):
        raise BenchError(f"unexpected pay answer: {paid}")
    return {
        'part': 'python', 'orders': orders, 'threads': threads,
        'seconds': round(duration, 2),
        'cpu_ms_per_order': ms_per(cpu, 'loadgen', orders),
        'wall_ms_per_order': round(1000 * duration / orders, 3),
        'tickets_signed_per_order': VISITORS,
        'answer_bytes': sizes,
        **_measure.machine(cpu, load_before),
        }


# --- main -------------------------------------------------------------------

def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--quick', action='store_true',
        help="shorter runs (5 s a part, 500 orders in Python)")
    parser.add_argument('--clients', type=int, default=64)
    parser.add_argument('--seconds', type=float, default=None,
        help="seconds of the HTTP run and of each PostgreSQL run (20)")
    parser.add_argument('--orders', type=int, default=None,
        help="orders of the Python loop (3000)")
    parser.add_argument('--parts', default='http,pg,python')
    args = parser.parse_args(argv)
    if args.seconds is None:
        args.seconds = 5 if args.quick else 20
    if args.orders is None:
        args.orders = 500 if args.quick else 3000
    args.parts = [p for p in args.parts.split(',') if p]
    if not set(args.parts) <= {'http', 'pg', 'python'} or not args.parts:
        parser.error("--parts takes http, pg, python")
    if args.clients < 1 or args.seconds <= 0 or args.orders < 1:
        parser.error("positive clients, seconds and orders")
    return args


def main(argv=None):
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, _measure.terminate)
    lines = []

    def emit(line):
        _measure.emit(line, lines)
    if 'python' in args.parts:
        emit(python_floor(args.orders))
        # as in a granian worker: 4 threads taking turns on the GIL
        emit(python_floor(args.orders, threads=4))
    if 'http' in args.parts:
        emit(http_floor(args.clients, args.seconds))
    if 'pg' in args.parts:
        for line in pg_floor(args.clients, args.seconds):
            emit(line)
    by_part = {}
    for line in lines:
        if line['part'] in {'round_trips', 'transactions'} or (
                line['part'] == 'python' and line['threads'] != 1):
            continue
        if line['part'] != 'pg' or (
                line['durable'] and line['shape'] == 'narrow'):
            by_part[line['part']] = line['cpu_ms_per_order']
    rows = [l for l in lines if l['part'] == 'pg' and l['shape'] == 'rows']
    allowed = 1000 * cores() / TARGET_ORDERS_PER_S
    summary = {'summary': True, 'cores': cores(),
        'floor_ms_per_order': by_part,
        'allowed_ms_per_order': round(allowed, 2),
        'engine_measured_ms_per_order': ENGINE_CPU_MS,
        'load': load()}
    if set(by_part) == {'http', 'pg', 'python'}:
        floor = sum(by_part.values())
        summary.update({
            'floor_total_ms_per_order': round(floor, 2),
            'floor_ceiling_orders_per_s': round(1000 * cores() / floor),
            'engine_above_floor_ms': round(ENGINE_CPU_MS - floor, 2),
            })
        nondurable = [l for l in lines
            if l['part'] == 'pg' and not l['durable']]
        if nondurable:
            summary['durability_costs_pg_ms_per_order'] = round(
                by_part['pg'] - nondurable[0]['cpu_ms_per_order'], 3)
        threaded = [l for l in lines
            if l['part'] == 'python' and l['threads'] != 1]
        if threaded:
            summary['python_4_threads_ms_per_order'] = threaded[0][
                'cpu_ms_per_order']
        framing = {l['mode']: l for l in lines
            if l['part'] == 'transactions'}
        if framing:
            # CPU (client + PostgreSQL) above a statement alone
            def above(mode):
                return round(sum(framing[mode][k] - framing['statement'][k]
                        for k in ('client_cpu_ms_per_operation',
                            'pg_cpu_ms_per_operation')), 3)
            summary['transaction_framing_ms'] = {
                'begin_commit': above('begin_commit'),
                'pipelined': above('pipelined'),
                'hold_counter': round(sum(framing['hold_counter'][k]
                        for k in ('client_cpu_ms_per_operation',
                            'pg_cpu_ms_per_operation')), 3)}
        trips = [l for l in lines if l['part'] == 'round_trips']
        if trips:
            summary['round_trips_ms_per_order'] = {
                'client': trips[0]['client_cpu_ms_per_order'],
                'pg': trips[0]['pg_cpu_ms_per_order']}
        if rows:
            # the same with the order's rows written as the engine does
            with_rows = floor - by_part['pg'] + rows[0]['cpu_ms_per_order']
            summary.update({
                'pg_order_rows_ms_per_order': rows[0]['cpu_ms_per_order'],
                'floor_with_rows_ms_per_order': round(with_rows, 2),
                'floor_with_rows_ceiling_orders_per_s': round(
                    1000 * cores() / with_rows),
                'engine_above_floor_with_rows_ms': round(
                    ENGINE_CPU_MS - with_rows, 2),
                })
    emit(summary)
    return 0


if __name__ == '__main__':
    try:
        sys.exit(main())
    except BenchError as error:
        log(f"ERROR: {error}")
        sys.exit(2)
    except KeyboardInterrupt:
        sys.exit(130)
