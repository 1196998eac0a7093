"""Every server process quotes a price or a capacity edited in the back
office within 2 s (PostgreSQL, two workers of the HTTP server the booking
engine is served with, bench/_measure.py ENGINE_HTTP): trytond's routes,
and the booking engine's availability in front of them.

trytond clears the caches of the other processes at once only with
`[cache] clean_timeout = 0` (LISTEN/NOTIFY on channel ir_cache); with the
default 300 a worker keeps its snapshot of the catalogue (prices, rules)
for up to 5 minutes. The test runs both: 0 must be fresh, 300 must not be
(the control shows the test can fail).
"""
import base64
import datetime as dt
import http.client
import json
import sys
import tempfile
import time
import unittest
from pathlib import Path

from trytond import backend, config
from trytond.pool import Pool
from trytond.tests.test_tryton import DB_NAME, RouteTestCase
from trytond.transaction import Transaction

from ..slot import area_timezone
from .tools import (
    TEST_PII_KEY, configure_pii_key, create_area, create_slot,
    create_ticket_type, create_zone)

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[2]
WEB_KEY = 'test-cache-key-0123456789'
ADMIN_PASSWORD = 'Cache-sync-admin-7Qx!'
WORKERS = 2
FRESH_WITHIN = 2.0  # seconds after the back office's commit


def _measure():
    sys.path.insert(0, str(ROOT / 'bench'))
    try:
        import _measure
    finally:
        sys.path.remove(str(ROOT / 'bench'))
    return _measure


class Client:
    "HTTP to the server under test, a new connection per request."

    def __init__(self, port):
        self.port = port
        self.session = None

    def request(self, method, path, body=None, headers=None):
        conn = http.client.HTTPConnection('127.0.0.1', self.port, timeout=10)
        try:
            conn.request(method, path,
                body=json.dumps(body) if body is not None else None,
                headers={'Content-Type': 'application/json',
                    'Connection': 'close', **(headers or {})})
            response = conn.getresponse()
            data = response.read()
        finally:
            conn.close()
        return response, data

    def rpc(self, method, *params):
        "A call of the back office's JSON-RPC (what sao and proteus send)."
        headers = {}
        if self.session:
            headers['Authorization'] = 'Session ' + base64.b64encode(
                self.session.encode()).decode()
        response, data = self.request('POST', f'/{DB_NAME}/rpc/',
            {'method': method, 'params': list(params), 'id': 1}, headers)
        answer = json.loads(data)
        assert response.status == 200 and 'error' not in answer, data
        return answer['result']

    def login(self, login, password):
        result = self.rpc('common.db.login', login, {'password': password},
            'en')
        user_id, session = result[0], result[1]
        self.session = f'{login}:{user_id}:{session}'

    def availability(self, date, slot_id):
        "(worker pid, capacity, ADULT price) of the slot."
        response, data = self.request('GET',
            f'/{DB_NAME}/scenic/v1/availability?date={date}',
            headers={'Authorization': f'Bearer {WEB_KEY}'})
        assert response.status == 200, data
        slot, = [s for s in json.loads(data)['slots'] if s['id'] == slot_id]
        price, = [p['price'] for p in slot['prices']
            if p['ticket_type'] == 'ADULT']
        return (int(response.getheader('X-Worker-Pid')), slot['capacity'],
            price)


@unittest.skipIf(backend.name != 'postgresql',
    "LISTEN/NOTIFY between processes needs PostgreSQL")
