#!/usr/bin/env python3
"""Reservation rush: the booking API on PostgreSQL under concurrent buyers.

How many real-name bookings per second the JSON booking API takes, and
whether capacity and per-ID rules hold under the load.

    python bench/reservation_rush.py [--clients 1,16,64,256] [--workers N]
        [--threads N] [--quick]

Everything runs on this machine and is thrown away afterwards: a PostgreSQL
cluster (scripts/pgcluster.py) with durable commits (fsync and
synchronous_commit on), database `rush` initialised with trytond-admin and
scripts/load_demo.py, and the booking engine
(`scenic_ticket.engine:make_app()`, in front of trytond's
application; `--server tryton` serves `trytond.application:app` alone, the
route before the engine) served on a free port of 127.0.0.1 by
`--http gunicorn` (gthread workers) or `--http granian` (Rust HTTP, WSGI
blocking threads), the same workers and threads.
Each line gives CPU per paid order by process (server, postgres), by layer
when profiled (HTTP server, Python handler, PostgreSQL) and the lock wait
per order sampled from pg_stat_activity.

For each client count C a fresh sale day (a future demo day, a different one
per C) is sold by C concurrent clients on keep-alive connections. Each client
repeatedly picks a slot with places left (from a cached GET /availability,
refreshed when a slot sells out), books 1–3 real-name ADULT visitors with
fresh resident IDs (in ~2 % of the orders one ID already booked that day,
which must be refused with 409 id_limit), and pays the order's total, until
the day is sold out or the time cap is reached.  Then the invariants are
checked in PostgreSQL: no slot oversold and `booked` equal to the persons of
live tickets, at most one ticket per ID and day, the day's load within the
area's maximum, every paid order's tickets carrying valid signed codes.

stdout gets one JSON line per client count and a summary line; progress goes
to stderr.  The exit status is 1 when a slot was oversold, a rule was
violated, the server failed (5xx, or `internal_error`, which the API sends
with status 400) or answered something else unexpected; 2 when the benchmark
could not run.  See bench/README.md.
"""
import argparse
import asyncio
import base64
import contextlib
import datetime as dt
import http.client
import json
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from pathlib import Path

import _measure  # noqa: E402  (bench/_measure.py, standard library only)
from _measure import BenchError, percentile  # noqa: E402

ROOT = _measure.ROOT
_measure.ensure_venv('psycopg', 'scenic_common')
import psycopg  # noqa: E402
from scenic_common import idnumber, ticketcode  # noqa: E402
from scenic_common.pii import PIIVault  # noqa: E402

sys.path.insert(0, str(ROOT / 'scripts'))
from pgcluster import throwaway_cluster  # noqa: E402

BIN = _measure.bin_dir()  # the venv's bin: trytond-admin, gunicorn
DATABASE = 'rush'
API_KEY = 'demo-web-key'  # scripts/load_demo.py DEMO_WEB_KEY
PREFIX = f'/{DATABASE}/scenic/v1'
TICKET_TYPE = 'ADULT'
DEMO_DAYS = 14  # scripts/load_demo.py SLOT_DAYS
PII_KEY = 'bench-only-key-rush-0123456789abcdef0123456789'
LIVE_ORDER_STATES = ('reserved', 'paid', 'partly_used', 'used', 'done')
TARGET = {'clients': 64, 'orders_per_s': 300, 'book_pay_p99_ms': 300}

# Durable commits as in production: an acknowledged booking must survive a
# crash.  pgcluster's defaults trade durability for speed; not here.
PG_SETTINGS = dict(_measure.DURABLE_PG_SETTINGS)

# Timeouts (seconds) of each phase, so that the run always ends by itself.
TIMEOUT_ADMIN = 300
TIMEOUT_LOAD_DEMO = 300
TIMEOUT_WARMUP = 40
TIMEOUT_REQUEST = 30
TIMEOUT_CHECK = 120

# Resident ID area codes (GB/T 2260) used to make visitors' IDs.
AREA_CODES = ['110101', '110105', '310104', '310115', '440305', '440106',
    '330106', '320102', '420102', '510104', '610113', '500103', '120101',
    '210102', '370102', '430102']
SURNAMES = '王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗'
GIVEN = ['伟', '芳', '娜', '敏', '静', '丽', '强', '磊', '军', '洋', '勇',
    '艳', '杰', '娟', '涛', '明', '超', '秀英', '霞', '平', '刚', '桂英']


def log(message):
    print(f"rush: {message}", file=sys.stderr, flush=True)


_terminate = _measure.terminate


# --- CPU accounting and the server (bench/_measure.py) ----------------------

_children = _measure.children


def CPUMeter(server_pid, postmaster_pid):
    """CPU used during a run by the load generator (this process), the
    server (master and workers) and the PostgreSQL backends, in % of one
    core."""
    return _measure.CPUMeter(
        {'server': server_pid, 'postgres': postmaster_pid}, own='loadgen')


def pg_connect(uri, dbname=DATABASE, **kwargs):
    return _measure.pg_connect(uri, dbname, **kwargs)


def write_config(tmpdir, uri):
    return _measure.write_config(tmpdir, uri, PII_KEY)


def initialise(uri, conf, tmpdir, timeout=None):
    """Create and fill database `rush` unless it already holds the demo;
    `timeout` (s) for each set-up step instead of the defaults."""
    _measure.initialise(uri, conf, tmpdir, DATABASE, log,
        timeout_admin=timeout or TIMEOUT_ADMIN,
        timeout_demo=timeout or TIMEOUT_LOAD_DEMO)


# --server: what the HTTP server serves. `engine` (default): the booking
# engine (addons/scenic_ticket/engine.py) in front of trytond's application;
# `tryton`: trytond's application alone, the route before the engine.
APPS = {
    'engine': 'scenic_ticket.engine:make_app()',
    'tryton': 'trytond.application:app',
    }


def Server(conf, tmpdir, workers, threads, app='engine', http='gunicorn'):
    "APPS[app] served by `http` (gunicorn or granian); stopped with its group."
    return _measure.Server(conf, tmpdir, DATABASE, workers, threads, log,
        ready_path=f'{PREFIX}/openapi.json', app=APPS[app], http=http)


def postmaster_pid(uri):
    "The PostgreSQL server's pid (for CPU accounting), or None."
    return _measure.postmaster_pid(uri, DATABASE)


# --- the sale day ------------------------------------------------------------

