"""The partner API end to end through trytond's WSGI application: signing,
contracts, allotments, orders, refunds, credit and notices. Each test books
on a day of its own. The concurrency tests need PostgreSQL."""
import datetime as dt
import json
import time
import unittest
import uuid
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal

from scenic_common import partnersign
from scenic_common.simpartner import SimulatedPartner
from scenic_ticket.tests import routes
from scenic_ticket.tests.routes import id_numbers
from scenic_ticket.tests.tools import create_slot, create_ticket_type

from trytond import backend
from trytond.pool import Pool
from trytond.tests.test_tryton import DB_NAME
from trytond.transaction import Transaction

KEY = 'test-ota'
SECRET = 'test-ota-secret'
NOTICE_SECRET = 'test-ota-notice-secret'
new_id = id_numbers('310104', dt.date(1955, 1, 1), start=5000)


class PartnerAPITestCase(routes.AreaRouteTestCase):
    "Test the partner API"
    module = 'scenic_group'

    @classmethod
    def setUpDatabase(cls):
        pool = Pool()
        Channel = pool.get('scenic.channel')
        Party = pool.get('party.party')
        Partner = pool.get('scenic.group.partner')
        Contract = pool.get('scenic.group.contract')
        company, main = cls.create_main_area()
        with Transaction().set_context(company=company.id):
            adult = create_ticket_type(company, 'ADULT', '120',
                zones=[('add', [main.id])])
            group5 = create_ticket_type(company, 'GROUP5', '500',
                category='group', persons=5, real_name=False, id_limit=0,
                zones=[('add', [main.id])])
            create_ticket_type(company, 'CHILD', '60')
            partners = []
            for code, term, limit in [
                    ('ota', 'monthly', None), ('agency', 'credit', '1000')]:
                channel, = Channel.create([{'company': company.id,
                            'name': code, 'code': code, 'kind': 'ota'}])
                party, = Party.create([{'name': f"Partner {code}"}])
                partner, = Partner.create([{
                            'company': company.id, 'party': party.id,
                            'kind': 'ota' if code == 'ota' else 'agency',
                            'channel': channel.id,
                            'key_id': KEY if code == 'ota' else 'test-agency',
                            }])
                partner.set_secret(
                    SECRET if code == 'ota' else 'agency-secret')
                partner.set_notice_secret(NOTICE_SECRET)
                contract, = Contract.create([{
                            'company': company.id, 'partner': partner.id,
                            'number': f'C-{code}',
                            'start_date': dt.date(2020, 1, 1),
                            'payment_term': term,
                            'credit_limit': Decimal(limit) if limit else None,
                            'release_hours': 24, 'ota_codes': True,
                            'prices': [('create', [
                                        {'ticket_type': adult.id,
                                            'price': Decimal('100')},
                                        {'ticket_type': adult.id,
                                            'date_from': dt.date(2020, 1, 1),
                                            'date_to': dt.date(2099, 12, 31),
                                            'price': Decimal('90')},
                                        {'ticket_type': group5.id,
                                            'price': Decimal('400')},
                                        ])],
                            }])
                Contract.activate([contract])
                partners.append(partner)

    # --- helpers -----------------------------------------------------------

    def path(self, path):
        return f'/{self.db_name}/scenic/partner/v1{path}'

    def call(self, method, path, body=None, query='', key=KEY,
            secret=SECRET, timestamp=None, nonce=None, tamper=None,
            client=None):
        data = b'' if body is None else json.dumps(body).encode()
        full = self.path(path)
        headers = partnersign.signed_headers(key, secret, method, full,
            query, data, timestamp=timestamp, nonce=nonce)
        if tamper:
            headers.update(tamper)
        client = client or self.client()
        url = full + (f'?{query}' if query else '')
        return client.open(url, method=method, data=data or None,
            headers=headers, content_type='application/json')

    def assertError(self, response, status, code, field=None):
        self.assertEqual(response.status_code, status, response.get_data())
        error = response.json['error']
        self.assertEqual(error['code'], code, error)
        self.assertTrue(error['message'])
        if field is not None:
            self.assertEqual(error.get('field'), field)

    def partner(self, key=KEY):
        return Pool().get('scenic.group.partner').search(
            [('key_id', '=', key)])[0]

    def day_slot(self, capacity=50, allot=None, key=KEY, release_at=None):
        "A slot on a day of its own, with an allotment for the partner."
        with Transaction().start(DB_NAME, 0) as transaction:
            pool = Pool()
            Company = pool.get('company.company')
            Allotment = pool.get('scenic.group.allotment')
            company, = Company.search([])
            date = self.new_day(company, offset=2)
            with Transaction().set_context(company=company.id):
                slot = create_slot(company, date, (10, 0), (10, 30),
                    capacity=capacity)
                if allot:
                    Allotment.allot(self.partner(key), slot, allot,
                        release_at=release_at or dt.datetime(2099, 1, 1))
            transaction.commit()
            return slot.id

    def order_body(self, slot, ids=None, poid=None, ticket_type='ADULT',
            persons=None):
        item = {'ticket_type': ticket_type}
        if ids is not None:
            item['visitors'] = [{'name': f"Visitor {i}", 'id_number': n}
                for i, n in enumerate(ids)]
        if persons is not None:
            item['persons'] = persons
        return {'partner_order_id': poid or f'P-{uuid.uuid4().hex[:12]}',
            'slot': slot, 'items': [item],
            'contact': {'name': "Wang Fang", 'phone': '13900139000'},
            'leader': {'name': "Guide Zhao", 'phone': '13700137000'}}

    def settle(self, key):
        "Record a payment that brings the partner's balance to zero."
        with Transaction().start(DB_NAME, 0) as transaction:
            Entry = Pool().get('scenic.group.entry')
            partner = self.partner(key)
            balance = Entry.balance(partner)
            if balance:
                Entry.record(partner, 'payment', -balance)
            transaction.commit()

    def create(self, body, **kw):
        return self.call('POST', '/orders', body, **kw)

    # --- signing -----------------------------------------------------------

    def test_signed_request_accepted(self):
        "A correctly signed call is answered"
        response = self.call('GET', '/products')
        self.assertEqual(response.status_code, 200, response.get_data())
        products = {p['ticket_type']: p for p in response.json['products']}
        self.assertEqual(set(products), {'ADULT', 'GROUP5'})
        self.assertEqual(
            [p['price'] for p in products['ADULT']['net_prices']],
            ['100.00', '90.00'])

    def test_signature_refusals(self):
        "Unsigned, wrong, stale, replayed and tampered calls are refused"
        client = self.client()
        self.assertError(client.get(self.path('/products')),
            401, 'bad_signature')
        self.assertError(self.call('GET', '/products', secret='wrong'),
            401, 'bad_signature')
        self.assertError(self.call('GET', '/products', key='nobody'),
            401, 'bad_signature')
        now = int(time.time())
        self.assertError(self.call('GET', '/products', timestamp=now - 301),
            401, 'stale_request')
        self.assertError(self.call('GET', '/products', timestamp=now + 301),
            401, 'stale_request')
        self.assertEqual(self.call('GET', '/products',
                timestamp=now - 290).status_code, 200)
        nonce = 'nonce-' + uuid.uuid4().hex
        self.assertEqual(
            self.call('GET', '/products', nonce=nonce).status_code, 200)
        self.assertError(self.call('GET', '/products', nonce=nonce),
            401, 'replayed_nonce')
        # The body, the path and the query are all signed.
        headers = partnersign.signed_headers(KEY, SECRET, 'POST',
            self.path('/orders'), '', b'{"a":1}')
        self.assertError(client.post(self.path('/orders'), data=b'{"a":2}',
                headers=headers), 401, 'bad_signature')
        headers = partnersign.signed_headers(KEY, SECRET, 'GET',
            self.path('/calendar'), 'date=2030-01-01', b'')
        self.assertError(client.get(self.path('/calendar?date=2030-01-02'),
                headers=headers), 401, 'bad_signature')
        self.assertError(self.call('GET', '/products',
                tamper={partnersign.NONCE_HEADER: 'short'}),
            401, 'bad_signature')

    def test_secret_rotation_overlap(self):
        "After a rotation both secrets work until the overlap ends"
        with Transaction().start(DB_NAME, 0) as transaction:
            partner = self.partner('test-agency')
            new = partner.set_secret()
            transaction.commit()
        self.assertEqual(self.call('GET', '/products', key='test-agency',
                secret=new).status_code, 200)
        self.assertEqual(self.call('GET', '/products', key='test-agency',
                secret='agency-secret').status_code, 200)
        with Transaction().start(DB_NAME, 0) as transaction:
            partner = self.partner('test-agency')
            partner.write([partner], {'previous_secret_until':
                    dt.datetime.utcnow() - dt.timedelta(seconds=1)})
            transaction.commit()
        self.assertError(self.call('GET', '/products', key='test-agency',
                secret='agency-secret'), 401, 'bad_signature')
        with Transaction().start(DB_NAME, 0) as transaction:
            partner = self.partner('test-agency')
            partner.set_secret('agency-secret')
            transaction.commit()
        with Transaction().start(DB_NAME, 0, readonly=True):
            partner = self.partner('test-agency')
            self.assertNotIn('agency-secret', partner.secret_encrypted)

    def test_openapi_documents_every_route(self):
        "The partner OpenAPI document is valid 3.1 and covers every route"
        from openapi_spec_validator import validate
        from trytond.wsgi import app
        response = self.client().get(self.path('/openapi.json'))
        self.assertEqual(response.status_code, 200)
        validate(response.json)
        documented = {(path, method.upper())
            for path, item in response.json['paths'].items()
            for method in item}
        routes = 0
        for rule in app.url_map.iter_rules():
            if '/scenic/partner/v1' not in rule.rule:
                continue
            path = rule.rule.split('/scenic/partner/v1', 1)[1].replace(
                '<partner_order_id>', '{partner_order_id}')
            for method in rule.methods - {'HEAD', 'OPTIONS'}:
                self.assertIn((path, method), documented)
                routes += 1
        self.assertEqual(routes, 8)

    # --- calendar and orders -----------------------------------------------

    def test_calendar_shows_allotment_and_stock(self):
        "The calendar gives net prices and the allotment left"
        slot = self.day_slot(capacity=30, allot=10)
        with Transaction().start(DB_NAME, 0, readonly=True):
            date = Pool().get('scenic.time_slot')(slot).date
        response = self.call('GET', '/calendar',
            query=f'date={date.isoformat()}')
        self.assertEqual(response.status_code, 200, response.get_data())
        entry, = response.json['slots']
        self.assertEqual(entry['slot'], slot)
        self.assertEqual(entry['allotment']['remaining'], 10)
        self.assertEqual(entry['area_available'], 20)
        self.assertEqual(entry['stock'], 10)
        self.assertIn({'ticket_type': 'ADULT', 'price': '90.00'},
            entry['prices'])
        self.assertError(self.call('GET', '/calendar', query='date=x'),
            422, 'invalid_request', 'date')

    def test_order_pay_get_idempotent(self):
        "Orders are priced by contract, idempotent, paid on account"
        slot = self.day_slot(capacity=30, allot=10)
        with Transaction().start(DB_NAME, 0, readonly=True):
            balance = Pool().get('scenic.group.entry').balance(
                self.partner())
        ids = [new_id(), new_id()]
        body = self.order_body(slot, ids)
        first = self.create(body)
        self.assertEqual(first.status_code, 201, first.get_data())
        order = first.json
        self.assertEqual(order['partner_order_id'], body['partner_order_id'])
        self.assertEqual(order['state'], 'reserved')
        self.assertEqual(order['total'], '180.00')
        self.assertEqual(self.slot_state(slot), (10, 20))
        again = self.create(body)
        self.assertEqual(again.status_code, 201)
        self.assertEqual(again.headers.get('Idempotent-Replayed'), 'true')
        self.assertEqual(again.json['order'], order['order'])
        changed = dict(body, contact={'name': "X", 'phone': '13900139001'})
        self.assertError(self.create(changed), 409, 'idempotency_conflict',
            'partner_order_id')
        poid = body['partner_order_id']
        self.assertError(self.call('POST', f'/orders/{poid}/pay',
                {'amount': '240.00'}), 422, 'amount_mismatch', 'amount')
        paid = self.call('POST', f'/orders/{poid}/pay', {'amount': '180.00'})
        self.assertEqual(paid.status_code, 200, paid.get_data())
        self.assertEqual(paid.json['state'], 'paid')
        self.assertEqual(len(paid.json['tickets']), 2)
        self.assertTrue(all(t['code'] for t in paid.json['tickets']))
        # A retried payment gets the same answer.
        self.assertEqual(self.call('POST', f'/orders/{poid}/pay',
                {'amount': '180.00'}).json['state'], 'paid')
        got = self.call('GET', f'/orders/{poid}')
        self.assertEqual(got.json['order'], order['order'])
        self.assertError(self.call('GET', '/orders/unknown-id'),
            404, 'not_found')
        with Transaction().start(DB_NAME, 0, readonly=True):
            Entry = Pool().get('scenic.group.entry')
            self.assertEqual(Entry.balance(self.partner()),
                balance + Decimal('180'))
            Order = Pool().get('scenic.order')
            record, = Order.search([('reference', '=', order['order'])])
            self.assertEqual(record.leader_name, "Guide Zhao")
            self.assertEqual(record.allotted_persons, 2)

    def test_refusals(self):
        "Types outside the contract, bad IDs, bad ids are refused whole"
        slot = self.day_slot(capacity=30, allot=10)
        self.assertError(self.create(self.order_body(slot, [new_id()],
                    ticket_type='CHILD')), 422, 'invalid_request',
            'items[0].ticket_type')
        self.assertError(self.create(self.order_body(slot,
                    ['110105194912310020'])), 422, 'invalid_id_number',
            'items[0].visitors[0].id_number')
        self.assertError(self.create(self.order_body(slot, [new_id()],
                    poid='has space')), 422, 'invalid_request',
            'partner_order_id')
        self.assertEqual(self.slot_state(slot), (10, 20))

    def test_allotment_exhausted_and_released(self):
        "The allotment caps the partner; unsold places go back at release"
        slot = self.day_slot(capacity=20, allot=3)
        self.assertEqual(self.create(
                self.order_body(slot, [new_id(), new_id()])).status_code, 201)
        self.assertError(self.create(self.order_body(
                    slot, [new_id(), new_id()])), 409, 'allotment_exhausted')
        self.assertEqual(self.slot_state(slot), (3, 17))
        with Transaction().start(DB_NAME, 0) as transaction:
            Allotment = Pool().get('scenic.group.allotment')
            self.assertTrue(Allotment.release_due(
                    now=dt.datetime(2099, 1, 2)) >= 1)
            transaction.commit()
        self.assertEqual(self.slot_state(slot), (2, 18))
        # Released and no free sale: nothing more for this partner.
        self.assertError(self.create(self.order_body(slot, [new_id()])),
            409, 'allotment_exhausted')

    def test_group_ticket_and_cancel_returns_to_allotment(self):
        "Cancelling a held group gives its places back to the allotment"
        slot = self.day_slot(capacity=20, allot=10)
        body = self.order_body(slot, ticket_type='GROUP5', persons=5)
        response = self.create(body)
        self.assertEqual(response.status_code, 201, response.get_data())
        self.assertEqual(response.json['total'], '400.00')
        poid = body['partner_order_id']
        cancelled = self.call('POST', f'/orders/{poid}/cancel')
        self.assertEqual(cancelled.json['state'], 'cancelled')
        self.assertEqual(self.slot_state(slot), (10, 10))
        with Transaction().start(DB_NAME, 0, readonly=True):
            allotment, = Pool().get('scenic.group.allotment').search(
                [('slot', '=', slot)])
            self.assertEqual(allotment.sold, 0)

    def test_expired_hold_returns_to_allotment(self):
        "An unpaid partner hold that expires gives its places back"
        slot = self.day_slot(capacity=20, allot=10)
        body = self.order_body(slot, ticket_type='GROUP5', persons=5)
        self.assertEqual(self.create(body).status_code, 201)
        self.assertEqual(self.slot_state(slot), (10, 10))
        with Transaction().start(DB_NAME, 0) as transaction:
            from scenic_ticket import reservation
            Allotment = Pool().get('scenic.group.allotment')
            allotment, = Allotment.search([('slot', '=', slot)])
            self.assertEqual(allotment.sold, 5)
            self.assertTrue(reservation.expire_holds(
                    now=dt.datetime(2099, 1, 1, tzinfo=dt.timezone.utc)))
            transaction.commit()
        self.assertEqual(self.call('GET', f"/orders/"
                f"{body['partner_order_id']}").json['state'], 'expired')
        # Held for the partner again, not given to the general pool.
        self.assertEqual(self.slot_state(slot), (10, 10))
        with Transaction().start(DB_NAME, 0, readonly=True):
            allotment, = Pool().get('scenic.group.allotment').search(
                [('slot', '=', slot)])
            self.assertEqual(allotment.sold, 0)

    def test_partial_refund_by_visitor(self):
        "A refund of some visitors keeps the others valid"
        slot = self.day_slot(capacity=20, allot=10)
        body = self.order_body(slot, [new_id(), new_id(), new_id()])
        poid = body['partner_order_id']
        self.create(body)
        paid = self.call('POST', f'/orders/{poid}/pay', {'amount': '270.00'})
        tickets = [t['id'] for t in paid.json['tickets']]
        self.assertError(self.call('POST', f'/orders/{poid}/refund',
                {'tickets': [999999]}), 422, 'invalid_request', 'tickets')
        refunded = self.call('POST', f'/orders/{poid}/refund',
            {'tickets': tickets[:1]})
        self.assertEqual(refunded.status_code, 200, refunded.get_data())
        self.assertEqual(refunded.json['refunded'], '90.00')
        states = {t['id']: t['state'] for t in refunded.json['tickets']}
        self.assertEqual(states[tickets[0]], 'revoked')
        self.assertEqual(states[tickets[1]], 'valid')
        self.assertError(self.call('POST', f'/orders/{poid}/refund',
                {'tickets': tickets[:1]}), 409, 'not_refundable')
        # Back in the allotment, not in the general pool.
        self.assertEqual(self.slot_state(slot), (10, 10))
        with Transaction().start(DB_NAME, 0, readonly=True):
            pool = Pool()
            partner = self.partner()
            Notice = pool.get('scenic.group.notice')
            notice, = Notice.search([('order.partner_order_id', '=', poid)])
            self.assertEqual(notice.kind, 'refund_approved')

    def test_partner_codes(self):
        "A contract may let the partner issue the codes"
        slot = self.day_slot(capacity=20, allot=10)
        body = self.order_body(slot, [new_id(), new_id()])
        poid = body['partner_order_id']
        self.create(body)
        self.assertError(self.call('POST', f'/orders/{poid}/pay',
                {'amount': '180.00', 'codes': ['ONLYONE1']}),
            422, 'invalid_request', 'codes')
        # the contract's rule: 8 to 32 letters, digits, '-', '_', '.'
        for bad in ['SHORT-1', 'X' * 33, 'OTA CODE 1', 'OTA-码-0001', 17]:
            self.assertError(self.call('POST', f'/orders/{poid}/pay',
                    {'amount': '180.00', 'codes': ['OTA-CODE-0', bad]}),
                422, 'malformed_code', 'codes[1]')
        self.assertError(self.call('POST', f'/orders/{poid}/pay',
                {'amount': '180.00', 'codes': ['OTA-CODE-0', 'OTA-CODE-0']}),
            409, 'duplicate_code', 'codes[1]')
        # nothing was written by the refusals
        self.assertEqual(self.call('GET', f'/orders/{poid}').json['state'],
            'reserved')
        paid = self.call('POST', f'/orders/{poid}/pay',
            {'amount': '180.00', 'codes': ['OTA-CODE-1', 'OTA-CODE-2']})
        self.assertEqual(paid.status_code, 200, paid.get_data())
        self.assertEqual([t['code'] for t in paid.json['tickets']],
            ['OTA-CODE-1', 'OTA-CODE-2'])
        self.assertTrue(all(t['partner_code'] for t in paid.json['tickets']))
        # a retry brings the same codes: the same answer
        again = self.call('POST', f'/orders/{poid}/pay',
            {'amount': '180.00', 'codes': ['OTA-CODE-1', 'OTA-CODE-2']})
        self.assertEqual(again.status_code, 200, again.get_data())
        self.assertEqual(again.json['tickets'], paid.json['tickets'])
        self.assertError(self.call('POST', f'/orders/{poid}/pay',
                {'amount': '180.00', 'codes': ['OTA-CODE-3', 'OTA-CODE-4']}),
            409, 'idempotency_conflict', 'codes')
        # another order cannot take a code of the area
        other = self.order_body(slot, [new_id(), new_id()])
        self.create(other)
        opoid = other['partner_order_id']
        self.assertError(self.call('POST', f'/orders/{opoid}/pay',
                {'amount': '180.00', 'codes': ['OTA-CODE-5', 'OTA-CODE-2']}),
            409, 'duplicate_code', 'codes[1]')
        self.assertEqual(self.call('GET', f'/orders/{opoid}').json['state'],
            'reserved')

    def test_credit_limit(self):
        "An order over the credit limit is refused at confirmation"
        slot = self.day_slot(capacity=40, allot=30, key='test-agency')
        self.settle('test-agency')
        kw = {'key': 'test-agency', 'secret': 'agency-secret'}
        orders = []
        for _ in range(2):
            body = self.order_body(slot, [new_id() for _ in range(6)])
            self.assertEqual(self.create(body, **kw).status_code, 201)
            orders.append(body['partner_order_id'])
        self.assertEqual(self.call('POST', f'/orders/{orders[0]}/pay',
                {'amount': '540.00'}, **kw).status_code, 200)
        self.assertError(self.call('POST', f'/orders/{orders[1]}/pay',
                {'amount': '540.00'}, **kw), 409, 'credit_limit', 'amount')

    # --- notices -----------------------------------------------------------

    def test_notices_delivered_in_order_after_outage(self):
        "Notices wait while the partner is down, then arrive once, in order"
        from ..notice import deliver_pending, enqueue_used
        slot = self.day_slot(capacity=20, allot=10)
        body = self.order_body(slot, [new_id(), new_id()])
        poid = body['partner_order_id']
        self.create(body)
        tickets = [t['id'] for t in self.call('POST', f'/orders/{poid}/pay',
                {'amount': '180.00'}).json['tickets']]
        with SimulatedPartner(KEY, NOTICE_SECRET) as sim:
            with Transaction().start(DB_NAME, 0) as transaction:
                # Only this test's notices: others' (other test classes
                # share the database on PostgreSQL) are set aside.
                Notice = Pool().get('scenic.group.notice')
                table = Notice.__table__()
                transaction.connection.cursor().execute(*table.update(
                        [table.state], ['failed'],
                        where=table.state == 'pending'))
                partner = self.partner()
                partner.write([partner], {'notice_url': sim.url})
                enqueue_used([tickets[0]])
                enqueue_used([tickets[1]])
                transaction.commit()
            sim.fail = True
            now = dt.datetime.utcnow()
            with Transaction().start(DB_NAME, 0) as transaction:
                delivered, failed = deliver_pending(now=now)
                transaction.commit()
            # The second waits behind the first of the same order.
            self.assertEqual((delivered, failed), (0, 1))
            sim.fail = False
            with Transaction().start(DB_NAME, 0) as transaction:
                self.assertEqual(deliver_pending(now=now), (0, 0))
                later = now + dt.timedelta(seconds=60)
                self.assertEqual(deliver_pending(now=later), (2, 0))
                self.assertEqual(deliver_pending(now=later), (0, 0))
                transaction.commit()
            self.assertEqual([n['ticket'] for n in sim.handled], tickets)
            self.assertEqual(sim.deliveries, 3)
            self.assertEqual(sim.refused, 0)
            # A resend is de-duplicated by the partner.
            with Transaction().start(DB_NAME, 0) as transaction:
                Notice = Pool().get('scenic.group.notice')
                notices = Notice.search(
                    [('order.partner_order_id', '=', poid)])
                Notice.resend(notices[:1])
                self.assertEqual(deliver_pending(), (1, 0))
                transaction.commit()
            self.assertEqual(len(sim.handled), 2)
            self.assertEqual(sim.deliveries, 4)

    # --- concurrency (PostgreSQL) ------------------------------------------

    @unittest.skipIf(backend.name != 'postgresql',
        "concurrency is proven on PostgreSQL")
    def test_concurrent_orders_against_allotment(self):
        "32 concurrent partner orders against an allotment of 20: 20 win"
        slot = self.day_slot(capacity=100, allot=20)
        bodies = [self.order_body(slot, [new_id()]) for _ in range(32)]
        with ThreadPoolExecutor(max_workers=32) as pool:
            responses = list(pool.map(self.create, bodies))
        statuses = [r.status_code for r in responses]
        self.assertEqual(statuses.count(201), 20, statuses)
        self.assertEqual(
            {r.json['error']['code'] for r in responses
                if r.status_code != 201}, {'allotment_exhausted'})
        self.assertEqual(self.slot_state(slot), (20, 80))
        with Transaction().start(DB_NAME, 0, readonly=True):
            allotment, = Pool().get('scenic.group.allotment').search(
                [('slot', '=', slot)])
            self.assertEqual(allotment.sold, 20)

    @unittest.skipIf(backend.name != 'postgresql',
        "concurrency is proven on PostgreSQL")
    def test_concurrent_same_partner_order_id(self):
        "The same partner_order_id 10 times at once makes one order"
        slot = self.day_slot(capacity=100, allot=20)
        body = self.order_body(slot, [new_id(), new_id()])
        with ThreadPoolExecutor(max_workers=10) as pool:
            responses = list(pool.map(self.create, [body] * 10))
        self.assertEqual([r.status_code for r in responses], [201] * 10,
            [r.get_data() for r in responses])
        self.assertEqual(len({r.json['order'] for r in responses}), 1)
        self.assertEqual(self.slot_state(slot), (20, 80))
        with Transaction().start(DB_NAME, 0, readonly=True):
            Order = Pool().get('scenic.order')
            self.assertEqual(Order.search([('partner_order_id', '=',
                            body['partner_order_id'])], count=True), 1)
            allotment, = Pool().get('scenic.group.allotment').search(
                [('slot', '=', slot)])
            self.assertEqual(allotment.sold, 2)

    @unittest.skipIf(backend.name != 'postgresql',
        "concurrency is proven on PostgreSQL")
    def test_concurrent_confirmations_within_credit(self):
        "Concurrent confirmations never take a partner over its limit"
        kw = {'key': 'test-agency', 'secret': 'agency-secret'}
        slot = self.day_slot(capacity=100, allot=40, key='test-agency')
        self.settle('test-agency')
        balance = Decimal(0)
        bodies = [self.order_body(slot, [new_id()]) for _ in range(16)]
        for body in bodies:
            self.assertEqual(self.create(body, **kw).status_code, 201)

        def pay(body):
            return self.call('POST',
                f"/orders/{body['partner_order_id']}/pay",
                {'amount': '90.00'}, **kw)
        with ThreadPoolExecutor(max_workers=16) as pool:
            responses = list(pool.map(pay, bodies))
        paid = [r.status_code for r in responses].count(200)
        room = int((Decimal('1000') - balance) // 90)
        self.assertEqual(paid, min(16, room))
        with Transaction().start(DB_NAME, 0, readonly=True):
            after = Pool().get('scenic.group.entry').balance(
                self.partner('test-agency'))
        self.assertLessEqual(after, Decimal('1000'))
        self.assertEqual(after, balance + 90 * paid)

    @unittest.skipIf(backend.name != 'postgresql',
        "concurrency is proven on PostgreSQL")
    def test_back_office_cancels_during_partner_rush(self):
        "Back-office cancels of partner orders race partner API orders"
        import random
        from trytond import config
        slot = self.day_slot(capacity=60, allot=40)
        paid = []
        for _ in range(10):
            body = self.order_body(slot, [new_id()])
            self.assertEqual(self.create(body).status_code, 201)
            poid = body['partner_order_id']
            response = self.call('POST', f'/orders/{poid}/pay',
                {'amount': '90.00'})
            self.assertEqual(response.status_code, 200, response.get_data())
            paid.append(poid)

        def back_office_cancel(poid):
            # As trytond's dispatcher runs a button: retried on a
            # serialization failure ([database] retry), then the error.
            retry = config.getint('database', 'retry')
            for count in range(retry + 1):
                with Transaction().start(DB_NAME, 1) as transaction:
                    try:
                        Order = Pool().get('scenic.order')
                        order, = Order.search(
                            [('partner_order_id', '=', poid)])
                        with transaction.set_context(
                                company=order.company.id):
                            Order.cancel([order])
                        transaction.commit()
                        return ('cancel', 'done')
                    except backend.DatabaseOperationalError:
                        transaction.rollback()
                        if count == retry:
                            return ('cancel', 'serialization failure')

        def order_and_pay(_):
            body = self.order_body(slot, [new_id()])
            response = self.create(body)
            if response.status_code != 201:
                return ('order', response.status_code)
            return ('pay', self.call('POST',
                    f"/orders/{body['partner_order_id']}/pay",
                    {'amount': '90.00'}).status_code)

        jobs = ([(order_and_pay, i) for i in range(30)]
            + [(back_office_cancel, poid) for poid in paid])
        random.Random(11).shuffle(jobs)  # interleaved, the same each run
        with ThreadPoolExecutor(max_workers=16) as pool:
            results = list(pool.map(lambda job: job[0](job[1]), jobs))
        cancels = [r for kind, r in results if kind == 'cancel']
        self.assertEqual(cancels, ['done'] * 10, results)
        api = [r for kind, r in results if kind != 'cancel']
        self.assertFalse([r for r in api if r not in {200, 201, 409}], api)
        with Transaction().start(DB_NAME, 0, readonly=True):
            pool = Pool()
            Order = pool.get('scenic.order')
            Entry = pool.get('scenic.group.entry')
            Notice = pool.get('scenic.group.notice')
            allotment, = pool.get('scenic.group.allotment').search(
                [('slot', '=', slot)])
            orders = Order.search([('slot', '=', slot)])
            states = {o.partner_order_id: o.state for o in orders}
            self.assertEqual({states[p] for p in paid}, {'refunded'})
            live = [o for o in orders if o.state in ('reserved', 'paid')]
            # the cancelled places went back to the partner's allotment
            self.assertEqual(allotment.sold,
                sum(o.allotted_persons or 0 for o in live))
            self.assertLessEqual(allotment.sold, 40)
            refunds = Entry.search([('kind', '=', 'refund'),
                    ('order.slot', '=', slot)])
            self.assertEqual(sorted((e.order.partner_order_id, e.amount)
                    for e in refunds),
                sorted((p, Decimal('-90.00')) for p in paid))
            self.assertEqual(Notice.search([
                        ('order.slot', '=', slot),
                        ('kind', '=', 'order_cancelled')], count=True), 10)
        self.assertEqual(self.slot_state(slot), (40, 20))

    def test_booking_api_cannot_pay_on_account(self):
        "A public channel cannot pay with the partners' account provider"
        with Transaction().start(DB_NAME, 0) as transaction:
            pool = Pool()
            Channel = pool.get('scenic.channel')
            Company = pool.get('company.company')
            company, = Company.search([])
            if not Channel.search([('code', '=', 'web')]):
                web, = Channel.create([{'company': company.id,
                            'name': "Web", 'code': 'web', 'kind': 'online'}])
                web.set_api_key('test-web-key-for-partners-0123')
            transaction.commit()
        slot = self.day_slot(capacity=10)
        headers = {'Authorization': 'Bearer test-web-key-for-partners-0123'}
        booked = self.client().post(f'/{self.db_name}/scenic/v1/orders',
            json={'slot': slot, 'items': [{'ticket_type': 'ADULT',
                        'visitors': [{'name': "A", 'id_number': new_id()}]}],
                'contact': {'name': "A", 'phone': '13800138000'}},
            headers=dict(headers, **{'Idempotency-Key': str(uuid.uuid4())}))
        self.assertEqual(booked.status_code, 201, booked.get_data())
        paid = self.client().post(
            f"/{self.db_name}/scenic/v1/orders/{booked.json['order']}/pay",
            json={'provider': 'partner_credit',
                'amount': booked.json['total']}, headers=headers)
        self.assertError(paid, 422, 'invalid_request', 'provider')
