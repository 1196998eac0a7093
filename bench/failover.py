#!/usr/bin/env python3
"""Failover: a booking rush through the public API while the leader dies.

    python bench/failover.py [--clients 8] [--before 12] [--after 12]
        [--scenario node,postmaster]

Sets up, on this machine, a Patroni cluster (scripts/hacluster.py: etcd and
3 nodes, synchronous_mode strict), database `rush` (trytond-admin and
scripts/load_demo.py) and gunicorn serving trytond with a libpq multi-host
URI (`target_session_attrs=read-write`).  For each scenario C clients book
and pay (real-name ADULT tickets, an Idempotency-Key per booking, retried
with the same key on a 5xx, a connection error or a timeout) on a fresh sale
day; after `--before` seconds the leader is crashed:

  node        kill -9 of the leader's Patroni and all its PostgreSQL
              processes: the synchronous standby is promoted once the
              leader key expires (ttl 20 s); the old node is then restarted
              and rejoins through pg_rewind
  postmaster  kill -9 of the leader's postmaster only: Patroni restarts it
              in place

The rush goes on until `--after` seconds after the first write that
succeeded again.  Printed (one JSON line per scenario): orders/s before,
during and after, the write-unavailability window (crash to the first
acknowledged booking after it), and the checks on the new primary: every
acknowledged order present, every acknowledged payment paid, no slot
oversold, counters equal to tickets.  Exit 1 when an acknowledged order was
lost or a check failed.

Also a library for tests/test_failover.py: `ERP`, `Rush`, `crash_during_rush`.
"""
import argparse
import contextlib
import datetime as dt
import http.client
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

import _measure  # noqa: E402
from _measure import BenchError  # noqa: E402

ROOT = _measure.ROOT
_measure.ensure_venv('psycopg', 'scenic_common')
import psycopg  # noqa: E402

sys.path.insert(0, str(ROOT / 'scripts'))
sys.path.insert(0, str(ROOT / 'bench'))
import hacluster  # noqa: E402
import reservation_rush as rush  # noqa: E402  (visitors, IDs, day checks)

DATABASE = rush.DATABASE
PREFIX = rush.PREFIX
HEADERS = {'Authorization': f'Bearer {rush.API_KEY}',
    'Accept': 'application/json', 'Content-Type': 'application/json'}
REQUEST_TIMEOUT = 45   # > psycopg_pool's getconn timeout (30 s)
RETRY_FOR = 120        # a booking is retried with its key this long
GUNICORN_CONF = ROOT / 'config' / 'ha' / 'gunicorn.conf.py'


def log(message):
    print(f"failover: {message}", file=sys.stderr, flush=True)


def leader_uri(cluster):
    name = cluster.wait_leader(60)
    return cluster.nodes[name].uri


class ERP:
    """Database `rush` on the HA cluster and gunicorn serving trytond with
    the multi-host URI.  Context manager."""

    def __init__(self, cluster, workers=2, threads=6):
        self.cluster = cluster
        self.workers = workers
        self.threads = threads
        self.server = None
        self.tmpdir = None

    def __enter__(self):
        self.tmpdir = tempfile.mkdtemp(prefix='scenic-failover-')
        # Set-up on the leader itself (libpq URI without a query string);
        # the server follows the leader through the multi-host URI.
        setup_conf = _measure.write_config(self.tmpdir,
            leader_uri(self.cluster), rush.PII_KEY)
        _measure.initialise(leader_uri(self.cluster), setup_conf,
            self.tmpdir, DATABASE, log)
        # Start from a checkpoint: the crash recovery of a postmaster crash
        # replays the WAL written since the last one, and the set-up just
        # wrote hundreds of MB of it (in production checkpoint_timeout
        # bounds this).
        with psycopg.connect(leader_uri(self.cluster), dbname='postgres',
                autocommit=True) as conn:
            conn.execute('CHECKPOINT')
        server_dir = Path(self.tmpdir) / 'server'
        server_dir.mkdir()
        conf = _measure.write_config(server_dir, self.cluster.uri(),
            rush.PII_KEY)
        self.server = _measure.Server(conf, server_dir, DATABASE,
            self.workers, self.threads, log)
        # Server copies os.environ: gunicorn reads GUNICORN_CMD_ARGS.
        os.environ['GUNICORN_CMD_ARGS'] = f'--config {GUNICORN_CONF}'
        try:
            self.server.start()
        finally:
            os.environ.pop('GUNICORN_CMD_ARGS', None)
        return self

    def __exit__(self, *exc):
        if self.server:
            self.server.stop()
        import shutil
        shutil.rmtree(self.tmpdir, ignore_errors=True)

    @property
    def port(self):
        return self.server.port

    def connect(self):
        "A connection to the current leader (multi-host, read-write)."
        return psycopg.connect(self.cluster.uri(), dbname=DATABASE)

    def fresh_day(self, exclude=()):
        return rush.fresh_days(leader_uri(self.cluster), 1,
            exclude=exclude)[0]