def _fresh_days(uri, exclude=()):
    "Future demo days nothing was booked on yet, earliest first."
    today = dt.date.today()
    with pg_connect(uri) as conn:
        rows = conn.execute("""
            SELECT date, sum(booked) FROM scenic_time_slot
            WHERE zone IS NULL AND date > %s GROUP BY date ORDER BY date""",
            (today,)).fetchall()
        loads = dict(conn.execute(
            "SELECT date, booked FROM scenic_daily_load WHERE scope='area'"
            ).fetchall())
    return [d for d, booked in rows
        if not booked and not loads.get(d) and d not in exclude]


def fresh_days(uri, count, exclude=()):
    "The first `count` _fresh_days."
    days = _fresh_days(uri, exclude)
    if len(days) < count:
        raise BenchError(f"{count} fresh sale days are needed, only "
            f"{len(days)} are left in database {DATABASE!r}")
    return days[:count]


def warm_up_day(uri):
    """The warm-up day: the demo's last day with slots (a database loaded
    yesterday ends a day before today + DEMO_DAYS - 1) while nothing is
    booked on it, else the last fresh day (a database reused with
    --pg-uri: the runs take the earliest ones). Every run starts on a warm
    server: without a warm-up each server thread's first requests opened
    its PostgreSQL connection and filled that backend's caches inside the
    measured run, among the slowest 1 % of its orders."""
    with pg_connect(uri) as conn:
        day = conn.execute("SELECT max(date) FROM scenic_time_slot "
            "WHERE zone IS NULL").fetchone()[0]
    if day is None or day <= dt.date.today():
        raise BenchError(f"database {DATABASE!r} has no future slots")
    days = _fresh_days(uri)
    if day in days:
        return day
    if not days:
        raise BenchError(f"database {DATABASE!r} has no fresh day left "
            "to warm up on")
    return days[-1]


def shrink_day(uri, day, capacity):
    "--quick: fewer places per slot, so that a day sells out in seconds."
    with pg_connect(uri) as conn:
        conn.execute("UPDATE scenic_time_slot SET capacity=%s "
            "WHERE zone IS NULL AND date=%s AND booked=0", (capacity, day))


class Stats:
    "What the clients saw."

    def __init__(self):
        self.lock = threading.Lock()
        self.book_ms = []       # POST /orders, every answer
        self.pay_ms = []        # POST /orders/<ref>/pay, every answer
        self.book_pay_ms = []   # both, for paid orders
        self.requests = 0
        self.paid_orders = 0
        self.tickets = 0
        self.codes = Counter()  # refusals and errors by code
        self.unexpected = Counter()
        self.server_errors = 0  # 5xx, or 'internal_error' (sent as 400)
        self.reconnects = 0
        self.id_reuse_attempts = 0
        self.id_reuse_refused = 0
        self.paid_references = []


class SaleDay:
    """The state the clients of one run share: the cached availability and
    the IDs booked so far (for the ~2 % re-use)."""

    def __init__(self, day, deadline, id_source, reuse_ratio, rng):
        self.day = day
        self.deadline = deadline
        self.ids = id_source
        self.reuse_ratio = reuse_ratio
        self.lock = threading.Lock()
        self.estimate = {}      # slot id -> places left, as we believe
        self.refresh_needed = True
        self.refreshing = False
        self.refreshes = 0
        self.sold_out = False
        self.daily_limit = False
        self.stopped = False
        self.booked_ids = []
        self.stats = Stats()
        self.rng = rng
        self.max_orders = None

    @property
    def availability_path(self):
        return f'{PREFIX}/availability?date={self.day.isoformat()}'

    def finished(self):
        return (self.sold_out or self.daily_limit or self.stopped
            or time.monotonic() >= self.deadline
            or (self.max_orders is not None
                and self.stats.paid_orders >= self.max_orders))

    def begin_refresh(self):
        with self.lock:
            if self.refreshing or not self.refresh_needed:
                return False
            self.refreshing = True
            return True

    def end_refresh(self, status, body):
        with self.lock:
            self.refreshing = False
            if status != 200:
                return
            self.refresh_needed = False
            self.refreshes += 1
            data = json.loads(body)
            self.estimate = {
                s['id']: s['available'] for s in data['slots']
                if s['available'] > 0 and any(
                    p['ticket_type'] == TICKET_TYPE for p in s['prices'])}
            if not self.estimate:
                self.sold_out = True

    def pick(self, rng):
        "(slot, persons) for a new order, or None if we must refresh."
        with self.lock:
            slots = [s for s, left in self.estimate.items() if left > 0]
            if not slots:
                self.refresh_needed = True
                return None
            slot = rng.choice(slots)
            persons = min(rng.choice((1, 1, 2, 2, 2, 3, 3)),
                self.estimate[slot])
            self.estimate[slot] -= persons
            if self.estimate[slot] <= 0:
                self.refresh_needed = True
            return slot, persons

    def give_back(self, slot, persons):
        with self.lock:
            if slot in self.estimate:
                self.estimate[slot] += persons

    def slot_full(self, slot):
        with self.lock:
            self.estimate[slot] = 0
            self.refresh_needed = True

    def visitors(self, rng, count):
        "count visitors; maybe one with an ID already booked that day."
        reused = None
        with self.lock:
            if self.booked_ids and rng.random() < self.reuse_ratio:
                reused = rng.choice(self.booked_ids)
        people = []
        for i in range(count):
            if i == 0 and reused:
                number = reused
            else:
                number = self.ids.next()
            people.append({
                    'name': rng.choice(SURNAMES) + rng.choice(GIVEN),
                    'id_type': 'resident_id', 'id_number': number})
        rng.shuffle(people)
        return people, reused

    def booked(self, people):
        with self.lock:
            self.booked_ids.extend(p['id_number'] for p in people)


