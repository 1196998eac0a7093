"""A busy site's day, sold and admitted while cut off, then synced over a
shaped link (shaped_link.py) to a fake ERP: shared by
test_box_site_link.py and bench/site_sync.py.

The box enrols and syncs while the link is up (it gets its site
allotment, its delegated key and the prices), the link drops, the window
sells ``sales`` tickets from the allotment and the gates record ``scans``
(the first ones decided by the box's own validator on the site's codes,
the rest appended as the validator would), then the link comes back: slow
(tbf), late (``delay`` each way), lossy, and down again for ``outage``
seconds ``outage_after`` seconds into the catch-up.  The box's sync loop
(SyncEngine.step, with its backoff) runs until both outboxes are empty.
"""

import base64
import json
import os
import resource
import threading
import time
import uuid
from datetime import timedelta

from scenic_common import ticketcode
from scenic_common.ticketcode import SigningKey

from box_fakes import AREA, NOW, SLOT_END, SLOT_START, Clock, FakeErp
from shaped_link import ShapedLink
from scenic_iotbox.site import SiteDesk
from scenic_iotbox.store import Store
from scenic_iotbox.sync import ErpClient, SyncEngine
from scenic_iotbox.validator import ScanRequest, Validator

SITE_KEY = SigningKey.generate(7)
SLOT = 101
TICKET_TYPE = 5
FIRST_ID = 500_000
VALIDATED = 50          # scans decided by the validator itself


def site_section(quota):
    return {'keys': [{'key_id': SITE_KEY.key_id,
                'private_key': base64.b64encode(
                    SITE_KEY.private_bytes()).decode()}],
        'allotments': [{'id': 1, 'slot': SLOT, 'date': '2026-05-01',
                'start': SLOT_START.isoformat(), 'end': SLOT_END.isoformat(),
                'quota': quota, 'sold': 0,
                'release_at': SLOT_END.isoformat(),
                'ticket_ids': [[FIRST_ID, FIRST_ID + quota - 1]]}],
        'prices': [{'ticket_type': TICKET_TYPE, 'price': '60.00',
                'persons': 1, 'entries': 1}]}


