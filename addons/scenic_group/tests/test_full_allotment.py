"""A slot's allotment sells to its own partner even when it holds the whole
slot (issue #11): the held places count as booked for every other channel,
never for their holder. Through the partner API and the booking API; the
concurrency test needs PostgreSQL."""
import datetime as dt
import unittest
import uuid
from concurrent.futures import ThreadPoolExecutor

from sql.aggregate import Sum

from scenic_ticket.tests import routes
from scenic_ticket.tests.tools import create_slot

from trytond import backend
from trytond.pool import Pool
from trytond.tests.test_tryton import DB_NAME
from trytond.transaction import Transaction

# The module, not its test case: pytest would collect and run it here too.
from . import test_partner_api as api
from .test_partner_api import new_id

WEB_KEY = 'test-full-allotment-web-key'
_API = api.PartnerAPITestCase.__dict__


class FullAllotmentTestCase(routes.AreaRouteTestCase):
    "Test slots held wholly or partly by a partner's allotment"
    module = 'scenic_group'
    # The partner API tests' area, partners and signed calls.
    path = _API['path']
    call = _API['call']
    assertError = _API['assertError']
    partner = _API['partner']
    day_slot = _API['day_slot']
    order_body = _API['order_body']
    create = _API['create']

    @classmethod
    def setUpDatabase(cls):
        _API['setUpDatabase'].__func__(cls)
        pool = Pool()
        Channel = pool.get('scenic.channel')
        Company = pool.get('company.company')
        company, = Company.search([])
        with Transaction().set_context(company=company.id):
            web, = Channel.create([{'company': company.id, 'name': "Web",
                        'code': 'web', 'kind': 'online'}])
            web.set_api_key(WEB_KEY)

    def online(self, slot, persons):
        "A booking of the booking API's web channel (no partner)."
        body = {'slot': slot, 'items': [{'ticket_type': 'ADULT',
                    'visitors': [{'name': f"Visitor {i}",
                            'id_number': new_id()}
                        for i in range(persons)]}],
            'contact': {'name': "Li Lei",
                'phone': f'138{uuid.uuid4().int % 10 ** 8:08d}'}}
        # A phone and an address per order: their unpaid-hold limits are
        # not tested here.
        address = '10.{}.{}.{}'.format(*uuid.uuid4().bytes[:3])
        return self.client().post(f'/{self.db_name}/scenic/v1/orders',
            json=body, headers={'Authorization': f'Bearer {WEB_KEY}',
                'Idempotency-Key': str(uuid.uuid4())},
            environ_base={'REMOTE_ADDR': address})

    def partner_order(self, slot, persons):
        return self.create(self.order_body(
                slot, [new_id() for _ in range(persons)]))

    def assertCounters(self, slot, booked, sold):
        """The slot counts its live tickets and the allotment's unsold
        places; the allotment counts its partner's live tickets."""
        with Transaction().start(DB_NAME, 0, readonly=True):
            pool = Pool()
            Slot = pool.get('scenic.time_slot')
            allotment, = pool.get('scenic.group.allotment').search(
                [('slot', '=', slot)])
            ticket = pool.get('scenic.ticket').__table__()
            order = pool.get('scenic.order').__table__()
            cursor = Transaction().connection.cursor()
            live = ticket.state.in_(['reserved', 'valid', 'used'])
            cursor.execute(*ticket.select(Sum(ticket.persons),
                    where=(ticket.slot == slot) & live))
            tickets = cursor.fetchone()[0] or 0
            cursor.execute(*ticket.join(order,
                    condition=ticket.order == order.id).select(
                    Sum(ticket.persons),
                    where=(ticket.slot == slot) & live
                    & (order.allotment == allotment.id)))
            allotted = cursor.fetchone()[0] or 0
            slot = Slot(slot)
            self.assertEqual((slot.booked, allotment.sold), (booked, sold))
            self.assertEqual(allotted, allotment.sold)
            self.assertEqual(slot.booked, tickets + allotment.remaining)
            self.assertLessEqual(slot.booked, slot.capacity)

    def test_fully_allotted_slot_sells_to_its_partner(self):
        "A slot wholly allotted sells all of it to the partner, none else"
        slot = self.day_slot(capacity=5, allot=5)
        self.assertEqual(self.slot_state(slot), (5, 0))
        for persons in [2, 1, 1]:
            response = self.partner_order(slot, persons)
            self.assertEqual(response.status_code, 201, response.get_data())
        self.assertCounters(slot, booked=5, sold=4)
        # Beyond the allotment: its own refusal, not the slot's.
        self.assertError(self.partner_order(slot, 2), 409,
            'allotment_exhausted', 'slot')
        self.assertError(self.online(slot, 1), 409, 'sold_out', 'slot')
        self.assertEqual(self.partner_order(slot, 1).status_code, 201)
        self.assertError(self.partner_order(slot, 1), 409,
            'allotment_exhausted', 'slot')
        self.assertError(self.online(slot, 1), 409, 'sold_out', 'slot')
        self.assertCounters(slot, booked=5, sold=5)
        self.assertEqual(self.slot_state(slot), (5, 0))

    def test_half_allotted_slot_shares_without_overselling(self):
        "The partner uses its quota, others the rest, nobody oversells"
        slot = self.day_slot(capacity=6, allot=3)
        # The general pool sold out first: the partner's places are kept.
        self.assertEqual(self.online(slot, 2).status_code, 201)
        self.assertEqual(self.online(slot, 1).status_code, 201)
        self.assertError(self.online(slot, 1), 409, 'sold_out', 'slot')
        self.assertCounters(slot, booked=6, sold=0)
        self.assertEqual(self.partner_order(slot, 2).status_code, 201)
        self.assertEqual(self.partner_order(slot, 1).status_code, 201)
        self.assertError(self.partner_order(slot, 1), 409,
            'allotment_exhausted', 'slot')
        self.assertError(self.online(slot, 1), 409, 'sold_out', 'slot')
        self.assertCounters(slot, booked=6, sold=3)
        self.assertEqual(self.slot_state(slot), (6, 0))

    def test_cancelled_partner_order_held_again_for_it(self):
        "A cancelled order on a full slot goes back to its partner only"
        slot = self.day_slot(capacity=3, allot=3)
        body = self.order_body(slot, [new_id() for _ in range(3)])
        self.assertEqual(self.create(body).status_code, 201)
        cancelled = self.call('POST',
            f"/orders/{body['partner_order_id']}/cancel")
        self.assertEqual(cancelled.status_code, 200, cancelled.get_data())
        self.assertCounters(slot, booked=3, sold=0)
        self.assertError(self.online(slot, 1), 409, 'sold_out', 'slot')
        self.assertEqual(self.partner_order(slot, 3).status_code, 201)
        self.assertCounters(slot, booked=3, sold=3)

    @unittest.skipIf(backend.name != 'postgresql',
        "concurrency is proven on PostgreSQL")
    def test_concurrent_orders_on_half_allotted_slot(self):
        "Partner and online orders at once on a half-allotted slot"
        # 6 general places: the web channel stays under its unpaid share
        slot = self.day_slot(capacity=20, allot=14)
        calls = ([lambda: self.partner_order(slot, 1)] * 16
            + [lambda: self.online(slot, 1)] * 16)
        with ThreadPoolExecutor(max_workers=32) as pool:
            responses = list(pool.map(lambda call: call(), calls))
        partner, online = responses[:16], responses[16:]
        self.assertEqual([r.status_code for r in partner].count(201), 14,
            [r.get_data() for r in partner])
        self.assertEqual({r.json['error']['code'] for r in partner
                if r.status_code != 201}, {'allotment_exhausted'})
        self.assertEqual([r.status_code for r in online].count(201), 6,
            [r.get_data() for r in online])
        self.assertEqual({r.json['error']['code'] for r in online
                if r.status_code != 201}, {'sold_out'})
        self.assertCounters(slot, booked=20, sold=14)
