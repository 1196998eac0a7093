"""Remote sites (issue 12): site allotments, delegated keys, sales upload.

Through trytond's WSGI application, as test_api: a site box enrols, syncs
its allotment and delegated key, signs codes the area's other boxes verify,
uploads its sales exactly once (gzip too), and the slot is never oversold.
"""
import base64
import datetime as dt
import gzip
import json
import unittest
import uuid
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal
from unittest import mock

from scenic_common import ticketcode
from scenic_ticket.tests.tools import configure_pii_key

from trytond import backend
from trytond.pool import Pool
from trytond.tests.test_tryton import DB_NAME, RouteTestCase
from trytond.transaction import Transaction

from .tools import build_area, new_box, scan, sell, slot_day

UTC = dt.timezone.utc


def make_site(area, name="Back Gate"):
    box_id, token = new_box(area, name)
    Box = Pool().get('scenic.gate.box')
    Box.write([Box(box_id)], {'site': True})
    return box_id, token


def allot(area, box_id, quota, capacity=None, release_at=None):
    pool = Pool()
    Box = pool.get('scenic.gate.box')
    Slot = pool.get('scenic.time_slot')
    Allotment = pool.get('scenic.gate.site_allotment')
    slot = Slot(area.slot)
    if capacity is not None:
        Slot.write([slot], {'capacity': capacity})
    with Transaction().set_context(company=area.company):
        allotment = Allotment.allot(Box(box_id), slot, quota, release_at)
    return allotment.id


def delegate(box_id):
    Box = Pool().get('scenic.gate.box')
    with Transaction().set_context(company=Box(box_id).company.id):
        Box.delegate_key([Box(box_id)])