def _cpu():
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def run_day(tmp_path, sales=2000, scans=8000, rate='256kbit', delay=0.3,
        loss=0.05, outage=10.0, outage_after=3.0, deadline=110.0,
        log=lambda *a: None):
    """Run the day; returns a report (dict) with what the ERP holds."""
    report = {'sales': sales, 'scans': scans, 'rate': rate,
        'delay_s': delay, 'loss': loss, 'outage_s': outage}
    with ShapedLink(rate=rate, delay=delay, loss=loss) as link:
        erp = FakeErp(host=link.erp_host)
        try:
            erp.site = site_section(sales)
            erp.data['keys'].append({'key_id': SITE_KEY.key_id,
                'public_key': base64.b64encode(
                    SITE_KEY.public_bytes()).decode(), 'retired': False})
            link.start_proxy(erp.port)
            clock = Clock(NOW)
            store = Store(tmp_path / 'box.sqlite')
            # every sale and scan is still its own committed transaction;
            # NORMAL spares the fsync (the test is about the link)
            store.conn.execute('PRAGMA synchronous=NORMAL')
            desk = SiteDesk(store, clock=clock)
            client = ErpClient(f'http://{link.host}:{link.port}', 'demo',
                timeout=15.0, credentials=store.credentials)
            engine = SyncEngine(store, client, name='back-gate',
                hostname='site-1', sync_interval=0.2, max_backoff=2.0,
                clock=clock, enrolment_token='TOKEN-1', site=desk)
            engine.run_once()                   # enrol, first sync
            assert desk.active and store.keys()

            # --- cut off: the window sells, the gates admit -------------
            link.down()
            started = time.monotonic()
            cpu = _cpu()
            sold = []
            for n in range(sales):
                clock.now = NOW + timedelta(seconds=n % 3600)
                sold.append(desk.sell(TICKET_TYPE, SLOT))
            report['sell_s'] = round(time.monotonic() - started, 2)
            report['sell_cpu_ms'] = round((_cpu() - cpu) * 1000 / sales, 3)
            validator = Validator(store, tmp_path, clock=clock,
                online=lambda: False)
            opened = 0
            for sale in sold[:min(VALIDATED, scans)]:
                result = validator.scan(ScanRequest(gate='MAIN-IN', lane=1,
                    medium='qr', data=sale['code']))
                opened += result.decision.opened
            report['validated_open'] = opened
            rest = scans - min(VALIDATED, scans)
            with store.transaction() as conn:
                for n in range(rest):
                    sale = sold[(VALIDATED + n) % len(sold)]
                    direction = 'in' if n % 2 == 0 else 'out'
                    payload = {'nonce': uuid.uuid4().hex,
                        'at': (NOW + timedelta(seconds=n % 7200))
                        .isoformat(),
                        'gate': 7 if direction == 'in' else 8,
                        'lane': 1 + n % 4, 'medium': 'qr',
                        'ticket': sale['ticket'], 'card': None,
                        'decision': 'open', 'reason': 'ok', 'persons': 1,
                        'direction': direction, 'offline': True}
                    store.append_scan(conn, payload['nonce'], NOW, payload,
                        ticket=sale['ticket'], zone=1,
                        zone_delta=1 if direction == 'in' else -1)
            report['outbox'] = {'sales': desk.outbox_size(),
                'scans': store.outbox_size()}

            # --- the link comes back, slow and lossy, and drops -----------
            link.up()
            sent0, received0 = client.sent_bytes, client.received_bytes
            cpu = _cpu()
            started = time.monotonic()
            dropped = threading.Event()

            def drop():
                time.sleep(outage_after)
                link.down()
                log(f'link down for {outage} s')
                time.sleep(outage)
                link.up()
                dropped.set()
            threading.Thread(target=drop, daemon=True).start()
            rounds = failures = 0
            while time.monotonic() - started < deadline:
                engine.step()
                rounds += 1
                failures += bool(engine.failures)
                if not desk.outbox_size() and not store.outbox_size() \
                        and dropped.is_set():
                    break
                time.sleep(min(engine.next_delay(), 2.0)
                    if engine.failures else 0)
            report['sync_s'] = round(time.monotonic() - started, 1)
            report['sync_cpu_s'] = round(_cpu() - cpu, 2)
            report['rounds'] = rounds
            report['failed_rounds'] = failures
            report['body_bytes_sent'] = client.sent_bytes - sent0
            report['body_bytes_received'] = client.received_bytes - received0
            report['left'] = {'sales': desk.outbox_size(),
                'scans': store.outbox_size()}
            report['tbf_host_end'] = link.tc_stats()
            report['link'] = link.stop()
            report['raw_json_bytes'] = len(json.dumps(
                [json.loads(r['payload']) for r in store.query(
                    'SELECT payload FROM sales')]
                + [json.loads(r['payload']) for r in store.query(
                    'SELECT payload FROM outbox')], separators=(',', ':')))
            # --- what the ERP holds ---------------------------------------
            report['erp_sales'] = len(erp.sales)
            report['erp_scans'] = len(erp.scans)
            report['erp_sales_ok'] = sum(s['ok'] for s in erp.sales.values())
            report['erp_sales_through'] = erp.sales_through
            report['box_sales_nonces'] = sorted(r['nonce'] for r in
                store.query('SELECT nonce FROM sales'))
            report['box_scan_nonces'] = sorted(r['nonce'] for r in
                store.query('SELECT nonce FROM outbox'))
            report['erp_sales_nonces'] = sorted(erp.sales)
            report['erp_scan_nonces'] = sorted(erp.scans)
            report['sales_batches'] = sum(1 for m, p in erp.requests
                if p.endswith('/sales'))
            report['scan_batches'] = len(erp.batches)
            report['scan_resent'] = sum(len(b) for b in erp.batches) \
                - len(erp.scans)
            report['tickets_unique'] = len({s['ticket'] for s in sold}) \
                == len(sold)
            keyring = ticketcode.Keyring()
            keyring.add(SITE_KEY.key_id, SITE_KEY.public_bytes())
            report['codes_verify'] = all(ticketcode.verify(s['code'],
                    keyring, now=NOW, area_id=AREA).ok for s in sold[:200])
            store.close()
        finally:
            erp.close()
    report['pid'] = os.getpid()
    return report
