"""A partner's quota per day, over all the day's slots, through the partner
API: it caps the partner with or without slot allotments, holds its places
on the area's daily maximum, goes back at its release time, and the
calendar shows the smaller of what is left. The concurrency test needs
PostgreSQL."""
import datetime as dt
import unittest
from concurrent.futures import ThreadPoolExecutor

from scenic_ticket.tests import routes
from scenic_ticket.tests.tools import create_slot

from trytond import backend
from trytond.pool import Pool
from trytond.tests.test_tryton import DB_NAME
from trytond.transaction import Transaction

# The module, not its test case: pytest would collect and run it here too.
from . import test_partner_api as api
from .test_partner_api import new_id

FAR = dt.datetime(2099, 1, 1)
_API = api.PartnerAPITestCase.__dict__


class DayQuotaTestCase(routes.AreaRouteTestCase):
    "Test partners' day quotas"
    module = 'scenic_group'
    # The partner API tests' area, partners and signed calls.
    setUpDatabase = _API['setUpDatabase']
    path = _API['path']
    call = _API['call']
    assertError = _API['assertError']
    partner = _API['partner']
    order_body = _API['order_body']
    create = _API['create']

    def day_slots(self, capacities, quota=None, allot=None,
            daily_max=None):
        """Slots on a day of their own, the partner's quota of that day and
        (`allot`) an allotment of the first slot; return the slot ids and
        the day."""
        with Transaction().start(DB_NAME, 0) as transaction:
            pool = Pool()
            Company = pool.get('company.company')
            Allotment = pool.get('scenic.group.allotment')
            DayAllotment = pool.get('scenic.group.day_allotment')
            company, = Company.search([])
            if daily_max is not None:
                self.set_daily_max(company, daily_max)
            date = self.new_day(company, offset=2)
            partner = self.partner()
            with Transaction().set_context(company=company.id):
                slots = [create_slot(company, date, (9 + n, 0),
                        (9 + n, 30), capacity=capacity)
                    for n, capacity in enumerate(capacities)]
                if allot:
                    Allotment.allot(partner, slots[0], allot,
                        release_at=FAR)
                if quota:
                    DayAllotment.allot(partner, date, quota,
                        release_at=FAR)
            transaction.commit()
        return [s.id for s in slots], date

    @staticmethod
    def set_daily_max(company, maximum):
        from scenic_ticket import catalogue
        Company = Pool().get('company.company')
        Company.write([company], {'scenic_daily_max': maximum})
        catalogue.clear()

    def reset_daily_max(self):
        with Transaction().start(DB_NAME, 0) as transaction:
            company, = Pool().get('company.company').search([])
            self.set_daily_max(company, None)
            transaction.commit()

    def day_quota(self, date):
        with Transaction().start(DB_NAME, 0, readonly=True):
            quota, = Pool().get('scenic.group.day_allotment').search([
                    ('date', '=', date), ('partner.key_id', '=', 'test-ota'),
                    ])
            return quota.sold, quota.remaining

    def area_booked(self, date):
        "The persons counted on the area's counter of a day."
        with Transaction().start(DB_NAME, 0, readonly=True):
            load, = Pool().get('scenic.daily_load').search([
                    ('date', '=', date), ('scope', '=', 'area')])
            return load.booked

    def calendar(self, date):
        response = self.call('GET', '/calendar',
            query=f'date={date.isoformat()}')
        self.assertEqual(response.status_code, 200, response.get_data())
        return response.json

    def test_day_quota_caps_the_partner_over_its_slots(self):
        "A day quota lets a partner book any slot of the day up to it"
        (first, second), date = self.day_slots([10, 10], quota=3)
        self.assertEqual(self.calendar(date)['day_allotment']['remaining'],
            3)
        self.assertEqual([s['stock'] for s in self.calendar(date)['slots']],
            [3, 3])
        body = self.order_body(first, [new_id(), new_id()])
        self.assertEqual(self.create(body).status_code, 201)
        self.assertError(self.create(self.order_body(
                    second, [new_id(), new_id()])), 409,
            'allotment_exhausted', 'slot')
        self.assertEqual(self.create(self.order_body(
                    second, [new_id()])).status_code, 201)
        self.assertEqual(self.day_quota(date), (3, 0))
        # The slots' places were taken by the bookings, not held.
        self.assertEqual(self.slot_state(first), (2, 8))
        self.assertEqual(self.slot_state(second), (1, 9))
        calendar = self.calendar(date)
        self.assertEqual(calendar['day_allotment']['remaining'], 0)
        self.assertEqual([s['stock'] for s in calendar['slots']], [0, 0])
        self.assertEqual([s['area_available'] for s in calendar['slots']],
            [8, 9])
        # A cancelled order gives its places back to the day quota.
        poid = body['partner_order_id']
        self.assertEqual(self.call('POST', f'/orders/{poid}/cancel').json[
                'state'], 'cancelled')
        self.assertEqual(self.day_quota(date), (1, 2))
        self.assertEqual([s['stock'] for s in self.calendar(date)['slots']],
            [2, 2])

    def test_day_quota_and_slot_allotment_both_apply(self):
        "An order takes from the slot's allotment and the day quota"
        (slot, other), date = self.day_slots([20, 1], quota=4, allot=10)
        calendar = self.calendar(date)
        # The slot's allotment holds 10, the day leaves 4; the other slot
        # has one place in the general pool.
        self.assertEqual([s['stock'] for s in calendar['slots']], [4, 1])
        self.assertError(self.create(self.order_body(
                    slot, [new_id() for _ in range(5)])), 409,
            'allotment_exhausted')
        self.assertEqual(self.create(self.order_body(
                    slot, [new_id() for _ in range(4)])).status_code, 201)
        self.assertEqual(self.day_quota(date), (4, 0))
        with Transaction().start(DB_NAME, 0, readonly=True):
            Order = Pool().get('scenic.order')
            order, = Order.search([('slot', '=', slot)])
            self.assertEqual((order.allotted_persons,
                    order.day_allotted_persons), (4, 4))
            self.assertEqual(order.allotment.sold, 4)
        self.assertEqual(self.slot_state(slot), (10, 10))
        self.assertError(self.create(self.order_body(other, [new_id()])),
            409, 'allotment_exhausted')

    def test_day_quota_held_on_daily_max_and_released(self):
        "The quota is held on the day's maximum until its release time"
        try:
            (slot,), date = self.day_slots([50], quota=5, daily_max=100000)
            self.assertEqual(self.area_booked(date), 5)
            with Transaction().start(DB_NAME, 0) as transaction:
                DayAllotment = Pool().get('scenic.group.day_allotment')
                quota, = DayAllotment.search([('date', '=', date)])
                self.assertTrue(quota.holds_daily)
                transaction.commit()
            body = self.order_body(slot, [new_id(), new_id()])
            self.assertEqual(self.create(body).status_code, 201)
            # The held places became the booking's: counted once.
            self.assertEqual(self.area_booked(date), 5)
            self.assertEqual(self.slot_state(slot), (2, 48))
            refund = self.call('POST',
                f"/orders/{body['partner_order_id']}/cancel")
            self.assertEqual(refund.status_code, 200, refund.get_data())
            # Back in the quota, held again for the partner.
            self.assertEqual(self.area_booked(date), 5)
            self.assertEqual(self.day_quota(date), (0, 5))
            self.assertEqual(self.create(self.order_body(
                        slot, [new_id()])).status_code, 201)
            with Transaction().start(DB_NAME, 0) as transaction:
                DayAllotment = Pool().get('scenic.group.day_allotment')
                self.assertTrue(DayAllotment.release_due(
                        now=dt.datetime(2099, 1, 2)) >= 1)
                # Released once, even when the cron runs again.
                self.assertEqual(DayAllotment.release_due(
                        now=dt.datetime(2099, 1, 2)), 0)
                transaction.commit()
            # The four unsold places went back to the general pool.
            self.assertEqual(self.area_booked(date), 1)
            self.assertEqual(self.calendar(date)['day_allotment'][
                    'released'], True)
            # Released and no free sale, no slot allotment: nothing more.
            self.assertError(self.create(self.order_body(
                        slot, [new_id()])), 409, 'allotment_exhausted')
        finally:
            self.reset_daily_max()

    def test_day_quota_refused_beyond_the_daily_max(self):
        "A quota is refused when the day has fewer places left"
        try:
            with Transaction().start(DB_NAME, 0) as transaction:
                pool = Pool()
                company, = pool.get('company.company').search([])
                self.set_daily_max(company, 10)
                transaction.commit()
            with Transaction().start(DB_NAME, 0) as transaction:
                from trytond.exceptions import UserError
                company, = Pool().get('company.company').search([])
                DayAllotment = Pool().get('scenic.group.day_allotment')
                date = self.new_day(company, offset=2)
                with Transaction().set_context(company=company.id):
                    DayAllotment.allot(self.partner(), date, 8)
                    with self.assertRaises(UserError) as cm:
                        DayAllotment.allot(
                            self.partner('test-agency'), date, 3)
                    self.assertIn('fewer than 3', cm.exception.message)
                    with self.assertRaises(UserError):
                        DayAllotment.allot(self.partner(), date, 1)
                transaction.rollback()
        finally:
            self.reset_daily_max()

    @unittest.skipIf(backend.name != 'postgresql',
        "concurrency is proven on PostgreSQL")
    def test_concurrent_orders_against_day_quota(self):
        "32 concurrent partner orders on two slots, a day quota of 20: 20 win"
        try:
            slots, date = self.day_slots([100, 100], quota=20,
                daily_max=100000)
            bodies = [self.order_body(slots[n % 2], [new_id()])
                for n in range(32)]
            with ThreadPoolExecutor(max_workers=32) as pool:
                responses = list(pool.map(self.create, bodies))
            statuses = [r.status_code for r in responses]
            self.assertEqual(statuses.count(201), 20, statuses)
            self.assertEqual(
                {r.json['error']['code'] for r in responses
                    if r.status_code != 201}, {'allotment_exhausted'})
            self.assertEqual(self.day_quota(date), (20, 0))
            self.assertEqual(sum(self.slot_state(s)[0] for s in slots), 20)
            # Held places converted, none counted twice.
            self.assertEqual(self.area_booked(date), 20)
        finally:
            self.reset_daily_max()