class SiteTestCase(RouteTestCase):
    "Test remote sites"
    module = 'scenic_gate'

    @classmethod
    def setUpClass(cls):
        configure_pii_key()
        super().setUpClass()

    def url(self, path):
        return f'/{self.db_name}/scenic/gate/v1{path}'

    def committed(self, function, *args, **kwargs):
        with Transaction().start(DB_NAME, 1) as transaction:
            result = function(*args, **kwargs)
            transaction.commit()
            return result

    def read(self, function, *args):
        with Transaction().start(DB_NAME, 0, readonly=True):
            return function(*args)

    def enrol(self, token):
        response = self.client().post(self.url('/enrol'),
            json={'token': token, 'name': "Site", 'hostname': 'site-1'})
        self.assertEqual(response.status_code, 201, response.get_data())
        return {'Authorization':
            f"Box {response.json['box']}:{response.json['secret']}"}

    def sync(self, headers):
        response = self.client().get(self.url('/sync'), headers=headers)
        self.assertEqual(response.status_code, 200, response.get_data())
        return response.json

    def post_sales(self, headers, sales, through=None, compress=False,
            status=200):
        body = {'sales': sales}
        if through:
            body['through'] = through.isoformat()
        data = json.dumps(body).encode()
        headers = dict(headers, **{'Content-Type': 'application/json'})
        if compress:
            data = gzip.compress(data)
            headers['Content-Encoding'] = 'gzip'
        response = self.client().post(self.url('/sales'), data=data,
            headers=headers)
        self.assertEqual(response.status_code, status, response.get_data())
        return response.json

    def sales(self, site, area, n, persons=1, start=0, key_id=None,
            at=None):
        allotment = site['allotments'][0]
        ids = [i for first, last in allotment['ticket_ids']
            for i in range(first, last + 1)]
        at = at or dt.datetime.now(UTC)
        return [{'nonce': uuid.uuid4().hex, 'at': at.isoformat(),
                'slot': allotment['slot'], 'ticket_type': area.adult,
                'ticket': ids[(start + i) % len(ids)], 'persons': persons,
                'amount': '100.00', 'payment': 'cash',
                'key_id': key_id or site['keys'][-1]['key_id']}
            for i in range(n)]

    def slot_booked(self, area):
        return self.read(lambda: Pool().get('scenic.time_slot')(
                area.slot).booked)

    def test_site_sells_from_its_allotment_exactly_once(self):
        "A site's allotment, key and sales: once by nonce, never oversold"
        area = self.committed(build_area)
        self.enterContext(slot_day(area))
        box_id, token = self.committed(make_site, area)
        headers = self.enrol(token)
        before = self.slot_booked(area)
        allotment_id = self.committed(allot, area, box_id, 5)
        self.committed(delegate, box_id)
        # The held places count as booked: no central channel sells them.
        self.assertEqual(self.slot_booked(area), before + 5)

        answer = self.sync(headers)
        site = answer['site']
        self.assertEqual(len(site['keys']), 1)
        self.assertEqual([a['id'] for a in site['allotments']],
            [allotment_id])
        self.assertEqual(sum(b - a + 1 for a, b in
                site['allotments'][0]['ticket_ids']), 5)
        # The delegated key is an area key every gate verifies with...
        key_id = site['keys'][0]['key_id']
        public = {k['key_id']: k for k in answer['keys']}[key_id]
        signer = ticketcode.SigningKey.from_private_bytes(key_id,
            base64.b64decode(site['keys'][0]['private_key']))
        self.assertEqual(base64.b64encode(signer.public_bytes()).decode(),
            public['public_key'])
        keyring = ticketcode.Keyring()
        keyring.add(key_id, base64.b64decode(public['public_key']))
        now = dt.datetime.now(UTC).replace(microsecond=0)
        ticket = site['allotments'][0]['ticket_ids'][0][0]
        code = ticketcode.encode(ticketcode.TicketPayload(ticket,
                area.company, area.adult, now, now + dt.timedelta(hours=8),
                key_id=key_id), signer)
        self.assertTrue(ticketcode.verify(code, keyring, now=now,
                area_id=area.company).ok)
        # ...and the ERP never signs with it.
        signer_id = self.read(lambda: Pool().get('scenic.signing_key')
            .active_signer(Pool().get('company.company')(area.company))
            .key_id)
        self.assertNotEqual(signer_id, key_id)

        # Another box of the area gets the public key, not the site.
        other_id, other_token = self.committed(new_box, area, "Main Gate")
        other = self.sync(self.enrol(other_token))
        self.assertNotIn('site', other)
        self.assertIn(key_id, [k['key_id'] for k in other['keys']])
        response = self.client().post(self.url('/sales'),
            json={'sales': []}, headers=self.enrol_other(area))
        self.assertEqual(response.status_code, 403)
        self.assertEqual(response.json['error']['code'], 'not_a_site')

        sales = self.sales(site, area, 4)
        first = self.post_sales(headers, sales[:3], compress=True)
        self.assertEqual(len(first['accepted']), 3)
        # The batch again, plus one: the three are duplicates.
        again = self.post_sales(headers, sales, compress=True)
        self.assertEqual(sorted(again['duplicates']),
            sorted(s['nonce'] for s in sales[:3]))
        self.assertEqual(again['accepted'], [sales[3]['nonce']])
        # Beyond the allotment: stored as a conflict, not counted.
        extra = self.sales(site, area, 2, start=4)
        answer = self.post_sales(headers, extra)
        self.assertEqual(answer['accepted'], [extra[0]['nonce']])
        self.assertEqual(answer['conflicts'], [{'nonce': extra[1]['nonce'],
                    'reason': 'allotment_exhausted'}])
        # A ticket id not reserved for it, a key not delegated to it.
        foreign = self.sales(site, area, 1)
        foreign[0]['ticket'] = 1
        wrong_key = self.sales(site, area, 1, key_id=1)
        answer = self.post_sales(headers, foreign + wrong_key)
        self.assertEqual([c['reason'] for c in answer['conflicts']],
            ['foreign_ticket_id', 'foreign_key'])

        def check():
            from .. import site as site_module
            Allotment = Pool().get('scenic.gate.site_allotment')
            self.assertEqual(Allotment(allotment_id).sold, 5)
            self.assertEqual(site_module.site_totals(box_id), (5, 5))
            Sale = Pool().get('scenic.gate.site_sale')
            self.assertEqual(Sale.search_count([('box', '=', box_id)]), 8)
        self.read(check)
        # Central + site together never exceed the slot.
        self.assertEqual(self.slot_booked(area), before + 5)

    def enrol_other(self, area):
        _, token = self.committed(new_box, area, "Another Gate")
        return self.enrol(token)

    def test_site_sales_become_orders_and_tickets(self):
        "Accepted site sales are paid orders with the site's tickets"
        area = self.committed(build_area)
        self.enterContext(slot_day(area))
        box_id, token = self.committed(make_site, area)
        headers = self.enrol(token)
        before = self.slot_booked(area)
        allotment_id = self.committed(allot, area, box_id, 5)
        self.committed(delegate, box_id)
        site = self.sync(headers)['site']
        allotment = site['allotments'][0]
        key = site['keys'][-1]
        signer = ticketcode.SigningKey.from_private_bytes(key['key_id'],
            base64.b64decode(key['private_key']))
        sales = self.sales(site, area, 3)
        sales[2]['persons'] = 2
        # The codes as the box signs them (scenic_iotbox.site.sell).
        price = {p['ticket_type']: p for p in site['prices']}[area.adult]
        codes = {}
        for sale in sales:
            codes[sale['ticket']] = ticketcode.encode(
                ticketcode.TicketPayload(ticket_id=sale['ticket'],
                    area_id=area.company, ticket_type_id=area.adult,
                    valid_from=dt.datetime.fromisoformat(
                        allotment['start']).replace(microsecond=0),
                    valid_until=dt.datetime.fromisoformat(
                        allotment['end']).replace(microsecond=0),
                    persons=sale['persons'], entries=price['entries'],
                    key_id=key['key_id']), signer)
        answer = self.post_sales(headers, sales)
        self.assertEqual(len(answer['accepted']), 3)
        # Re-sent: nothing is written twice.
        again = self.post_sales(headers, sales)
        self.assertEqual(len(again['duplicates']), 3)

        def check_orders():
            pool = Pool()
            Ticket = pool.get('scenic.ticket')
            Order = pool.get('scenic.order')
            Sale = pool.get('scenic.gate.site_sale')
            Allotment = pool.get('scenic.gate.site_allotment')
            orders = Order.search([('channel.code', '=', f'SITE-{box_id}')])
            self.assertEqual(len(orders), 3)
            for sale in sales:
                ticket = Ticket(sale['ticket'])
                self.assertEqual(ticket.state, 'valid')
                self.assertEqual(ticket.code, codes[sale['ticket']])
                self.assertEqual(ticket.key_id, key['key_id'])
                self.assertEqual(ticket.persons, sale['persons'])
                order = ticket.order
                self.assertEqual(order.state, 'paid')
                self.assertEqual(order.total, Decimal('100.00'))
                self.assertEqual(order.idempotency_key, sale['nonce'])
                payment, = order.payments
                self.assertEqual((payment.kind, payment.provider,
                        payment.amount), ('payment', 'cash',
                        Decimal('100.00')))
                site_sale, = Sale.search([('nonce', '=', sale['nonce'])])
                self.assertEqual(site_sale.order, order)
            self.assertEqual(Allotment(allotment_id).sold, 4)
        self.read(check_orders)
        # The allotment held the places: the slot is not claimed again.
        self.assertEqual(self.slot_booked(area), before + 5)

        # Another gate's scan of a site ticket is an admission of a real
        # ticket, not unknown_ticket.
        gate_headers = self.enrol_other(area)
        scans = [scan(area.gate_in, sales[0]['ticket'],
                at=dt.datetime.now(UTC))]
        answer = self.upload_scans(gate_headers, scans)
        self.assertEqual(answer['conflicts'], [])
        self.assertEqual(answer['accepted'], [scans[0]['nonce']])
        self.assertEqual(self.read(lambda: Pool().get('scenic.ticket')(
                    sales[0]['ticket']).state), 'used')

        # A refund is the booking path's: the place goes back to the slot.
        from scenic_ticket import reservation
        from scenic_ticket.providers import PROVIDERS, SimulatedProvider
        cash = PROVIDERS.get('cash') or type('Cash', (SimulatedProvider,),
            {'name': 'cash', 'demo_only': False})()

        def refund():
            order = Pool().get('scenic.ticket')(sales[1]['ticket']).order
            with mock.patch.dict(PROVIDERS, {'cash': cash}):
                reservation.cancel(order.id, by_back_office=True)
        self.committed(refund)
        self.assertEqual(self.slot_booked(area), before + 4)
        revoked = [r['ticket'] for r in self.sync(gate_headers)['revoked']]
        self.assertIn(sales[1]['ticket'], revoked)

    @unittest.skipIf(backend.name != 'postgresql',
        "concurrency is proven on PostgreSQL")
    def test_concurrent_site_uploads_and_central_sales(self):
        "One batch sent 4 times at once and a central rush: once, not oversold"
        from scenic_ticket.dbtools import use_read_committed
        from scenic_ticket.errors import BookingError
        area = self.committed(build_area)
        self.enterContext(slot_day(area))
        box_id, token = self.committed(make_site, area)
        headers = self.enrol(token)
        before = self.slot_booked(area)
        # 6 places for the site, 4 left for the central channels.
        self.committed(allot, area, box_id, 6, capacity=before + 10)
        self.committed(delegate, box_id)
        site = self.sync(headers)['site']
        batch = self.sales(site, area, 6)

        def central(_):
            with Transaction().start(DB_NAME, 1) as transaction:
                use_read_committed()
                try:
                    sell(area, 'MULTI')
                except BookingError as exc:
                    return exc.code
                transaction.commit()
                return 'sold'

        def upload(_):
            return self.post_sales(headers, batch)
        with ThreadPoolExecutor(max_workers=8) as pool:
            uploads = [pool.submit(upload, n) for n in range(4)]
            sold = list(pool.map(central, range(8)))
            answers = [u.result() for u in uploads]
        self.assertEqual(sorted(len(a['accepted']) for a in answers),
            [0, 0, 0, 6])
        self.assertEqual(sold.count('sold'), 4, sold)
        self.assertEqual(self.slot_booked(area), before + 10)

        def check():
            Order = Pool().get('scenic.order')
            Ticket = Pool().get('scenic.ticket')
            self.assertEqual(Order.search([('channel.code', '=',
                            f'SITE-{box_id}')], count=True), 6)
            self.assertEqual(Ticket.search([('id', 'in',
                            [s['ticket'] for s in batch]),
                        ('state', '=', 'valid')], count=True), 6)
            self.assertLessEqual(
                Pool().get('scenic.time_slot')(area.slot).booked,
                Pool().get('scenic.time_slot')(area.slot).capacity)
        self.read(check)

    def upload_scans(self, headers, scans):
        response = self.client().post(self.url('/scans'),
            json={'scans': scans}, headers=headers)
        self.assertEqual(response.status_code, 200, response.get_data())
        return response.json

    def test_release_waits_for_the_site(self):
        "Unsold places go back at release time, once the site has synced"
        area = self.committed(build_area)
        self.enterContext(slot_day(area))
        box_id, token = self.committed(make_site, area)
        headers = self.enrol(token)
        release = dt.datetime.now(UTC) - dt.timedelta(minutes=5)
        before = self.slot_booked(area)
        allotment_id = self.committed(allot, area, box_id, 10,
            release_at=release.replace(tzinfo=None))
        self.committed(delegate, box_id)
        site = self.sync(headers)['site']

        def release_due():
            return Pool().get('scenic.gate.site_allotment').release_due()
        # The site has not reported: a sale it made offline before the
        # release may still come, so the places stay held.
        self.assertEqual(self.committed(release_due), 0)
        self.assertEqual(self.slot_booked(area), before + 10)
        sales = self.sales(site, area, 3,
            at=release - dt.timedelta(minutes=30))
        self.post_sales(headers, sales, through=dt.datetime.now(UTC))
        self.assertEqual(self.committed(release_due), 1)
        # 3 sold stay booked, 7 go back to the general pool.
        self.assertEqual(self.slot_booked(area), before + 3)
        self.assertNotIn(allotment_id,
            [a['id'] for a in self.sync(headers)['site']['allotments']])

    def test_allotment_refusals_and_revocation(self):
        "No allotment beyond capacity; a revoked site's key is retired"
        area = self.committed(build_area)
        box_id, token = self.committed(make_site, area)
        self.enrol(token)
        from trytond.exceptions import UserError
        with self.assertRaises(UserError):
            self.committed(allot, area, box_id, 5000)
        plain_id, _ = self.committed(new_box, area, "Plain")
        with self.assertRaises(UserError):
            self.committed(allot, area, plain_id, 5)
        self.committed(delegate, box_id)

        def revoke():
            Box = Pool().get('scenic.gate.box')
            Box.revoke([Box(box_id)])
        self.committed(revoke)

        def states():
            Key = Pool().get('scenic.signing_key')
            return [k.state for k in Key.search(
                    [('delegated_to', '=', box_id)])]
        self.assertEqual(self.read(states), ['retired'])

    def test_gzip_bodies_are_bounded(self):
        "A gzip body that inflates beyond the limit is 413, bad gzip 422"
        area = self.committed(build_area)
        box_id, token = self.committed(make_site, area)
        headers = dict(self.enrol(token), **{
                'Content-Type': 'application/json',
                'Content-Encoding': 'gzip'})
        bomb = gzip.compress(b'{"sales": [' + b' ' * (3 * 1024 * 1024)
            + b']}')
        response = self.client().post(self.url('/sales'), data=bomb,
            headers=headers)
        self.assertEqual(response.status_code, 413, response.get_data())
        response = self.client().post(self.url('/sales'), data=b'nope',
            headers=headers)
        self.assertEqual(response.status_code, 422, response.get_data())
