#!/usr/bin/env python3
"""Analytics on PostgreSQL: dashboard refresh queries, notebooks' main
queries, and what the rollups cost a 1000-scan upload.

    .venv/bin/python bench/analytics.py                  # --size small
    .venv/bin/python bench/analytics.py --size medium
    .venv/bin/python bench/analytics.py --days 365 --visitors 9000  # ~year

1. a throwaway PostgreSQL cluster; database `analytics`: trytond-admin and
   scripts/load_demo.py;
2. scripts/simulate_history.py with the size's days and weekday visitors
   (a year of a busy area, ~5 M tickets and ~10 M scans, is `--days 365
   --visitors 9000`: hours of set-up on a shared 2-core machine; the sizes
   below are what fits in minutes);
3. every dashboard refresh query (as the poller reads them, on the last
   day of history) 50 times: p50 / p95; every notebook's main query 3
   times: the slowest run; through a read-only connection (scenic_analytics);
4. in-process (Tryton): uploads of 1000 admitted scans, alternately with the
   rollups maintained and with `rollup.add_scans` stubbed out, each in a
   rolled-back transaction: the rollups' share of the batch's time.

Prints the figures, CPU time per operation and the machine's load.
"""
import argparse
import contextlib
import datetime as dt
import json
import os
import resource
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _measure  # noqa: E402
from _measure import BenchError, percentile  # noqa: E402

_measure.ensure_venv('psycopg', 'pandas', 'scenic_analytics')

sys.path.insert(0, str(_measure.ROOT / 'scripts'))
from pgcluster import throwaway_cluster  # noqa: E402

DATABASE = 'analytics'
PII_KEY = 'bench-only-pii-key-0123456789abcdef0123456789'
SIZES = {
    # days, persons on an ordinary weekday
    'small': (60, 1500),
    'medium': (120, 3000),
    'year': (365, 9000),
    }
REFRESH_RUNS = 50
NOTEBOOK_RUNS = 3
UPLOAD_BATCHES = 8
BATCH = 1000


def log(message):
    print(f"analytics bench: {message}", flush=True)


def measure_uploads(conf, batches):
    """Time uploads of BATCH scans with and without the rollups (in this
    process, Tryton loaded); returns seconds and CPU seconds per batch."""
    from trytond import config as tconfig
    tconfig.update_etc(str(conf))
    from unittest import mock

    from trytond.pool import Pool
    from trytond.transaction import Transaction
    Pool.start()
    pool = Pool(DATABASE)
    pool.init()
    from scenic_gate import rollup
    from scenic_gate.upload import parse_scans, upload
    results = {'with': [], 'without': [], 'with_cpu': [], 'without_cpu': []}
    with Transaction().start(DATABASE, 0) as transaction:
        Company = pool.get('company.company')
        company, = Company.search([], order=[('id', 'ASC')], limit=1)
        Gate = pool.get('scenic.gate')
        Box = pool.get('scenic.gate.box')
        gates = [g.id for g in Gate.search([('company', '=', company.id)])]
        box, = Box.search([('company', '=', company.id)], limit=1)
        base = dt.datetime.now(dt.timezone.utc).replace(microsecond=0)
        for i in range(batches * 2 + 2):
            mode = 'with' if i % 2 else 'without'
            scans = [{'nonce': str(uuid.uuid4()),
                    'at': (base + dt.timedelta(seconds=3 * k)).isoformat(),
                    'gate': gates[k % len(gates)], 'lane': 1,
                    'medium': 'qr', 'ticket': None, 'card': None,
                    'decision': 'open' if k % 20 else 'deny',
                    'reason': 'ok', 'persons': 1,
                    'direction': 'in' if k % 3 else 'out',
                    'offline': False, 'binding': None}
                for k in range(BATCH)]
            parsed = parse_scans({'scans': scans})
            stub = (mock.patch.object(rollup, 'add_scans')
                if mode == 'without' else contextlib.nullcontext())
            with transaction.set_context(company=company.id), stub:
                cpu = time.process_time()
                start = time.perf_counter()
                upload(box.id, company, parsed)
                elapsed = time.perf_counter() - start
                cpu = time.process_time() - cpu
            transaction.rollback()
            if i >= 2:   # the first two warm up
                results[mode].append(elapsed)
                results[mode + '_cpu'].append(cpu)
    return results


