#!/usr/bin/env python3
"""Month close: post, settle and close a month of one busy area.

    python bench/month_close.py [--tickets 1000000] [--days 30] [--profile]

On a throwaway PostgreSQL cluster (scripts/pgcluster.py), database `month`
with scenic_finance activated (trytond-admin), one area with the Chinese
chart; then, set-based (INSERT … SELECT generate_series), a month of
history: `--tickets` orders of one ticket each over the days of last month
(day 1 is the busy one with 1.5 × the mean), methods cash / WeChat Pay /
Alipay / UnionPay / simulated in turn; 80 % used at the gate (a scan each),
5 % refunded, 15 % expiring unused at the end of their day.

Measured (wall time and this process's CPU, the machine's load average
beside): posting every day (receipts, refunds, recognition: one committed
transaction per day, as the cron does), the busiest day alone, settling
every day, closing the month. Prints one JSON line: figures, moves and
lines created, peak memory (ru_maxrss of this process, which runs
trytond; the PostgreSQL backends are not counted), CPU of this process and
of PostgreSQL (the postmaster, its live backends and the reaped ones).
With --profile the cluster loads pg_stat_statements and the statements
that took most time while posting, settling and closing are printed to
stderr. Targets: month posts and closes < 60 s, the busy day (50,000
orders at full size) < 3 s.
"""
import argparse
import datetime as dt
import json
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _measure  # noqa: E402

ROOT = _measure.ROOT
_measure.ensure_venv('psycopg', 'trytond')
sys.path.insert(0, str(ROOT / 'scripts'))
from pgcluster import throwaway_cluster  # noqa: E402

DATABASE = 'month'
PII_KEY = 'bench-only-key-month-0123456789abcdef0123456789'
METHODS = ['cash', 'wechat', 'alipay', 'unionpay', 'simulated']


def log(message):
    print(f"month_close: {message}", file=sys.stderr, flush=True)


def pg_cpu(pid):
    """CPU seconds of a PostgreSQL server: the postmaster, its reaped
    backends (cutime, cstime) and the live ones."""
    if not pid:
        return 0.0
    try:
        with open(f'/proc/{pid}/stat') as f:
            fields = f.read().rsplit(')', 1)[1].split()
        own = sum(int(v) for v in fields[11:15]) / _measure.CLOCK_TICKS
    except (OSError, ValueError):
        return 0.0
    return own + sum(_measure.proc_cpu(c) for c in _measure.children(pid))


PROFILE = """
SELECT round(total_exec_time::numeric / 1000, 2) AS s, calls, rows,
    left(regexp_replace(query, '\\s+', ' ', 'g'), 220)
FROM pg_stat_statements ORDER BY total_exec_time DESC LIMIT %s"""


def month_days(days):
    today = dt.date.today()
    first = (today.replace(day=1) - dt.timedelta(1)).replace(day=1)
    last = today.replace(day=1) - dt.timedelta(1)
    return first, min(days, (last - first).days + 1)


