#!/usr/bin/env python3
"""The day's counter alone: how many bookings of one day can claim it per
second, one row against the stripes.

    .venv/bin/python bench/daily_counter.py [--clients 16,64] [--seconds 10]

A throwaway PostgreSQL cluster with durable commits (fsync and
synchronous_commit on, as reservation_rush.py), only the stripe table. C
client threads, each on its own connection (READ COMMITTED, as the booking
engine), loop: `reservation._claim_daily` of one person (the booking
engine's code, through `dbtools.Session`), then COMMIT — the part of a
booking that holds the counter's lock until the commit is flushed. Runs
with `DAILY_STRIPES` = 1 (one row per day, as before the stripes; the claim
then waits for the row as the old single UPDATE did) and 16, each on a
fresh day. One JSON line per run: claims/s, claim and commit p50/p99, lock
waits seen in pg_stat_activity, PostgreSQL CPU per claim, and the check
that the day's sum equals the claims committed.
"""
import argparse
import datetime as dt
import itertools
import json
import os
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# backend.name of the SQL paths: PostgreSQL (no trytond database is opened)
os.environ['TRYTOND_DATABASE__URI'] = 'postgresql://'
sys.path.insert(0, str(ROOT / 'bench'))
sys.path.insert(0, str(ROOT / 'scripts'))
import _measure  # noqa: E402

_measure.ensure_venv('psycopg', 'trytond')

from pgcluster import throwaway_cluster  # noqa: E402

TABLE = """
CREATE TABLE scenic_daily_load_stripe (
    id SERIAL PRIMARY KEY, create_uid INTEGER, create_date TIMESTAMP,
    write_uid INTEGER, write_date TIMESTAMP, company INTEGER NOT NULL,
    "date" DATE NOT NULL, scope VARCHAR NOT NULL, zone INTEGER,
    stripe INTEGER NOT NULL, booked INTEGER NOT NULL,
    maximum INTEGER NOT NULL,
    CONSTRAINT scenic_daily_load_stripe_stripe_unique
        UNIQUE (company, "date", scope, stripe))
"""


def run(uri, reservation, dbtools, stripes, clients, seconds, day):
    import psycopg
    reservation.DAILY_STRIPES = stripes
    stop = time.monotonic() + seconds
    claims, commits, done, connections = [], [], [], []
    lock = threading.Lock()
    orders = itertools.count(1)

    def client():
        conn = _measure.pg_connect(uri, 'bench')
        conn.isolation_level = psycopg.IsolationLevel.READ_COMMITTED
        token = dbtools.use_session(dbtools.Session(conn))
        mine_claims, mine_commits, ok = [], [], 0
        try:
            while time.monotonic() < stop:
                start = time.perf_counter()
                if not reservation._claim_daily(1, day, 'area', None, 1,
                        10 ** 9, start=next(orders)):
                    raise AssertionError('refused below the maximum')
                claimed = time.perf_counter()
                conn.commit()
                mine_claims.append(claimed - start)
                mine_commits.append(time.perf_counter() - claimed)
                ok += 1
        finally:
            dbtools.end_session(token)
        with lock:
            # closed after the CPU meter's last sample: it counts the
            # backends alive then
            connections.append(conn)
            claims.extend(mine_claims)
            commits.extend(mine_commits)
            done.append(ok)

    waits, events = [], {}

    def watch():
        with _measure.pg_connect(uri, 'bench', autocommit=True) as conn:
            while time.monotonic() < stop:
                rows = conn.execute(
                    "SELECT wait_event, left(query, 40) "
                    "FROM pg_stat_activity WHERE "
                    "datname = 'bench' AND wait_event_type = 'Lock'"
                    ).fetchall()
                waits.append(len(rows))
                for event, query in rows:
                    key = f'{event}: {query}'
                    events[key] = events.get(key, 0) + 1
                time.sleep(0.05)

    meter = _measure.CPUMeter(
        {'postgres': _measure.postmaster_pid(uri, 'bench')}, own='clients')
    threads = [threading.Thread(target=client) for _ in range(clients)]
    threads.append(threading.Thread(target=watch))
    began = time.monotonic()
    with meter.measure() as cpu:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        wall = time.monotonic() - began
    for conn in connections:
        conn.close()
    total = sum(done)
    with _measure.pg_connect(uri, 'bench') as conn:
        booked = conn.execute('SELECT COALESCE(sum(booked), 0) FROM '
            'scenic_daily_load_stripe WHERE "date" = %s', (day,)
            ).fetchone()[0]
    ms = 1000
    return {
        'stripes': stripes, 'clients': clients, 'claims': total,
        'claims_per_s': round(total / wall, 1),
        'claim_p50_ms': _measure.percentile(claims, 50, ms),
        'claim_p99_ms': _measure.percentile(claims, 99, ms),
        'commit_p50_ms': _measure.percentile(commits, 50, ms),
        'commit_p99_ms': _measure.percentile(commits, 99, ms),
        'mean_sessions_waiting_on_locks': round(
            sum(waits) / max(len(waits), 1), 2),
        'lock_waits_seen': events,
        'postgres_cpu_ms_per_claim': round(
            cpu['seconds']['postgres'] * ms / max(total, 1), 2),
        'cpu': {k: v for k, v in cpu.items() if k.endswith('_pct')},
        'loadavg': [round(x, 2) for x in os.getloadavg()],
        'counter_equals_claims': booked == total,
        }


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--clients', default='16,64')
    parser.add_argument('--seconds', type=float, default=10)
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT / 'addons'))
    from scenic_ticket import dbtools, reservation
    settings = dict(_measure.DURABLE_PG_SETTINGS)
    days = (dt.date(2030, 1, 1) + dt.timedelta(days=n)
        for n in itertools.count())
    failed = False
    with throwaway_cluster(settings=settings) as uri:
        with _measure.pg_connect(uri, 'postgres', autocommit=True) as conn:
            conn.execute('CREATE DATABASE bench')
        with _measure.pg_connect(uri, 'bench') as conn:
            conn.execute(TABLE)
        for clients in [int(c) for c in args.clients.split(',')]:
            for stripes in (1, 16):
                result = run(uri, reservation, dbtools, stripes, clients,
                    args.seconds, next(days))
                failed |= not result['counter_equals_claims']
                print(json.dumps(result), flush=True)
    return 1 if failed else 0


if __name__ == '__main__':
    sys.exit(main())