class CacheSyncTestCase(RouteTestCase):
    "Test that back-office changes reach every server process"
    module = 'scenic_ticket'

    @classmethod
    def setUpClass(cls):
        configure_pii_key()
        super().setUpClass()

    @classmethod
    def setUpDatabase(cls):
        pool = Pool()
        Channel = pool.get('scenic.channel')
        User = pool.get('res.user')
        company = create_area()
        admin = User(Transaction().user)
        User.write([admin], {
                'companies': [('add', [company.id])],
                'company': company.id,
                'password': ADMIN_PASSWORD})
        with Transaction().set_context(company=company.id):
            main = create_zone(company, 'MAIN', daily_max=100000,
                instant_max=50000)
            web, = Channel.create([{'company': company.id, 'name': "Web",
                        'code': 'web', 'kind': 'online'}])
            web.set_api_key(WEB_KEY)
            create_ticket_type(company, 'ADULT', '100',
                zones=[('add', [main.id])])

    def setUp(self):
        super().setUp()
        with Transaction().start(DB_NAME, 0) as transaction:
            pool = Pool()
            Company = pool.get('company.company')
            TicketType = pool.get('scenic.ticket.type')
            company, = Company.search([])
            self.date = (dt.datetime.now(area_timezone(company)).date()
                + dt.timedelta(days=3))
            with Transaction().set_context(company=company.id):
                adult, = TicketType.search([('code', '=', 'ADULT')])
                self.type_id = adult.id
                TicketType.write([adult], {'base_price': 100})
                self.slot_id = create_slot(company, self.date, (10, 0),
                    (11, 0), capacity=40).id
            transaction.commit()

    def tearDown(self):
        with Transaction().start(DB_NAME, 0) as transaction:
            TimeSlot = Pool().get('scenic.time_slot')
            TimeSlot.delete([TimeSlot(self.slot_id)])
            transaction.commit()
        super().tearDown()

    def serve(self, clean_timeout, app='worker_pid_app:app'):
        "Edit price and capacity through the server; the answers after it."
        measure = _measure()
        with tempfile.TemporaryDirectory() as tmpdir:
            conf = measure.write_config(tmpdir,
                config.get('database', 'uri'), TEST_PII_KEY,
                clean_timeout=clean_timeout)
            server = measure.Server(conf, tmpdir, DB_NAME, WORKERS, 2,
                lambda message: None, app=app, pythonpath=HERE,
                http=measure.ENGINE_HTTP)
            server.start()
            try:
                return self.edit_and_watch(Client(server.port))
            finally:
                server.stop()

    def edit_and_watch(self, client):
        # every worker has quoted the old values (and cached the catalogue)
        seen = {}
        deadline = time.monotonic() + 30
        while len(seen) < WORKERS and time.monotonic() < deadline:
            pid, capacity, price = client.availability(self.date,
                self.slot_id)
            seen[pid] = (capacity, price)
        self.assertEqual(len(seen), WORKERS, "not every worker answered")
        self.assertEqual(set(seen.values()), {(40, '100.00')})

        client.login('admin', ADMIN_PASSWORD)
        client.rpc('model.scenic.ticket.type.write', [self.type_id],
            {'base_price': {'__class__': 'Decimal', 'decimal': '123.00'}},
            {})
        client.rpc('model.scenic.time_slot.write', [self.slot_id],
            {'capacity': 47}, {})
        edited = time.monotonic()

        # poll every worker until each answers both new values
        latest = {}
        while time.monotonic() - edited < FRESH_WITHIN:
            pid, capacity, price = client.availability(self.date,
                self.slot_id)
            latest[pid] = (capacity, price, time.monotonic() - edited)
            if (len(latest) == WORKERS and all(v[:2] == (47, '123.00')
                        for v in latest.values())):
                break
        return latest

    def test_edits_reach_every_worker(self):
        "clean_timeout 0: every worker quotes the new price and capacity"
        latest = self.serve(clean_timeout=0)
        self.assertEqual(len(latest), WORKERS, latest)
        for pid, (capacity, price, after) in latest.items():
            self.assertEqual((capacity, price), (47, '123.00'),
                f"worker {pid} after {after:.2f} s")
        print(f"\nfresh in every worker within "
            f"{max(v[2] for v in latest.values()):.2f} s", file=sys.stderr)

    def test_edits_reach_every_engine_worker(self):
        "The booking engine's availability: fresh in every worker"
        latest = self.serve(clean_timeout=0,
            app='worker_pid_app:engine_app()')
        self.assertEqual(len(latest), WORKERS, latest)
        for pid, (capacity, price, after) in latest.items():
            self.assertEqual((capacity, price), (47, '123.00'),
                f"worker {pid} after {after:.2f} s")

    def test_default_clean_timeout_is_stale(self):
        "clean_timeout 300 (trytond's default): a worker quotes the old price"
        latest = self.serve(clean_timeout=300)
        self.assertIn((47, '100.00'), {v[:2] for v in latest.values()},
            latest)