def setup_area(first):
    "Company, catalogue, gate and posting rule, through the ORM."
    from trytond.pool import Pool
    from trytond.transaction import Transaction
    from trytond.modules.company.tests import create_company
    pool = Pool()
    Currency = pool.get('currency.currency')
    User = pool.get('res.user')
    cny, = Currency.create([{'name': "Yuan", 'code': 'CNY', 'digits': 2,
                'rounding': 1, 'symbol': '¥'}]) if not Currency.search(
        [('code', '=', 'CNY')]) else Currency.search([('code', '=', 'CNY')])
    company = create_company(name="Bench Scenic Area", currency=cny)
    company.timezone = 'Asia/Shanghai'
    company.save()
    User.write([User(Transaction().user)], {
            'companies': [('add', [company.id])], 'company': company.id})
    with Transaction().set_context(company=company.id):
        Zone = pool.get('scenic.zone')
        zone, = Zone.create([{'company': company.id, 'name': "Main",
                    'code': 'MAIN', 'daily_max': 10 ** 6,
                    'instant_max': 10 ** 6}])
        TicketType = pool.get('scenic.ticket.type')
        ttype, = TicketType.create([{'company': company.id, 'name': "Adult",
                    'code': 'ADULT', 'category': 'adult',
                    'base_price': 106}])
        Channel = pool.get('scenic.channel')
        channel, = Channel.create([{'company': company.id, 'name': "Web",
                    'code': 'web', 'kind': 'online'}])
        Slot = pool.get('scenic.time_slot')
        slot, = Slot.create([{'company': company.id, 'date': first,
                    'start_time': dt.time(0), 'end_time': dt.time(23, 59),
                    'capacity': 10 ** 7}])
        Box = pool.get('scenic.gate.box')
        box, = Box.create([{'company': company.id, 'name': "Bench box"}])
        Gate = pool.get('scenic.gate')
        gate, = Gate.create([{'company': company.id, 'code': 'IN',
                    'name': "In", 'zone': zone.id, 'direction': 'in',
                    'lanes': 4, 'box': box.id}])
        from scenic_finance.api import setup_area as finance
        rule = finance(company, years={first.year, dt.date.today().year})
        JournalPeriod = pool.get('account.journal.period')
        Period = pool.get('account.period')
        JournalPeriod.create([{'journal': rule.journal.id, 'period': p.id}
                for p in Period.search([('company', '=', company.id)])])
    return dict(company=company.id, ttype=ttype.id, channel=channel.id,
        slot=slot.id, gate=gate.id, box=box.id, currency=cny.id)