def time_queries(uri, day, start, end):
    import scenic_analytics.reports as r
    from scenic_analytics import connect
    url = uri.rstrip('/') + '/' + DATABASE
    db = connect(url)
    company = r.first_company(db)
    tz = r.area_timezone(db, company)
    lo = dt.datetime.combine(day, dt.time(), tz)
    now = dt.datetime.combine(day, dt.time(15), tz)
    refresh = {
        'zone_headcount': lambda: r.zone_headcount(db, company, day),
        'gate_flows (today)': lambda: r.gate_flows(db, company, lo,
            lo + dt.timedelta(days=1)),
        'box_status': lambda: r.box_status(db, company, now),
        'slots_of_day': lambda: r.slots_of_day(db, company, day, now),
        'sales_of_day': lambda: r.sales_of_day(db, company, day),
        }
    notebooks = {
        'arrival_curve': lambda: r.arrival_curve(db, company, start, end),
        'dwell_times': lambda: r.dwell_times(db, company, start, end),
        'no_shows': lambda: r.no_shows(db, company, start, end),
        'demand_pricing': lambda: r.demand_pricing(db, company, start, end),
        'channel_mix': lambda: r.channel_mix(db, company, start, end),
        'recognised_vs_cash': lambda: r.recognised_vs_cash(
            db, company, start, end),
        'forecast_arrivals': lambda: r.forecast_arrivals(db, company, end),
        'revenue': lambda: r.revenue(db, company, start, end),
        }
    figures = {'refresh': {}, 'notebooks': {}}
    for name, query in refresh.items():
        query()
        times = []
        for _ in range(REFRESH_RUNS):
            t = time.perf_counter()
            rows = len(query())
            times.append(time.perf_counter() - t)
        figures['refresh'][name] = {
            'p50_ms': percentile(times, 50, 1000),
            'p95_ms': percentile(times, 95, 1000), 'rows': rows}
    for name, query in notebooks.items():
        times = []
        for _ in range(NOTEBOOK_RUNS):
            t = time.perf_counter()
            rows = len(query())
            times.append(time.perf_counter() - t)
        figures['notebooks'][name] = {'max_s': round(max(times), 3),
            'rows': rows}
    db.close()
    return figures