class Rush:
    """C threads booking and paying on `day` until stop(); every booking's
    outcome as the client saw it."""

    def __init__(self, port, day, clients=8, seed=1):
        self.port = port
        self.day = day
        self.clients = clients
        self.rng = random.Random(seed)
        self.ids = rush.IDSource(seed + 7)
        self.lock = threading.Lock()
        self.stopping = threading.Event()
        self.slots = []
        self.acked = {}        # reference -> ack time (monotonic)
        self.paid = set()
        self.ack_times = []    # monotonic times of acknowledged bookings
        self.acks = []         # (attempt sent, acknowledged) of each
        self.replayed = 0      # retries answered with the order made before
        self.retries = 0
        self.refused = {}      # business refusals by code
        self.unknown = 0       # bookings given up with the outcome unknown
        self.threads = []

    # -- HTTP ---------------------------------------------------------------
    def _request(self, conn, method, path, body=None):
        """(status, headers, decoded body); (None, None, error) when the
        connection failed or timed out (the caller reconnects)."""
        try:
            conn.request(method, path, body=body, headers=HEADERS)
            response = conn.getresponse()
            raw = response.read()
            try:
                data = json.loads(raw)
            except ValueError:
                data = None
            return response.status, response.headers, data
        except (OSError, http.client.HTTPException) as e:
            conn.close()
            return None, None, str(e)

    def _connection(self):
        return http.client.HTTPConnection('127.0.0.1', self.port,
            timeout=REQUEST_TIMEOUT)

    @staticmethod
    def _transient(status, data):
        "Worth retrying with the same key: the outcome is not known."
        if status is None or status >= 500:
            return True
        code = (data or {}).get('error', {}).get('code') \
            if isinstance(data, dict) else None
        return code == 'internal_error'

    def refresh_slots(self, conn):
        status, _, data = self._request(conn, 'GET',
            f'{PREFIX}/availability?date={self.day.isoformat()}')
        if status == 200:
            with self.lock:
                self.slots = [s['id'] for s in data['slots']
                    if s['available'] > 0 and any(p['ticket_type'] ==
                        rush.TICKET_TYPE for p in s['prices'])]
        return status == 200

    # -- one client ----------------------------------------------------------
    def client(self, index):
        rng = random.Random(index * 7919 + 1)
        conn = self._connection()
        while not self.stopping.is_set():
            with self.lock:
                slots = list(self.slots)
            if not slots:
                if not self.refresh_slots(conn):
                    time.sleep(0.2)
                    continue
                with self.lock:
                    if not self.slots:
                        self.stopping.set()   # sold out
                        break
                continue
            slot = rng.choice(slots)
            persons = rng.choice((1, 2, 2, 3))
            people = [{'name': rng.choice(rush.SURNAMES)
                    + rng.choice(rush.GIVEN), 'id_type': 'resident_id',
                    'id_number': self.ids.next()} for _ in range(persons)]
            body = json.dumps({'slot': slot,
                    'items': [{'ticket_type': rush.TICKET_TYPE,
                        'visitors': people}],
                    'contact': {'name': people[0]['name'],
                        'phone': f'13{rng.randrange(10**9):09d}'},
                    }, ensure_ascii=False).encode()
            order = self._book(conn, body)
            if order == 'sold_out':
                with self.lock:
                    if slot in self.slots:
                        self.slots.remove(slot)
                continue
            if not isinstance(order, dict):
                continue
            self._pay(conn, order)
        conn.close()

    def _book(self, conn, body):
        key = uuid.uuid4().hex
        headers = dict(HEADERS, **{'Idempotency-Key': key})
        give_up = time.monotonic() + RETRY_FOR
        attempt = 0
        while True:
            sent = time.monotonic()
            try:
                conn.request('POST', f'{PREFIX}/orders', body=body,
                    headers=headers)
                response = conn.getresponse()
                status = response.status
                data = json.loads(response.read() or b'null')
                replayed = response.headers.get('Idempotent-Replayed')
            except (OSError, http.client.HTTPException, ValueError):
                conn.close()
                status, data, replayed = None, None, None
            if status == 201:
                now = time.monotonic()
                with self.lock:
                    self.acked[data['order']] = now
                    self.ack_times.append(now)
                    self.acks.append((sent, now))
                    if replayed and attempt:
                        self.replayed += 1
                return data
            if not self._transient(status, data):
                code = (data or {}).get('error', {}).get('code', status)
                with self.lock:
                    self.refused[code] = self.refused.get(code, 0) + 1
                return code
            if time.monotonic() > give_up or (self.stopping.is_set()
                    and attempt > 50):
                with self.lock:
                    self.unknown += 1
                return None
            attempt += 1
            with self.lock:
                self.retries += 1
            time.sleep(min(0.1 * attempt, 1.0))

    def _pay(self, conn, order):
        body = json.dumps({'provider': 'simulated',
            'amount': order['total']}).encode()
        give_up = time.monotonic() + RETRY_FOR
        while time.monotonic() < give_up:
            # Paying a paid order answers the paid order: safe to retry.
            status, _, data = self._request(conn, 'POST',
                f"{PREFIX}/orders/{order['order']}/pay", body)
            if status == 200 and data.get('state') == 'paid':
                with self.lock:
                    self.paid.add(order['order'])
                return True
            if not self._transient(status, data):
                return False
            time.sleep(0.2)
        return False

    # -- control ----------------------------------------------------------------
    def start(self):
        conn = self._connection()
        if not self.refresh_slots(conn):
            raise BenchError("GET /availability failed")
        conn.close()
        for i in range(self.clients):
            t = threading.Thread(target=self.client, args=(i,), daemon=True)
            t.start()
            self.threads.append(t)
        return self

    def stop(self, timeout=REQUEST_TIMEOUT + 15):
        self.stopping.set()
        deadline = time.monotonic() + timeout
        for t in self.threads:
            t.join(max(0.1, deadline - time.monotonic()))

    def rate(self, start, end):
        with self.lock:
            n = sum(1 for t in self.ack_times if start <= t < end)
        return round(n / (end - start), 1) if end > start else None

    def writes_back(self, crash, grace=1.0):
        """When bookings were acknowledged again after the crash: the first
        acknowledgement of an attempt sent after it, or arriving `grace`
        seconds after it (a commit made before the crash is acknowledged
        within milliseconds)."""
        with self.lock:
            later = [ack for sent, ack in self.acks
                if sent >= crash or ack >= crash + grace]
        return min(later) if later else None