LOAD = """
INSERT INTO scenic_order (company, reference, channel, slot, visit_date,
    state, total, currency, paid_at, create_uid, create_date)
SELECT %(company)s, 'B' || i, %(channel)s, %(slot)s, %(first)s::date + d,
    CASE WHEN i %% 20 < 16 THEN 'used' WHEN i %% 20 = 16 THEN 'refunded'
        ELSE 'expired' END, 106, %(currency)s, t, 1, t
FROM (SELECT i, d, (%(first)s::date + d)::timestamp - interval '8 hours'
        + interval '1 hour' + (i %% 36000) * interval '1 second' AS t
    FROM (SELECT i, CASE WHEN i <= %(busy)s THEN 0
            ELSE 1 + (i - %(busy)s) %% (%(days)s - 1) END AS d
        FROM generate_series(1, %(n)s) i) s) s;
INSERT INTO scenic_order_line ("order", ticket_type, quantity, persons,
    unit_price, amount, create_uid, create_date)
SELECT id, %(ttype)s, 1, 1, 106, 106, 1, create_date FROM scenic_order
WHERE company = %(company)s;
INSERT INTO scenic_ticket (company, "order", line, ticket_type, slot,
    visit_date, persons, entries_allowed, valid_from, valid_until, state,
    revoked_at, create_uid, create_date)
SELECT o.company, o.id, l.id, %(ttype)s, o.slot, o.visit_date, 1, 1,
    o.paid_at, o.visit_date::timestamp + interval '16 hours',
    CASE o.state WHEN 'used' THEN 'used' WHEN 'refunded' THEN 'revoked'
        ELSE 'expired' END,
    CASE WHEN o.state = 'refunded' THEN o.paid_at + interval '2 hours' END,
    1, o.paid_at
FROM scenic_order o JOIN scenic_order_line l ON l."order" = o.id
WHERE o.company = %(company)s;
INSERT INTO scenic_payment (company, "order", kind, provider,
    provider_reference, amount, currency, date, create_uid, create_date)
SELECT company, id, 'payment', (ARRAY['cash','wechat','alipay','unionpay',
    'simulated'])[1 + id %% 5], 'P' || id, 106, currency, paid_at, 1, paid_at
FROM scenic_order WHERE company = %(company)s;
INSERT INTO scenic_payment (company, "order", kind, provider,
    provider_reference, amount, currency, date, create_uid, create_date)
SELECT company, id, 'refund', (ARRAY['cash','wechat','alipay','unionpay',
    'simulated'])[1 + id %% 5], 'R' || id, 106, currency,
    paid_at + interval '2 hours', 1, paid_at
FROM scenic_order WHERE company = %(company)s AND state = 'refunded';
INSERT INTO scenic_gate_scan (company, time, gate, medium, ticket, decision,
    reason, persons, direction, offline, box, nonce, create_uid, create_date)
SELECT t.company, t.valid_from + interval '1 hour', %(gate)s, 'qr', t.id,
    'open', 'ok', 1, 'in', false, %(box)s, 'N' || t.id, 1, t.valid_from
FROM scenic_ticket t WHERE t.company = %(company)s AND t.state = 'used';
ANALYZE;
"""


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--tickets', type=int, default=1_000_000)
    parser.add_argument('--days', type=int, default=30)
    parser.add_argument('--profile', action='store_true',
        help="print the statements that took most time (pg_stat_statements)")
    parser.add_argument('--admin-timeout', type=int, default=600,
        help="seconds allowed to trytond-admin (more on a loaded machine)")
    args = parser.parse_args(argv)
    first, days = month_days(args.days)
    busy = int(args.tickets / days * 1.5)
    settings = ({'shared_preload_libraries': 'pg_stat_statements'}
        if args.profile else None)
    with throwaway_cluster(settings=settings) as uri, \
            tempfile.TemporaryDirectory() as tmp:
        conf = _measure.write_config(tmp, uri, PII_KEY)
        with _measure.pg_connect(uri, 'postgres', autocommit=True) as conn:
            conn.execute(f"CREATE DATABASE {DATABASE} TEMPLATE template0 "
                "ENCODING 'UTF8'")
        env = _measure.setup_env(tmp)
        _measure.run_step([_measure.bin_dir() / 'trytond-admin', '-c', conf,
                '-d', DATABASE, '-u', 'scenic_finance',
                '--activate-dependencies', '--email', 'a@example.com'],
            env, "trytond-admin (scenic_finance)", args.admin_timeout, log)
        os.environ['TRYTOND_CONFIG'] = str(conf)
        from trytond import config
        config.update_etc(str(conf))
        from trytond.pool import Pool
        from trytond.transaction import Transaction
        Pool.start()
        pool = Pool(DATABASE)
        pool.init()
        from trytond.transaction import TransactionError
        extras = {}
        for attempt in range(5):
            # The chart wizard locks tables: retry with them locked, as
            # trytond's dispatcher does.
            try:
                with Transaction().start(DATABASE, 1, context={},
                        **extras) as t:
                    ids = setup_area(first)
                    t.commit()
                break
            except TransactionError as error:
                error.fix(extras)
        log(f"loading {args.tickets} tickets over {days} days from "
            f"{first} (busy day {busy} orders)...")
        start = time.monotonic()
        with _measure.pg_connect(uri, DATABASE) as conn:
            params = dict(ids, first=first, days=days, busy=busy,
                n=args.tickets)
            for statement in LOAD.split(';'):
                if statement.strip():
                    conn.execute(statement, params
                        if '%(' in statement else None)
            conn.commit()
        load_s = time.monotonic() - start
        log(f"loaded in {load_s:.0f} s")
        postmaster = _measure.postmaster_pid(uri, DATABASE)
        if args.profile:
            with _measure.pg_connect(uri, DATABASE, autocommit=True) as conn:
                conn.execute('CREATE EXTENSION IF NOT EXISTS '
                    'pg_stat_statements')
                conn.execute('SELECT pg_stat_statements_reset()')
        from scenic_finance.posting import post_days
        from scenic_finance.close import close_month
        figures = {}
        cpu0, t0 = time.process_time(), time.monotonic()
        pg0 = pg_cpu(postmaster)
        load0 = os.getloadavg()
        # Each step in a transaction of its own: trytond's PostgreSQL
        # transactions are REPEATABLE READ, so a transaction opened before
        # the days were committed would not see them.
        context = {'company': ids['company']}
        with Transaction().start(DATABASE, 1, context=context):
            company = pool.get('company.company')(ids['company'])
            # The busy day alone first, timed (it is the first day).
            day_start, day_cpu = time.monotonic(), time.process_time()
            day_pg = pg_cpu(postmaster)
            post_days(company, until=first, commit=True)
            figures['busy_day_orders'] = busy
            figures['busy_day_post_s'] = round(
                time.monotonic() - day_start, 2)
            figures['busy_day_cpu_s'] = round(
                time.process_time() - day_cpu, 2)
            figures['busy_day_pg_cpu_s'] = round(
                pg_cpu(postmaster) - day_pg, 2)
        with Transaction().start(DATABASE, 1, context=context):
            company = pool.get('company.company')(ids['company'])
            post_days(company, until=first + dt.timedelta(days - 1),
                commit=True)
        figures['post_month_s'] = round(time.monotonic() - t0, 1)
        figures['post_month_cpu_s'] = round(time.process_time() - cpu0, 1)
        figures['post_month_pg_cpu_s'] = round(pg_cpu(postmaster) - pg0, 1)
        log(f"posted: {figures}")
        with Transaction().start(DATABASE, 1, context=context) as t:
            Day = pool.get('scenic.finance.day')
            s0, sc0 = time.monotonic(), time.process_time()
            settled = Day.search([('company', '=', ids['company']),
                    ('state', '=', 'posted')])
            Day.settle(settled)
            t.commit()
            figures['days_settled'] = len(settled)
            figures['settle_s'] = round(time.monotonic() - s0, 1)
            figures['settle_cpu_s'] = round(time.process_time() - sc0, 1)
        log(f"settled {len(settled)} days in {figures['settle_s']} s")
        c0, cc0 = time.monotonic(), time.process_time()
        extras = {}
        for attempt in range(5):
            # Closing a period locks tables: retry with them locked.
            try:
                with Transaction().start(DATABASE, 1, context=context,
                        **extras) as t:
                    Period = pool.get('account.period')
                    period, = Period.search([
                            ('company', '=', ids['company']),
                            ('start_date', '=', first),
                            ('type', '=', 'standard')])
                    last = first + dt.timedelta(days - 1)
                    if last != period.end_date:
                        figures['close_s'] = None  # shorter than the month
                        break
                    close_month(period)
                    t.commit()
                figures['close_s'] = round(time.monotonic() - c0, 1)
                figures['close_cpu_s'] = round(time.process_time() - cc0, 1)
                break
            except TransactionError as error:
                error.fix(extras)
        figures['post_settle_close_s'] = round(time.monotonic() - t0, 1)
        figures['cpu_s'] = round(time.process_time() - cpu0, 1)
        figures['pg_cpu_s'] = round(pg_cpu(postmaster) - pg0, 1)
        figures['loadavg_before'] = [round(v, 2) for v in load0]
        figures['loadavg_after'] = [round(v, 2) for v in os.getloadavg()]
        with _measure.pg_connect(uri, DATABASE) as conn:
            moves, = conn.execute('SELECT count(*) FROM account_move'
                ).fetchone()
            lines, = conn.execute('SELECT count(*) FROM account_move_line'
                ).fetchone()
            recognitions, = conn.execute(
                'SELECT count(*) FROM scenic_finance_recognition').fetchone()
            deferred, = conn.execute(
                "SELECT coalesce(sum(l.credit - l.debit), 0) FROM "
                "account_move_line l JOIN account_account a "
                "ON a.id = l.account WHERE a.code = '2203'").fetchone()
            if args.profile:
                for row in conn.execute(PROFILE, (25,)):
                    log("profile: %8s s %7s calls %9s rows  %s" % row)
        print(json.dumps({
                    'tickets': args.tickets, 'days': days,
                    'first_day': first.isoformat(), 'load_s': round(load_s),
                    **figures, 'moves': moves, 'move_lines': lines,
                    'recognition_rows': recognitions,
                    'deferred_2203_at_end': str(deferred),
                    'peak_rss_mb': round(resource.getrusage(
                            resource.RUSAGE_SELF).ru_maxrss / 1024),
                    'targets': {'post_settle_close_s': 60,
                        'busy_day_post_s_at_50000': 3},
                    }))


if __name__ == '__main__':
    main()