class IDSource:
    "Fresh, valid, unique resident IDs (varying area, birth and sequence)."

    def __init__(self, seed):
        self.lock = threading.Lock()
        self.counter = seed * 1_000_003
        self.born = dt.date(1950, 1, 1)

    def next(self):
        with self.lock:
            n = self.counter
            self.counter += 1
        area = AREA_CODES[n % len(AREA_CODES)]
        n //= len(AREA_CODES)
        sequence = n % 1000
        birth = self.born + dt.timedelta(days=(n // 1000) % 20000)
        return idnumber.make_resident_id(area, birth, sequence)


# --- the client scenario (no I/O: drivers below do it) -----------------------

class Request:
    __slots__ = ('method', 'path', 'body', 'headers')

    def __init__(self, method, path, body=None, headers=None):
        self.method = method
        self.path = path
        self.body = body
        self.headers = headers or {}


class Sleep:
    __slots__ = ('seconds',)

    def __init__(self, seconds):
        self.seconds = seconds


def _error_code(body):
    try:
        return json.loads(body)['error']['code']
    except (ValueError, KeyError, TypeError):
        return None


def client_flow(sale, rng):
    """One client: book and pay until the day is sold out.

    A generator: it yields Request (and Sleep) objects and receives
    (status, headers, body, seconds) for each Request."""
    stats = sale.stats
    while not sale.finished():
        if sale.refresh_needed and sale.begin_refresh():
            status, _, body, _ = yield Request('GET', sale.availability_path)
            with stats.lock:
                stats.requests += 1
                if status != 200:
                    code = _error_code(body) or f'http_{status}'
                    stats.unexpected[f'availability_{code}'] += 1
                    if status >= 500 or code == 'internal_error':
                        stats.server_errors += 1
            sale.end_refresh(status, body)
            continue
        choice = sale.pick(rng)
        if choice is None:
            yield Sleep(0.005)  # another client is refreshing
            continue
        slot, persons = choice
        people, reused = sale.visitors(rng, persons)
        body = json.dumps({
                'slot': slot,
                'items': [{'ticket_type': TICKET_TYPE, 'visitors': people}],
                'contact': {'name': people[0]['name'],
                    'phone': f'13{rng.randrange(10**9):09d}'},
                }, ensure_ascii=False).encode()
        status, headers, answer, book_s = yield Request(
            'POST', f'{PREFIX}/orders', body,
            {'Idempotency-Key': uuid.uuid4().hex})
        with stats.lock:
            stats.requests += 1
            stats.book_ms.append(book_s * 1000)
            if reused:
                stats.id_reuse_attempts += 1
        if status != 201:
            sale.give_back(slot, persons)
            code = _error_code(answer) or f'http_{status}'
            with stats.lock:
                stats.codes[code] += 1
                if status >= 500 or code == 'internal_error':
                    stats.server_errors += 1
                    stats.unexpected[code] += 1
                elif code == 'id_limit':
                    if reused:
                        stats.id_reuse_refused += 1
                    else:
                        stats.unexpected['id_limit_fresh_ids'] += 1
                elif code not in {'sold_out', 'daily_limit'}:
                    stats.unexpected[code] += 1
            if code == 'sold_out':
                sale.slot_full(slot)
            elif code == 'daily_limit':
                sale.daily_limit = True
            continue
        order = json.loads(answer)
        if reused:
            # The per-ID rule let an ID book twice on one day.
            with stats.lock:
                stats.unexpected['id_limit_not_enforced'] += 1
        sale.booked(people)
        status, _, answer, pay_s = yield Request(
            'POST', f"{PREFIX}/orders/{order['order']}/pay",
            json.dumps({'provider': 'simulated',
                    'amount': order['total']}).encode())
        with stats.lock:
            stats.requests += 1
            stats.pay_ms.append(pay_s * 1000)
            if status == 200:
                stats.paid_orders += 1
                stats.tickets += persons
                stats.book_pay_ms.append((book_s + pay_s) * 1000)
                stats.paid_references.append(order['order'])
            else:
                code = _error_code(answer) or f'http_{status}'
                stats.codes[f'pay_{code}'] += 1
                stats.unexpected[f'pay_{code}'] += 1
                if status >= 500 or code == 'internal_error':
                    stats.server_errors += 1


COMMON_HEADERS = {
    'Host': '127.0.0.1',
    'Authorization': f'Bearer {API_KEY}',
    'Accept': 'application/json',
    }


# --- driver 1: asyncio, a minimal HTTP/1.1 keep-alive client -----------------

class AsyncConnection:

    def __init__(self, port, stats):
        self.port = port
        self.stats = stats
        self.reader = self.writer = None

    async def close(self):
        if self.writer:
            self.writer.close()
            with contextlib.suppress(Exception):
                await self.writer.wait_closed()
        self.reader = self.writer = None

    async def _exchange(self, data):
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(
                '127.0.0.1', self.port)
        self.writer.write(data)
        head = await self.reader.readuntil(b'\r\n\r\n')
        lines = head.decode('latin-1').split('\r\n')
        status = int(lines[0].split(' ', 2)[1])
        headers = {}
        for line in lines[1:]:
            if line:
                name, _, value = line.partition(':')
                headers[name.strip().lower()] = value.strip()
        if 'content-length' in headers:
            body = await self.reader.readexactly(
                int(headers['content-length']))
        elif headers.get('transfer-encoding', '').lower() == 'chunked':
            body = b''
            while True:
                size = int((await self.reader.readuntil(b'\r\n')).split(
                        b';')[0], 16)
                chunk = await self.reader.readexactly(size + 2)
                if not size:
                    break
                body += chunk[:-2]
        else:
            body = await self.reader.read()
            headers['connection'] = 'close'
        if headers.get('connection', '').lower() == 'close':
            await self.close()
        return status, headers, body

    async def request(self, req):
        head = [f'{req.method} {req.path} HTTP/1.1']
        headers = {**COMMON_HEADERS, **req.headers}
        if req.body is not None:
            headers['Content-Type'] = 'application/json'
            headers['Content-Length'] = str(len(req.body))
        head += [f'{k}: {v}' for k, v in headers.items()]
        data = ('\r\n'.join(head) + '\r\n\r\n').encode() + (req.body or b'')
        for attempt in range(2):
            reused = self.writer is not None
            start = time.perf_counter()
            try:
                status, headers, body = await asyncio.wait_for(
                    self._exchange(data), TIMEOUT_REQUEST)
                return status, headers, body, time.perf_counter() - start
            except (ConnectionError, asyncio.IncompleteReadError,
                    OSError) as error:
                await self.close()
                # The server closed an idle keep-alive connection: send
                # again (safe: bookings carry an Idempotency-Key and a
                # repeated payment of the same amount is a no-op).
                if attempt == 0 and reused:
                    with self.stats.lock:
                        self.stats.reconnects += 1
                    continue
                return 599, {}, json.dumps({'error': {
                    'code': f'connection_{type(error).__name__}'}}).encode(), \
                    time.perf_counter() - start
            except asyncio.TimeoutError:
                await self.close()
                return 599, {}, b'{"error":{"code":"client_timeout"}}', \
                    time.perf_counter() - start


async def _async_client(port, sale, seed):
    rng = random.Random(seed)
    conn = AsyncConnection(port, sale.stats)
    flow = client_flow(sale, rng)
    try:
        step = next(flow)
        while True:
            if isinstance(step, Sleep):
                await asyncio.sleep(step.seconds)
                step = next(flow)
            else:
                step = flow.send(await conn.request(step))
    except StopIteration:
        pass
    finally:
        await conn.close()


def drive_asyncio(port, sale, clients, seed):
    async def main():
        await asyncio.gather(*[_async_client(port, sale, seed + i)
                for i in range(clients)])
    asyncio.run(main())


# --- driver 2: threads with http.client --------------------------------------

def _thread_client(port, sale, seed, errors):
    rng = random.Random(seed)
    conn = http.client.HTTPConnection('127.0.0.1', port,
        timeout=TIMEOUT_REQUEST)
    flow = client_flow(sale, rng)

    def send(req):
        headers = {**COMMON_HEADERS, **req.headers}
        if req.body is not None:
            headers['Content-Type'] = 'application/json'
        for attempt in range(2):
            reused = conn.sock is not None
            start = time.perf_counter()
            try:
                conn.request(req.method, req.path, req.body, headers)
                response = conn.getresponse()
                body = response.read()
                return (response.status, dict(response.getheaders()), body,
                    time.perf_counter() - start)
            except (http.client.HTTPException, OSError) as error:
                conn.close()
                if attempt == 0 and reused and not isinstance(
                        error, TimeoutError):
                    with sale.stats.lock:
                        sale.stats.reconnects += 1
                    continue
                return 599, {}, json.dumps({'error': {
                    'code': f'connection_{type(error).__name__}'}}).encode(), \
                    time.perf_counter() - start
    try:
        step = next(flow)
        while True:
            if isinstance(step, Sleep):
                time.sleep(step.seconds)
                step = next(flow)
            else:
                step = flow.send(send(step))
    except StopIteration:
        pass
    except BaseException as error:  # noqa: B036 report, do not hang
        errors.append(error)
        sale.stopped = True
    finally:
        conn.close()


def drive_threads(port, sale, clients, seed):
    errors = []
    threads = [threading.Thread(target=_thread_client,
            args=(port, sale, seed + i, errors), daemon=True)
        for i in range(clients)]
    for thread in threads:
        thread.start()
    try:
        for thread in threads:
            while thread.is_alive():
                thread.join(0.2)
    except BaseException:
        sale.stopped = True
        for thread in threads:
            thread.join(TIMEOUT_REQUEST + 1)
        raise
    if errors:
        raise errors[0]


DRIVERS = {'asyncio': drive_asyncio, 'threads': drive_threads}


# --- invariants --------------------------------------------------------------

def check_day(uri, day, paid_references, sample=200, seed=0):
    "Check the day's invariants in PostgreSQL; return what was found."
    rng = random.Random(seed)
    with pg_connect(uri) as conn:
        conn.execute(f"SET statement_timeout = {TIMEOUT_CHECK * 1000}")
        live = list(LIVE_ORDER_STATES)
        slots = conn.execute("""
            SELECT s.zone, s.capacity, s.booked, COALESCE((
                SELECT sum(t.persons) FROM scenic_ticket t
                JOIN scenic_order o ON o.id = t."order"
                WHERE t.slot = s.id AND o.state = ANY(%s)), 0)
            FROM scenic_time_slot s WHERE s.date = %s""",
            (live, day)).fetchall()
        oversold = sum(max(0, persons - capacity)
            for _, capacity, _, persons in slots)
        booked_mismatch = sum(1 for _, _, booked, persons in slots
            if booked != persons)
        counter_over = sum(1 for _, capacity, booked, _ in slots
            if booked > capacity)
        id_violations = conn.execute("""
            SELECT count(*), COALESCE(sum(n - 1), 0) FROM (
                SELECT t.holder_hash, count(*) AS n FROM scenic_ticket t
                JOIN scenic_order o ON o.id = t."order"
                WHERE t.visit_date = %s AND o.state = ANY(%s)
                AND t.holder_hash IS NOT NULL
                GROUP BY t.company, t.holder_hash HAVING count(*) > 1) x""",
            (day, live)).fetchone()
        usage_mismatch = conn.execute("""
            SELECT count(*) FROM (
                SELECT * FROM scenic_id_day_usage WHERE date = %s) u
            FULL JOIN (
                SELECT t.company, t.holder_hash, count(*) AS n
                FROM scenic_ticket t JOIN scenic_order o ON o.id = t."order"
                WHERE t.visit_date = %s AND o.state = ANY(%s)
                AND t.holder_hash IS NOT NULL
                GROUP BY t.company, t.holder_hash) t
            ON t.company = u.company AND t.holder_hash = u.id_hash
            WHERE COALESCE(u.count, 0) != COALESCE(t.n, 0)""",
            (day, day, live)).fetchone()[0]
        loads = conn.execute("""
            SELECT l.company, l.booked, l.maximum, c.scenic_daily_max,
                COALESCE((SELECT sum(t.persons) FROM scenic_ticket t
                    JOIN scenic_order o ON o.id = t."order"
                    WHERE t.company = l.company AND t.visit_date = l.date
                    AND o.state = ANY(%s)), 0)
            FROM scenic_daily_load l
            JOIN company_company c ON c.id = l.company
            WHERE l.date = %s AND l.scope = 'area'""",
            (live, day)).fetchall()
        daily_over = sum(max(0, booked - min(maximum, area_max or maximum))
            for _, booked, maximum, area_max, _ in loads)
        daily_mismatch = sum(1 for _, booked, _, _, persons in loads
            if booked != persons)
        paid = conn.execute("""
            SELECT count(*) FROM scenic_order
            WHERE visit_date = %s AND state = 'paid'""", (day,)).fetchone()[0]
        acknowledged = conn.execute("""
            SELECT count(*) FROM scenic_order
            WHERE reference = ANY(%s) AND state = 'paid'""",
            (paid_references,)).fetchone()[0]
        unsigned = conn.execute("""
            SELECT count(*) FROM scenic_ticket t
            JOIN scenic_order o ON o.id = t."order"
            WHERE o.visit_date = %s AND o.state = 'paid'
            AND (t.state != 'valid' OR t.code IS NULL)""",
            (day,)).fetchone()[0]
        keyrings = {}
        for company, key_id, public, state in conn.execute("""
                SELECT company, key_id, public_key, state
                FROM scenic_signing_key""").fetchall():
            keyring = keyrings.setdefault(company, ticketcode.Keyring())
            keyring.add(key_id, base64.b64decode(public),
                retired=state == 'retired')
        tickets = conn.execute("""
            SELECT t.id, t.company, t.ticket_type, t.valid_from,
                t.valid_until, t.persons, t.entries_allowed, t.holder_hash,
                t.code
            FROM scenic_ticket t JOIN scenic_order o ON o.id = t."order"
            WHERE o.visit_date = %s AND o.state = 'paid'
            AND t.code IS NOT NULL""", (day,)).fetchall()
    invalid = 0
    for (ticket_id, company, ttype, valid_from, valid_until, persons,
            entries, holder_hash, code) in rng.sample(
                tickets, min(sample, len(tickets))):
        valid_from = valid_from.replace(tzinfo=dt.timezone.utc)
        verdict = ticketcode.verify(code,
            keyrings.get(company, ticketcode.Keyring()),
            now=valid_from, area_id=company)
        payload = verdict.payload
        if not (verdict.ok and payload.ticket_id == ticket_id
                and payload.ticket_type_id == ttype
                and payload.valid_until == valid_until.replace(
                    tzinfo=dt.timezone.utc)
                and payload.persons == persons
                and payload.entries == entries
                and payload.holder_hash == (
                    PIIVault(PII_KEY).code_holder_hash(holder_hash)
                    if holder_hash else b'')):
            invalid += 1
    return {
        'slots': len(slots),
        'capacity_area_slots': sum(c for zone, c, _, _ in slots
            if zone is None),
        'booked_persons': sum(p for _, _, _, p in slots),
        'oversold': oversold,
        'slot_counter_over_capacity': counter_over,
        'booked_mismatch': booked_mismatch,
        'id_limit_violations': int(id_violations[1]),
        'ids_over_limit': int(id_violations[0]),
        'id_usage_mismatch': usage_mismatch,
        'daily_load': [{'booked': b, 'maximum': m, 'area_max': a}
            for _, b, m, a, _ in loads],
        'daily_over': daily_over,
        'daily_mismatch': daily_mismatch,
        'db_paid_orders': paid,
        'acknowledged_paid_missing': len(paid_references) - acknowledged,
        'unsigned_tickets': unsigned,
        'codes_verified': min(sample, len(tickets)),
        'codes_invalid': invalid,
        }


# --- profiling (--profile DIR) -----------------------------------------------

def _frames(stack):
    "[(function, file)] of a py-spy raw stack, outermost first."
    frames = []
    for frame in stack.split(';'):
        name, _, where = frame.rpartition(' (')
        frames.append((name.rsplit('.', 1)[-1], where.rsplit(':', 1)[0]))
    return frames


def _has(frames, name, file):
    return any(n == name and f.endswith(file) for n, f in frames)


def _has_file(frames, part):
    return any(part in f for _, f in frames)


# engine.Request's and engine.Answer's methods (py-spy's frames lose the
# class): what werkzeug's request and response did before the sixth pass.
ENGINE_HTTP = ('get_data', 'content_length', 'args', 'remote_addr',
    '_status_line')
# Where the workers' Python time goes: the first matching rule wins, so the
# specific ones come first.
PY_CATEGORIES = [
    ("engine: rendering (order_json)",
        lambda f: _has(f, 'order_json', 'api.py')
        and _has_file(f, 'engine.py')),
    ("engine: catalogue snapshot rebuild",
        lambda f: _has(f, '_build', 'engine.py')),
    ("engine: load_order (replays, GET, pay answers)",
        lambda f: _has(f, 'load_order', 'engine.py')),
    ("engine: channel by key",
        lambda f: _has(f, 'channel', 'engine.py')),
    ("pay: Ed25519 signing (ticketcode.encode)",
        lambda f: _has(f, 'encode', 'ticketcode.py')),
    ("book: ID hashing/encryption (pii)",
        lambda f: _has_file(f, 'pii.py')),
    ("book: Catalogue price rules (PriceRule.rules_for)",
        lambda f: _has(f, 'rules_for', 'price_rule.py')),
    ("book: Catalogue company + ticket types (Catalogue.__init__)",
        lambda f: _has(f, '__init__', 'reservation.py')),
    ("book: TypeInfo.sold_on (catalogue)",
        lambda f: _has(f, 'sold_on', 'catalogue.py')),
    ("book: Catalogue.is_holiday",
        lambda f: _has(f, 'is_holiday', 'reservation.py')),
    ("book: price quote (pricing)",
        lambda f: _has(f, 'quote', 'reservation.py')),
    ("book: TimeSlot.search",
        lambda f: _has(f, 'book', 'reservation.py')
        and _has(f, 'search', 'modelsql.py')),
    ("book: validation + pricing (reservation.plan_booking rest)",
        lambda f: _has(f, 'plan_booking', 'reservation.py')),
    ("book: raw SQL inserts + claims (reservation.write_booking)",
        lambda f: _has(f, 'write_booking', 'reservation.py')
        or _has(f, 'book', 'reservation.py')),
    ("response: order_json (ORM reads of order/lines/tickets)",
        lambda f: _has(f, 'order_json', 'api.py')),
    ("pay: SigningKey.active_signer",
        lambda f: _has(f, 'active_signer', 'signing.py')),
    ("pay: lock + ORM reads + updates (reservation.pay rest)",
        lambda f: _has(f, 'pay', 'reservation.py')),
    ("pay: find order by reference (_order_of_channel)",
        lambda f: _has(f, '_order_of_channel', 'api.py')),
    ("availability (GET)",
        lambda f: _has(f, 'get_availability', 'api.py')),
    ("authenticate (channel by key)",
        lambda f: _has(f, 'authenticate', 'api.py')),
    ("Transaction start/commit/rollback + READ COMMITTED",
        lambda f: any(f_.endswith('transaction.py') for _, f_ in f)
        or _has(f, 'use_read_committed', 'dbtools.py')),
    ("handlers: JSON parsing, validation, response",
        lambda f: _has(f, 'post_order', 'api.py')
        or _has(f, 'post_pay', 'api.py')),
    ("web._call: channel.company, context",
        lambda f: _has(f, '_call', 'web.py')),
    ("trytond wsgi + werkzeug (routing, request, response)",
        lambda f: _has_file(f, 'trytond/') or _has_file(f, 'werkzeug/')),
    # the engine's own request and answer (engine.Request, engine.Answer)
    ("engine: HTTP request and answer",
        lambda f: any(_has(f, name, 'engine.py') for name in ENGINE_HTTP)),
    ("engine: pay (lock, payment, ticket updates, commit)",
        lambda f: _has(f, 'pay', 'engine.py')),
    ("engine: book (replay check, commit)",
        lambda f: _has(f, 'book', 'engine.py')),
    ("engine: connection pool, session, request parsing",
        lambda f: _has_file(f, 'engine.py')),
    ("gunicorn (HTTP, sockets, threads)",
        lambda f: _has_file(f, 'gunicorn/')),
    # granian parses HTTP in Rust outside the GIL: py-spy sees only its
    # Python glue, so its HTTP share is understated (compare server CPU)
    ("granian (WSGI glue)",
        lambda f: _has_file(f, 'granian/')),
    ]
# The HTTP server's share of the workers' Python time (the rest is the
# handler: the engine or trytond, and the rules they call).
HTTP_CATEGORIES = {"gunicorn (HTTP, sockets, threads)",
    "granian (WSGI glue)",
    "trytond wsgi + werkzeug (routing, request, response)",
    "engine: HTTP request and answer"}
PY_LAYERS = [
    ("psycopg driver", lambda f: _has_file(f, 'psycopg/')),
    ("python-sql query building", lambda f: _has_file(f, 'sql/__init__')
        or _has_file(f, 'sql/operators') or _has_file(f, 'sql/functions')),
    ("trytond ORM (modelsql/modelstorage/fields)",
        lambda f: _has_file(f, 'trytond/model/')),
    ]


def breakdown(paths):
    "Shares of py-spy samples by category, from raw (collapsed) files."
    categories, layers = Counter(), Counter()
    total = 0
    for path in paths:
        try:
            lines = Path(path).read_text().splitlines()
        except OSError:
            continue
        for line in lines:
            stack, _, count = line.rpartition(' ')
            if not count.isdigit():
                continue
            count = int(count)
            frames = _frames(stack)
            total += count
            for label, rule in PY_CATEGORIES:
                if rule(frames):
                    categories[label] += count
                    break
            else:
                categories["other"] += count
            for label, rule in PY_LAYERS:
                if rule(frames):
                    layers[label] += count
    if not total:
        return None
    return {
        'samples': total,
        'categories_pct': {label: round(100 * n / total, 1)
            for label, n in categories.most_common()},
        'layers_pct': {label: round(100 * n / total, 1)
            for label, n in layers.most_common()},
        }


class Profiler:
    """py-spy on every gunicorn worker (only the thread holding the GIL is
    sampled: Python CPU time) and pg_stat_statements, per run."""

    RATE = 100

    def __init__(self, directory, uri, server):
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.uri = uri
        self.server = server
        self.py_spy = shutil.which('py-spy') or (
            str(BIN / 'py-spy') if (BIN / 'py-spy').exists() else None)
        if not self.py_spy:
            log("py-spy not found (pip install py-spy): no Python profile")
        self.pg_stats = False
        try:
            with pg_connect(uri, autocommit=True) as conn:
                conn.execute(
                    "CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
                conn.execute("SELECT pg_stat_statements_reset()")
            self.pg_stats = True
        except psycopg.Error as error:
            log(f"pg_stat_statements unavailable: {error}".strip())
        self.spies = []

    def start(self, label):
        self.label = label
        if self.pg_stats:
            with pg_connect(self.uri, autocommit=True) as conn:
                conn.execute("SELECT pg_stat_statements_reset()")
        self.spies = []
        if self.py_spy:
            for pid in _children(self.server.process.pid):
                output = self.directory / f'py-spy-{label}-{pid}.txt'
                self.spies.append((output, subprocess.Popen(
                    [self.py_spy, 'record', '--pid', str(pid), '--gil',
                        '--rate', str(self.RATE), '--format', 'raw',
                        '--output', str(output)],
                    stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL)))

    def stop(self, paid_orders):
        outputs = []
        for output, spy in self.spies:
            spy.send_signal(signal.SIGINT)
        for output, spy in self.spies:
            try:
                spy.wait(30)
            except subprocess.TimeoutExpired:
                spy.kill()
                spy.wait(5)
            outputs.append(output)
        self.spies = []
        result = {}
        python = breakdown(outputs)
        if python:
            python['python_cpu_ms_per_paid_order'] = round(
                1000 * python['samples'] / self.RATE / paid_orders, 1) \
                if paid_orders else None
            result['python'] = python
        if self.pg_stats:
            with pg_connect(self.uri) as conn:
                rows = conn.execute("""
                    SELECT calls, total_exec_time, mean_exec_time, query
                    FROM pg_stat_statements
                    WHERE dbid = (SELECT oid FROM pg_database
                        WHERE datname = %s)
                    ORDER BY total_exec_time DESC""", (DATABASE,)
                    ).fetchall()
            total = sum(r[1] for r in rows) or 1
            orders = paid_orders or 1
            result['sql'] = {
                'statements_per_paid_order': round(
                    sum(r[0] for r in rows) / orders, 1),
                'exec_ms_per_paid_order': round(total / orders, 2),
                'top': [{
                        'calls_per_order': round(calls / orders, 2),
                        'mean_ms': round(mean, 3),
                        'share_pct': round(100 * spent / total, 1),
                        'query': ' '.join(query.split())[:160],
                        } for calls, spent, mean, query in rows[:12]],
                }
        (self.directory / f'profile-{self.label}.json').write_text(
            json.dumps(result, indent=1, ensure_ascii=False))
        return result

    def close(self):
        for _, spy in self.spies:
            with contextlib.suppress(OSError):
                spy.kill()


# --- one run -----------------------------------------------------------------

class LockSampler:
    """Lock wait of the database's sessions during a run: pg_stat_activity
    sampled every INTERVAL s; each session seen waiting on a lock counts
    INTERVAL s of waiting (an estimate, like any sampling profile)."""

    INTERVAL = 0.02

    def __init__(self, uri):
        self.uri = uri
        self.samples = 0
        self.waiting = 0
        self.stopping = threading.Event()
        self.thread = None

    def start(self):
        self.samples = self.waiting = 0
        self.stopping.clear()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        with pg_connect(self.uri, autocommit=True) as conn:
            while not self.stopping.wait(self.INTERVAL):
                self.waiting += conn.execute(
                    "SELECT count(*) FROM pg_stat_activity WHERE datname = "
                    "%s AND wait_event_type = 'Lock'", (DATABASE,)
                    ).fetchone()[0]
                self.samples += 1

    def stop(self):
        "Seconds of lock wait in all, estimated."
        self.stopping.set()
        if self.thread:
            self.thread.join(10)
        return self.waiting * self.INTERVAL


def run_clients(port, day, clients, time_cap, driver, seed, ids, meter,
        reuse_ratio=0.02, max_orders=None, locks=None):
    deadline = time.monotonic() + time_cap
    sale = SaleDay(day, deadline, ids, reuse_ratio, random.Random(seed))
    sale.max_orders = max_orders
    meter.start()
    if locks:
        locks.start()
    start = time.perf_counter()
    try:
        DRIVERS[driver](port, sale, clients, seed)
    finally:
        duration = time.perf_counter() - start
        cpu = meter.stop()
        if locks:
            cpu['lock_wait_s'] = locks.stop()
    return sale, duration, cpu


def result_line(clients, day, sale, duration, cpu, checks, server, driver,
        time_cap):
    s = sale.stats
    seconds = cpu.pop('seconds')
    lock_wait = cpu.pop('lock_wait_s', None)
    if s.paid_orders:
        cpu['ms_per_paid_order'] = {name: round(1000 * value / s.paid_orders,
                1) for name, value in seconds.items()}
        if lock_wait is not None:
            cpu['lock_wait_ms_per_paid_order'] = round(
                1000 * lock_wait / s.paid_orders, 2)
        # What the machine could sell if it did nothing else and only CPU
        # limited: robust to other processes' load, unlike orders_per_s.
        cpu['cpu_bound_ceiling_orders_per_s'] = round(
            cpu['cores'] * s.paid_orders / max(sum(seconds.values()), 1e-9),
            1)
    violations = (checks['id_limit_violations'] + checks['booked_mismatch']
        + checks['slot_counter_over_capacity'] + checks['id_usage_mismatch']
        + checks['daily_over'] + checks['daily_mismatch']
        + checks['acknowledged_paid_missing'] + checks['unsigned_tickets']
        + checks['codes_invalid'])
    return {
        'clients': clients,
        'day': day.isoformat(),
        'orders_per_s': round(s.paid_orders / duration, 1),
        'tickets_per_s': round(s.tickets / duration, 1),
        'requests_per_s': round(s.requests / duration, 1),
        'book_p50_ms': percentile(s.book_ms, 50),
        'book_p95_ms': percentile(s.book_ms, 95),
        'book_p99_ms': percentile(s.book_ms, 99),
        'pay_p50_ms': percentile(s.pay_ms, 50),
        'pay_p95_ms': percentile(s.pay_ms, 95),
        'pay_p99_ms': percentile(s.pay_ms, 99),
        'book_pay_p50_ms': percentile(s.book_pay_ms, 50),
        'book_pay_p99_ms': percentile(s.book_pay_ms, 99),
        'errors': dict(sorted(s.codes.items())),
        'unexpected_errors': dict(sorted(s.unexpected.items())),
        'server_errors': s.server_errors,
        'oversold': checks['oversold'],
        'id_limit_violations': checks['id_limit_violations'],
        'violations': violations,
        'id_reuse_attempts': s.id_reuse_attempts,
        'id_reuse_refused': s.id_reuse_refused,
        'paid_orders': s.paid_orders,
        'tickets': s.tickets,
        'requests': s.requests,
        'availability_refreshes': sale.refreshes,
        'reconnects': s.reconnects,
        'sold_out': sale.sold_out,
        'ended_by': ('sold_out' if sale.sold_out else 'daily_limit'
            if sale.daily_limit else 'stopped' if sale.stopped
            else f'time_cap_{time_cap:g}s'),
        'duration_s': round(duration, 2),
        'checks': checks,
        'cpu': cpu,
        'server': server,
        'client': driver,
        }


def warm_up(server, day, driver, ids, meter):
    """Book and pay a few orders on a day the runs do not use, so that every
    worker has its connections, caches and the signing key ready."""
    log(f"warming up on {day}")
    # One order alone first: the first payment of an area makes its signing
    # key, and concurrent first payments race on it (see bench/README.md).
    run_clients(server.port, day, 1, TIMEOUT_WARMUP / 2, driver, 5, ids,
        meter, reuse_ratio=0, max_orders=1)
    sale, duration, _ = run_clients(server.port, day, 8, 6, driver, 7, ids,
        meter, reuse_ratio=0)
    if not sale.stats.paid_orders or sale.stats.unexpected:
        raise BenchError(f"warm-up failed: {sale.stats.paid_orders} paid "
            f"orders, errors {dict(sale.stats.unexpected)}; server log:\n"
            + server.log_tail())
    log(f"warm-up: {sale.stats.paid_orders} orders in {duration:.1f} s")


def analyse(uri):
    """ANALYZE the database before the measured runs. The demo's sale tables
    are small (74 visitors) and grow 100-fold in a run; a plan cached by a
    server connection while a table was small (a foreign-key check's
    sequential scan on scenic_visitor: 0.5 ms a ticket at 8000 rows) stays
    until the table is analysed, which autovacuum does a minute or more
    later. A running system has been analysed; without this the runs
    measured when each connection happened to plan (bench/README.md,
    seventh pass)."""
    with pg_connect(uri, autocommit=True) as conn:
        conn.execute("ANALYZE")


def parse_args(argv):
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="Defaults: 2 gunicorn workers x 4 threads, the asyncio "
        "client: the cheapest per order of the settings measured on this "
        "2-core machine (see bench/README.md).")
    parser.add_argument('--clients', default='1,16,64,256',
        help="client counts to run, comma-separated (default %(default)s)")
    parser.add_argument('--workers', type=int, default=2,
        help="gunicorn worker processes (default %(default)s)")
    parser.add_argument('--threads', type=int, default=4,
        help="threads per gunicorn worker (default %(default)s)")
    parser.add_argument('--http', choices=_measure.HTTP_SERVERS,
        default=_measure.ENGINE_HTTP,
        help="HTTP server: gunicorn (gthread workers) or granian (Rust, "
        "WSGI, blocking threads), same workers and threads "
        "(default %(default)s)")
    parser.add_argument('--server', choices=sorted(APPS), default='engine',
        help="engine: the booking engine in front of trytond (default); "
        "tryton: trytond's own routes, as before the engine")
    parser.add_argument('--quick', action='store_true',
        help="smoke test: 10 places per slot (so that days sell out) and "
        "at most 20 s per run")
    parser.add_argument('--time-cap', type=float,
        help="seconds per client count before stopping (default 45, "
        "20 with --quick)")
    parser.add_argument('--capacity', type=int,
        help="places per slot of the sale days (set through SQL; "
        "default: the demo's 500, 10 with --quick)")
    parser.add_argument('--client', choices=sorted(DRIVERS),
        default='asyncio',
        help="load generator: one asyncio loop with raw keep-alive "
        "connections (default), or one thread per client with http.client")
    parser.add_argument('--pg-uri',
        help="use this PostgreSQL server instead of a throwaway cluster "
        "(database 'rush' is created and initialised if missing, reused "
        "otherwise; for development)")
    parser.add_argument('--pg-setting', action='append', default=[],
        metavar='NAME=VALUE',
        help="extra setting of the throwaway cluster, e.g. "
        "shared_buffers=512MB (synchronous_commit stays on)")
    parser.add_argument('--profile', metavar='DIR',
        help="profile each run: py-spy on the workers (if installed) and "
        "pg_stat_statements; breakdowns in the JSON lines, details in DIR")
    parser.add_argument('--setup-timeout', type=int, metavar='SECONDS',
        help="time allowed to trytond-admin --all and to load_demo.py each "
        f"(default {TIMEOUT_ADMIN} and {TIMEOUT_LOAD_DEMO} s; on a machine "
        "shared with other jobs the demo's set-up may need more)")
    parser.add_argument('--seed', type=int, default=1)
    args = parser.parse_args(argv)
    try:
        args.clients = [int(c) for c in args.clients.split(',') if c]
    except ValueError:
        parser.error("--clients takes integers, e.g. 1,16,64")
    if not args.clients or min(args.clients) < 1:
        parser.error("--clients takes positive integers")
    if len(args.clients) > DEMO_DAYS - 2:
        parser.error(f"at most {DEMO_DAYS - 2} client counts (one fresh "
            "demo day each)")
    if args.workers < 1 or args.threads < 1:
        parser.error("--workers and --threads must be positive")
    settings = dict(PG_SETTINGS)
    for item in args.pg_setting:
        name, sep, value = item.partition('=')
        if not sep:
            parser.error(f"--pg-setting takes NAME=VALUE, not {item!r}")
        if name.strip() in {'synchronous_commit', 'fsync'} and (
                value.strip().lower() not in {'on', 'true', '1'}):
            parser.error(f"{name} stays on: acknowledged bookings must not "
                "be lost")
        settings[name.strip()] = value.strip()
    if args.profile:
        settings['shared_preload_libraries'] = 'pg_stat_statements'
    args.pg_settings = settings
    if args.time_cap is None:
        args.time_cap = 20 if args.quick else 45
    if args.capacity is None and args.quick:
        args.capacity = 10
    return args


def main(argv=None):
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, _terminate)
    started = time.monotonic()
    results = []
    with contextlib.ExitStack() as stack:
        tmpdir = stack.enter_context(
            tempfile.TemporaryDirectory(prefix='scenic-rush-'))
        if args.pg_uri:
            uri = args.pg_uri
            pg = {'cluster': 'given'}
        else:
            log("starting a throwaway PostgreSQL cluster")
            uri = stack.enter_context(
                throwaway_cluster(settings=args.pg_settings))
            pg = {'cluster': 'throwaway', **{k: args.pg_settings[k]
                    for k in sorted(args.pg_settings)}}
        conf = write_config(tmpdir, uri)
        initialise(uri, conf, tmpdir, args.setup_timeout)
        setup_s = time.monotonic() - started
        warm_day = warm_up_day(uri)
        days = fresh_days(uri, len(args.clients), exclude={warm_day})
        server = Server(conf, tmpdir, args.workers, args.threads,
            app=args.server, http=args.http)
        stack.callback(server.stop)
        server.start()
        meter = CPUMeter(server.process.pid, postmaster_pid(uri))
        ids = IDSource(args.seed + int(time.time()) % 100_000)
        warm_up(server, warm_day, args.client, ids, meter)
        analyse(uri)
        profiler = None
        if args.profile:
            profiler = Profiler(args.profile, uri, server)
            stack.callback(profiler.close)
        for clients, day in zip(args.clients, days):
            if args.capacity:
                shrink_day(uri, day, args.capacity)
            log(f"{clients} client(s) selling {day} "
                f"(cap {args.time_cap:g} s, {args.client} client)")
            if profiler:
                profiler.start(f'c{clients}')
            sale, duration, cpu = run_clients(server.port, day, clients,
                args.time_cap, args.client, args.seed * 1000 + clients, ids,
                meter, locks=LockSampler(uri))
            profile = profiler.stop(sale.stats.paid_orders) if profiler \
                else None
            if server.process.poll() is not None:
                raise BenchError(f"{args.http} died:\n"
                    + server.log_tail())
            log(f"checking invariants of {day}")
            checks = check_day(uri, day, sale.stats.paid_references,
                seed=args.seed)
            line = result_line(clients, day, sale, duration, cpu, checks,
                server.settings, args.client, args.time_cap)
            python = (profile or {}).get('python')
            server_ms = line['cpu'].get('ms_per_paid_order', {}).get(
                'server')
            if python and server_ms is not None:
                http = sum(python['categories_pct'].get(c, 0)
                    for c in HTTP_CATEGORIES) / 100
                line['cpu']['ms_per_paid_order_by_layer'] = {
                    'http_server': round(server_ms * http, 1),
                    'python_handler': round(server_ms * (1 - http), 1),
                    'postgresql': line['cpu']['ms_per_paid_order'].get(
                        'postgres'),
                    }
            if profile:
                line['profile'] = {
                    'python': profile.get('python'),
                    'sql': {k: v for k, v in profile.get('sql', {}).items()
                        if k != 'top'} or None,
                    'details': str(Path(args.profile).resolve()
                        / f'profile-c{clients}.json'),
                    }
            results.append(line)
            print(json.dumps(line, ensure_ascii=False), flush=True)
            if cpu['others_pct'] > 20:
                log(f"other processes used {cpu['others_pct']:g} % CPU "
                    "during this run: orders_per_s is understated, see "
                    "cpu.ms_per_paid_order and "
                    "cpu.cpu_bound_ceiling_orders_per_s")
        if any(r['unexpected_errors'] for r in results):
            log("server log tail:\n" + server.log_tail())
    at_target = [r for r in results if r['clients'] == TARGET['clients']]
    summary = {
        'summary': True,
        'runs': len(results),
        'orders_per_s': {str(r['clients']): r['orders_per_s']
            for r in results},
        'book_pay_p99_ms': {str(r['clients']): r['book_pay_p99_ms']
            for r in results},
        'oversold': sum(r['oversold'] for r in results),
        'id_limit_violations': sum(r['id_limit_violations']
            for r in results),
        'violations': sum(r['violations'] for r in results),
        'server_errors': sum(r['server_errors'] for r in results),
        'unexpected_errors': sum(sum(r['unexpected_errors'].values())
            for r in results),
        'target': TARGET,
        'target_met': bool(at_target) and all(
            r['orders_per_s'] >= TARGET['orders_per_s']
            and (r['book_pay_p99_ms'] or 1e9) < TARGET['book_pay_p99_ms']
            for r in at_target),
        'others_cpu_pct_max': max((r['cpu']['others_pct'] for r in results),
            default=0),
        'server': results[0]['server'] if results else None,
        'client': args.client,
        'postgresql': pg,
        'quick': args.quick,
        'setup_s': round(setup_s, 1),
        'total_s': round(time.monotonic() - started, 1),
        }
    summary['ok'] = not (summary['oversold'] or summary['violations']
        or summary['server_errors'] or summary['unexpected_errors'])
    print(json.dumps(summary), flush=True)
    return 0 if summary['ok'] else 1


if __name__ == '__main__':
    try:
        sys.exit(main())
    except BenchError as error:
        log(f"ERROR: {error}")
        sys.exit(2)
    except KeyboardInterrupt:
        log("interrupted; everything was stopped and removed")
        sys.exit(130)
