#!/usr/bin/env python3
"""Benchmark of the partner API and the partner notices.

Starts a throwaway PostgreSQL cluster (durable commits), loads the demo
(scripts/load_demo.py, with scripts/demo_group.py's OTA partner `demo-ota`),
serves it with gunicorn (2 gthread workers x 4 threads) and:

1. orders: N concurrent clients (default 32), each a partner of its own
   (copies of `demo-ota` made in SQL, each with its own key, channel and
   contract), sign and send create + pay of one real-name ADULT visitor
   for a random slot of the coming days, for --seconds; prints orders/s,
   p50/p99 of create+pay, errors by code, CPU of the server, PostgreSQL and
   this process, and the HMAC check's own cost per request;
2. notices: --notices (default 10,000) notices queued for `demo-ota` are
   delivered to the simulated partner by `deliver_pending`, in this
   process; prints the time, the deliveries, the retries and what the
   partner handled (each notice exactly once).

    python bench/partner_api.py                 # ~3 minutes here
    python bench/partner_api.py --seconds 20 --notices 2000

One JSON line per phase on stdout.
"""
import argparse
import datetime as dt
import hashlib
import json
import random
import sys
import tempfile
import threading
import time
import timeit
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import _measure  # noqa: E402  (bench/_measure.py, standard library only)
from _measure import BenchError, percentile  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / 'scripts'))
_measure.ensure_venv('psycopg', 'trytond')
from pgcluster import throwaway_cluster  # noqa: E402
from scenic_common import partnersign  # noqa: E402
from scenic_common.idnumber import make_resident_id  # noqa: E402
from scenic_common.simpartner import PartnerClient, SimulatedPartner  # noqa

DATABASE = 'partners'
PII_KEY = 'bench-only-key-partners-0123456789abcdef012345'
PG_SETTINGS = dict(_measure.DURABLE_PG_SETTINGS)
NOTICE_SECRET = 'demo-ota-notice-secret'


def log(message):
    print(f"partner_api: {message}", file=sys.stderr, flush=True)


def clone_partners(uri, count):
    """`count` partners like demo-ota (own party, channel, key, monthly
    contract with its prices, free sale); return [(key id, secret)]."""
    # scenic_common only: importing trytond's modules here would fix its
    # backend before notice_phase loads the configuration.
    from scenic_common.pii import PIIVault
    vault = PIIVault(PII_KEY)
    keys = []
    with _measure.pg_connect(uri, DATABASE) as conn:
        base = conn.execute("SELECT id, company, party FROM "
            "scenic_group_partner WHERE key_id='demo-ota'").fetchone()
        contract = conn.execute("SELECT id FROM scenic_group_contract "
            "WHERE partner=%s", (base[0],)).fetchone()[0]
        for n in range(count):
            key, secret = f'bench-{n}', f'bench-secret-{n}-{uuid.uuid4()}'
            channel = conn.execute("""
                INSERT INTO scenic_channel (company, name, code, kind,
                    hold_minutes, booking_page, active, create_uid,
                    create_date)
                VALUES (%s, %s, %s, 'ota', 15, false, true, 0, now())
                RETURNING id""", (base[1], key, key)).fetchone()[0]
            partner = conn.execute("""
                INSERT INTO scenic_group_partner (company, party, kind,
                    channel, key_id, secret_hint, secret_encrypted, active,
                    create_uid, create_date)
                VALUES (%s, %s, 'ota', %s, %s, 'x', %s, true, 0, now())
                RETURNING id""", (base[1], base[2], channel, key,
                    vault.encrypt(secret))).fetchone()[0]
            new = conn.execute("""
                INSERT INTO scenic_group_contract (company, partner, number,
                    start_date, state, payment_term, over_credit,
                    release_hours, amend_hours, free_sale, bill_admitted,
                    ota_codes, create_uid, create_date)
                SELECT company, %s, %s, start_date, 'active', 'monthly',
                    over_credit, release_hours, amend_hours, true, false,
                    false, 0, now()
                FROM scenic_group_contract WHERE id=%s
                RETURNING id""", (partner, f'BENCH-{n}', contract)
                ).fetchone()[0]
            conn.execute("""
                INSERT INTO scenic_group_contract_price (contract,
                    ticket_type, date_from, date_to, price, create_uid,
                    create_date)
                SELECT %s, ticket_type, date_from, date_to, price, 0, now()
                FROM scenic_group_contract_price WHERE contract=%s""",
                (new, contract))
            keys.append((key, secret))
        slots = [r[0] for r in conn.execute("""
                SELECT id FROM scenic_time_slot WHERE zone IS NULL
                AND date > CURRENT_DATE + 1 ORDER BY date, start_time
                """).fetchall()]
    return keys, slots