def check(erp, rush_run):
    """The checks on the current primary: acknowledged orders present,
    acknowledged payments paid, the day's counters and capacity."""
    uri = leader_uri(erp.cluster)
    refs = list(rush_run.acked)
    with rush.pg_connect(uri) as conn:
        present = {r for (r,) in conn.execute(
            "SELECT reference FROM scenic_order WHERE reference = ANY(%s)",
            (refs,)).fetchall()}
    day = rush.check_day(uri, rush_run.day, sorted(rush_run.paid),
        sample=50)
    lost = sorted(set(refs) - present)
    return {
        'acknowledged_orders': len(refs),
        'acknowledged_lost': len(lost),
        'lost_sample': lost[:5],
        'acknowledged_paid': len(rush_run.paid),
        'acknowledged_paid_missing': day['acknowledged_paid_missing'],
        'oversold': day['oversold'],
        'booked_mismatch': day['booked_mismatch'],
        'id_usage_mismatch': day['id_usage_mismatch'],
        'daily_mismatch': day['daily_mismatch'],
        'unsigned_tickets': day['unsigned_tickets'],
        'codes_invalid': day['codes_invalid'],
        }


def _walsenders(node):
    "Pids of the WAL senders of a node's PostgreSQL."
    pm = node.postmaster_pid()
    found = []
    for pid in hacluster._descendants(pm) if pm else []:
        try:
            with open(f'/proc/{pid}/cmdline', 'rb') as f:
                if b'walsender' in f.read().split(b'\0')[0]:
                    found.append(pid)
        except OSError:
            pass
    return found