def _children_cpu():
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def server_cpu(uri):
    """CPU seconds of the PostgreSQL server: the postmaster, its ended
    children (the finished sessions' backends) and its live ones."""
    pid = _measure.postmaster_pid(uri, 'postgres')
    if pid is None:
        raise BenchError("cannot find the cluster's postmaster")
    fields = Path(f'/proc/{pid}/stat').read_text().rsplit(')', 1)[1].split()
    ended = (int(fields[13]) + int(fields[14])) / _measure.CLOCK_TICKS
    return (_measure.proc_cpu(pid) + ended
        + sum(_measure.proc_cpu(c) for c in _measure.children(pid)))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--size', choices=sorted(SIZES), default='small')
    parser.add_argument('--days', type=int)
    parser.add_argument('--visitors', type=int)
    parser.add_argument('--python-generator', action='store_true',
        help="the per-ticket Python generator instead of the set-based "
        "one (scripts/simulate_history.py --set-based)")
    parser.add_argument('--erp-uploads', nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.erp_uploads:
        conf, out = args.erp_uploads
        Path(out).write_text(json.dumps(measure_uploads(conf,
                    UPLOAD_BATCHES)))
        return 0
    days, visitors = SIZES[args.size]
    days = args.days or days
    visitors = args.visitors or visitors
    started = time.monotonic()
    load_before = os.getloadavg()
    with contextlib.ExitStack() as stack:
        tmpdir = stack.enter_context(
            tempfile.TemporaryDirectory(prefix='scenic-analytics-'))
        log("starting a throwaway PostgreSQL cluster")
        uri = stack.enter_context(throwaway_cluster())
        conf = _measure.write_config(tmpdir, uri, PII_KEY)
        _measure.initialise(uri, conf, tmpdir, DATABASE, log,
            timeout_demo=1200)
        env = _measure.setup_env(tmpdir)
        server_before = server_cpu(uri)
        client_before = _children_cpu()
        generated = time.monotonic()
        result = _measure.run_step([sys.executable,
                _measure.ROOT / 'scripts' / 'simulate_history.py', '-c',
                conf, '-d', DATABASE, '--days', days, '--visitors',
                visitors] + ([] if args.python_generator
                else ['--set-based']), env, f"history: {days} days, "
            f"{visitors} visitors a weekday", 3600, log)
        generation = {'wall': time.monotonic() - generated,
            'client_cpu': _children_cpu() - client_before,
            'server_cpu': server_cpu(uri) - server_before}
        print(result.stdout.strip().splitlines()[-1])
        with _measure.pg_connect(uri, DATABASE) as conn:
            counts = {t: conn.execute(f'SELECT count(*) FROM {t}'
                ).fetchone()[0] for t in ['scenic_order', 'scenic_ticket',
                    'scenic_gate_scan', 'scenic_zone_minute',
                    'scenic_gate_quarter', 'scenic_slot_sales']}
            conn.execute('ANALYZE')
            size = conn.execute('SELECT pg_database_size(%s)',
                (DATABASE,)).fetchone()[0]
            end = conn.execute("SELECT MAX(visit_date) FROM scenic_ticket "
                "WHERE state = 'used'").fetchone()[0]
        log(f"rows: {counts}")
        start = end - dt.timedelta(days=min(days, 90) - 1)
        cpu = time.process_time()
        figures = time_queries(uri, end, start, end)
        query_cpu = time.process_time() - cpu
        out = Path(tmpdir) / 'uploads.json'
        _measure.run_step([sys.executable, __file__, '--erp-uploads', conf,
                out], env, f"{UPLOAD_BATCHES}+{UPLOAD_BATCHES} uploads of "
            f"{BATCH} scans", 900, log)
        uploads = json.loads(out.read_text())
    load_after = os.getloadavg()
    print(f"\n== analytics on PostgreSQL: {days} days, {visitors} visitors "
        f"a weekday: {counts['scenic_ticket']:,} tickets, "
        f"{counts['scenic_gate_scan']:,} scans ==")
    generator = ('Python per ticket' if args.python_generator
        else 'set-based in PostgreSQL')
    print(f"history generated ({generator}): {generation['wall']:.0f} s "
        f"wall, CPU {generation['client_cpu']:.0f} s client + "
        f"{generation['server_cpu']:.0f} s server (backends): "
        f"{counts['scenic_order']:,} orders, {counts['scenic_ticket']:,} "
        f"tickets, {counts['scenic_gate_scan']:,} scans; rollups "
        f"{counts['scenic_zone_minute']:,} zone minutes, "
        f"{counts['scenic_gate_quarter']:,} gate quarters, "
        f"{counts['scenic_slot_sales']:,} slot-sales rows; database "
        f"{size / 2 ** 20:,.0f} MiB")
    print("dashboard refresh queries (day {}, {} runs each): target p95 "
        "< 100 ms".format(end, REFRESH_RUNS))
    for name, f in figures['refresh'].items():
        print(f"  {name:<22} p50 {f['p50_ms']:>7} ms  p95 {f['p95_ms']:>7} "
            f"ms  ({f['rows']} rows)")
    print(f"notebooks' main queries ({start} – {end}, slowest of "
        f"{NOTEBOOK_RUNS}): target < 2 s")
    for name, f in figures['notebooks'].items():
        print(f"  {name:<22} {f['max_s']:>7} s  ({f['rows']} rows)")
    print(f"  (client CPU for all the queries: {query_cpu:.1f} s)")
    w, wo = uploads['with'], uploads['without']
    mw, mwo = statistics.median(w), statistics.median(wo)
    print(f"upload of {BATCH} scans, median of {len(w)} (rolled back): "
        f"with rollups {mw * 1000:.0f} ms (CPU "
        f"{statistics.median(uploads['with_cpu']) * 1000:.0f} ms), without "
        f"{mwo * 1000:.0f} ms (CPU "
        f"{statistics.median(uploads['without_cpu']) * 1000:.0f} ms): "
        f"rollups +{(mw / mwo - 1) * 100:.1f} % (target ≤ +20 %)")
    print(f"load average before {load_before[0]:.1f}, after "
        f"{load_after[0]:.1f} (2 cores shared); total "
        f"{time.monotonic() - started:.0f} s")
    return 0


if __name__ == '__main__':
    try:
        sys.exit(main())
    except BenchError as e:
        print(f"analytics bench: ERROR: {e}", file=sys.stderr)
        sys.exit(1)