def order_phase(base_url, keys, slots, seconds, meter):
    ids = iter(range(1, 10 ** 7))
    lock = threading.Lock()
    latencies, codes = [], Counter()
    signing = []
    stop = time.monotonic() + seconds

    def client(key):
        client = PartnerClient(base_url, *key, timeout=30)
        rng = random.Random(key[0])
        done = 0
        while time.monotonic() < stop:
            with lock:
                n = next(ids)
            number = make_resident_id(
                '110105', dt.date(1950, 1, 1) + dt.timedelta(n % 20000),
                n // 20000 % 999 + 1)
            poid = f'{key[0]}-{n}'
            body = {'partner_order_id': poid, 'slot': rng.choice(slots),
                'items': [{'ticket_type': 'ADULT', 'visitors': [
                            {'name': "游客", 'id_number': number}]}],
                'contact': {'name': "游客", 'phone': '13800138000'}}
            started = time.perf_counter()
            status, answer = client.post('/orders', body)
            if status == 201:
                status, answer = client.post(f'/orders/{poid}/pay',
                    {'amount': answer['total']})
            elapsed = time.perf_counter() - started
            with lock:
                if status in (200, 201):
                    latencies.append(elapsed)
                    done += 1
                else:
                    codes[answer.get('error', {}).get('code', status)] += 1
        signing.append(client.signing_seconds)
        return done

    with meter.measure() as cpu:
        started = time.monotonic()
        with ThreadPoolExecutor(max_workers=len(keys)) as pool:
            done = sum(pool.map(client, keys))
        wall = time.monotonic() - started
    # The server's HMAC check of a typical request, measured apart.
    body = json.dumps({'partner_order_id': 'x' * 20, 'slot': 1, 'items': [
                {'ticket_type': 'ADULT', 'visitors': [
                        {'name': "游客", 'id_number': '1' * 18}]}]}).encode()
    headers = partnersign.signed_headers('k', 's', 'POST', '/p/orders', '',
        body)
    runs = 20000
    verify = timeit.timeit(lambda: partnersign.verify(
            ['s'], 'POST', '/p/orders', '', int(headers[
                    partnersign.TIMESTAMP_HEADER]),
            headers[partnersign.NONCE_HEADER], body,
            headers[partnersign.SIGNATURE_HEADER]), number=runs) / runs
    return {
        'phase': 'orders', 'clients': len(keys), 'seconds': round(wall, 1),
        'orders': done, 'orders_per_s': round(done / wall, 1),
        'create_pay_p50_ms': percentile(latencies, 50, 1000),
        'create_pay_p99_ms': percentile(latencies, 99, 1000),
        'refused': dict(codes),
        'hmac_verify_us': round(verify * 1e6, 1),
        'client_signing_us_per_request': round(
            sum(signing) / max(2 * done, 1) * 1e6, 1),
        'cpu': cpu,
        }


def notice_phase(conf, uri, count, fail_ratio):
    "Queue `count` notices for demo-ota and deliver them here."
    import os
    os.environ['TRYTOND_CONFIG'] = str(conf)
    from trytond.config import update_etc
    update_etc(str(conf))
    from trytond.pool import Pool
    from trytond.transaction import Transaction
    Pool.start()
    Pool(DATABASE).init()
    sim = SimulatedPartner('demo-ota', NOTICE_SECRET).start()
    rng = random.Random(7)
    original = sim.receive

    def flaky(*args):
        if rng.random() < fail_ratio:
            sim.deliveries += 1
            return 503, {'error': 'simulated failure'}
        return original(*args)
    sim.receive = flaky
    try:
        with _measure.pg_connect(uri, DATABASE) as conn:
            partner, company, order = conn.execute("""
                SELECT p.id, p.company, (SELECT min(id) FROM scenic_order
                    WHERE group_partner = p.id)
                FROM scenic_group_partner p WHERE key_id='demo-ota'
                """).fetchone()
            conn.execute("UPDATE scenic_group_notice SET state='delivered'")
            conn.execute("UPDATE scenic_group_partner SET notice_url=%s "
                "WHERE id=%s", (sim.url, partner))
            conn.execute("""
                INSERT INTO scenic_group_notice (company, partner, "order",
                    kind, notice_id, payload, state, attempts,
                    next_attempt_at, create_uid, create_date)
                SELECT %s, %s, CASE WHEN n %% 10 = 0 THEN %s END,
                    'ticket_used', md5(n::text || %s),
                    json_build_object('n', n)::text, 'pending', 0,
                    now() at time zone 'utc', 0, now()
                FROM generate_series(1, %s) n""",
                (company, partner, order, str(uuid.uuid4()), count))
        from scenic_group.notice import deliver_pending
        started = time.monotonic()
        delivered = failed = rounds = 0
        clock = dt.datetime.utcnow()
        while delivered < count and rounds < 10000:
            rounds += 1
            with Transaction().start(DATABASE, 0) as transaction:
                d, f = deliver_pending(limit=500, now=clock)
                transaction.commit()
            delivered += d
            failed += f
            if not d and not f:
                # Only retries left: move the clock past their backoff
                # rather than sleep through it.
                clock += dt.timedelta(seconds=60)
        wall = time.monotonic() - started
        ids = [n['n'] for n in sim.handled]
        return {
            'phase': 'notices', 'queued': count, 'delivered': delivered,
            'failed_attempts': failed, 'seconds': round(wall, 1),
            'notices_per_s': round(delivered / wall, 1),
            'partner_deliveries': sim.deliveries,
            'handled_once': len(ids) == len(set(ids)) == count,
            'fail_ratio': fail_ratio,
            }
    finally:
        sim.stop()


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--clients', type=int, default=32)
    parser.add_argument('--seconds', type=float, default=60)
    parser.add_argument('--notices', type=int, default=10000)
    parser.add_argument('--fail-ratio', type=float, default=0.02,
        help="share of deliveries the simulated partner refuses")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix='partner-bench-') as tmpdir, \
            throwaway_cluster(settings=PG_SETTINGS) as uri:
        conf = _measure.write_config(tmpdir, uri, PII_KEY)
        _measure.initialise(uri, conf, tmpdir, DATABASE, log)
        keys, slots = clone_partners(uri, args.clients)
        server = _measure.Server(conf, tmpdir, DATABASE, 2, 4, log,
            ready_path=f'/{DATABASE}/scenic/partner/v1/openapi.json')
        server.start()
        try:
            meter = _measure.CPUMeter({'server': server.process.pid,
                    'postgres': _measure.postmaster_pid(uri, DATABASE)})
            base_url = (f'http://127.0.0.1:{server.port}/{DATABASE}'
                '/scenic/partner/v1')
            log(f"orders: {args.clients} partners for {args.seconds} s")
            print(json.dumps(order_phase(base_url, keys, slots,
                        args.seconds, meter)), flush=True)
        finally:
            server.stop()
        log(f"notices: {args.notices}")
        print(json.dumps(notice_phase(conf, uri, args.notices,
                    args.fail_ratio)), flush=True)


if __name__ == '__main__':
    try:
        sys.exit(main())
    except BenchError as error:
        log(f"ERROR: {error}")
        sys.exit(1)