def crash_during_rush(erp, scenario='node', clients=8, before=10, after=10,
        stop_stream=None, seed=1, exclude_days=()):
    """Run a rush on a fresh day, crash the leader after `before` s, go on
    until `after` s after writes came back; return the figures.

    stop_stream: seconds before the crash to stop the standbys' WAL stream
    (the negative control, with asynchronous replication): the leader's WAL
    senders are stopped (SIGSTOP), then killed with it.  Stopping the
    standbys' WAL receivers instead loses nothing at this load: the WAL
    sent before the stop waits in the loopback socket's buffer (megabytes)
    and is read when the receiver resumes."""
    cluster = erp.cluster
    day = erp.fresh_day(exclude=exclude_days)
    old = cluster.wait_leader(60)
    run = Rush(erp.port, day, clients, seed).start()
    stopped = []
    started = time.monotonic()
    try:
        if stop_stream:
            time.sleep(max(0, before - stop_stream))
            for pid in _walsenders(cluster.nodes[old]):
                os.kill(pid, signal.SIGSTOP)
                stopped.append(pid)
            if not stopped:
                raise BenchError("no WAL sender found to stop")
            time.sleep(stop_stream)
        else:
            time.sleep(before)
        if scenario == 'node':
            cluster.crash_node(old)
        else:
            cluster.crash_postmaster(old)
        # after the kills: finding the processes takes a moment, and the
        # node serves meanwhile
        crash = time.monotonic()
        new = cluster.wait_leader(90, exclude=(old,) if scenario == 'node'
            else ())
        promoted = time.monotonic()
        back = None
        deadline = time.monotonic() + 120
        while back is None and time.monotonic() < deadline:
            back = run.writes_back(crash)
            time.sleep(0.1)
        if back is None:
            raise BenchError("no booking succeeded within 120 s after the "
                "crash:\n" + cluster.logs())
        time.sleep(max(0, back + after - time.monotonic()))
        end = time.monotonic()
    finally:
        run.stop()
        for pid in stopped:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)
    if scenario == 'node':
        cluster.start_node(old)   # rejoins through pg_rewind
    result = {
        'scenario': scenario,
        'clients': clients,
        'day': day.isoformat(),
        'old_leader': old, 'new_leader': new,
        'promoted_after_s': round(promoted - crash, 2),
        'write_window_s': round(back - crash, 2),
        'orders_per_s_before': run.rate(started, crash),
        'orders_per_s_during': run.rate(crash, back) if back > crash else 0,
        'orders_per_s_after': run.rate(back, end),
        'retries': run.retries,
        'replayed_on_retry': run.replayed,
        'outcome_unknown': run.unknown,
        'refused': run.refused,
        'wal_stream_stopped_s': stop_stream,
        **check(erp, run),
        }
    if scenario == 'node':
        cluster.wait_healthy(120)
        result['old_leader_rejoined'] = True
    return result


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--clients', type=int, default=8)
    parser.add_argument('--before', type=float, default=12)
    parser.add_argument('--after', type=float, default=12)
    parser.add_argument('--scenario', default='postmaster,node')
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, _measure.terminate)
    bad = False
    try:
        with hacluster.HACluster(nodes=3, fast=False) as cluster, \
                ERP(cluster) as erp:
            used = []
            for scenario in args.scenario.split(','):
                load = os.getloadavg()[0]
                cpu0 = _measure.system_cpu()
                result = crash_during_rush(erp, scenario, args.clients,
                    args.before, args.after, exclude_days=used)
                cpu1 = _measure.system_cpu()
                used.append(dt.date.fromisoformat(result['day']))
                busy = (cpu1[0] - cpu0[0]) / max(1, cpu1[1] - cpu0[1])
                result['machine_cpu_busy_pct'] = round(100 * busy, 1)
                result['loadavg_1m_before'] = round(load, 2)
                print(json.dumps(result), flush=True)
                bad |= bool(result['acknowledged_lost']
                    or result['acknowledged_paid_missing']
                    or result['oversold'] or result['booked_mismatch'])
    except BenchError as e:
        log(str(e))
        return 2
    return 1 if bad else 0


if __name__ == '__main__':
    sys.exit(main())
