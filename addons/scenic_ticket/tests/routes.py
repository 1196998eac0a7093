"""What the route tests of the booking API and of the APIs built on it
(the partner API) share: one area with a MAIN zone, test data that never
meet another test's (a day of its own, ID numbers of their own), and the
slot's counters as committed.

Subclass `routes.AreaRouteTestCase` (import the module, not the class, so
that pytest does not collect the base itself).
"""
import datetime as dt
import itertools

from scenic_common.idnumber import make_resident_id

from trytond.pool import Pool
from trytond.tests.test_tryton import DB_NAME, RouteTestCase
from trytond.transaction import Transaction

from ..slot import area_timezone
from .tools import configure_pii_key, create_area, create_zone


def id_numbers(region, born, start=1):
    "A function giving a new valid resident ID number at each call."
    people = itertools.count(start)

    def new_id():
        n = next(people)
        return make_resident_id(
            region, born + dt.timedelta(days=n % 15000), n % 999 + 1)
    return new_id


class AreaRouteTestCase(RouteTestCase):
    "Route tests on one scenic area; each test books on days of its own."

    @classmethod
    def setUpClass(cls):
        configure_pii_key()
        super().setUpClass()
        cls._days = itertools.count(1)

    @staticmethod
    def create_main_area():
        """The area, the admin user in it and its MAIN zone (for
        setUpDatabase); return the area and the zone."""
        User = Pool().get('res.user')
        company = create_area()
        User.write([User(Transaction().user)], {
                'companies': [('add', [company.id])],
                'company': company.id})
        with Transaction().set_context(company=company.id):
            main = create_zone(company, 'MAIN', daily_max=100000,
                instant_max=50000)
        return company, main

    def new_day(self, company, offset=0):
        """A day no other test of the class books on, counted from the
        area's today: the machine's date is another from 16:00 UTC
        (Shanghai's midnight) or in another zone."""
        today = dt.datetime.now(area_timezone(company)).date()
        return today + dt.timedelta(days=next(self._days) + offset)

    def slot_state(self, slot_id):
        "The slot's booked and available places, as committed."
        with Transaction().start(DB_NAME, 0, readonly=True):
            slot = Pool().get('scenic.time_slot')(slot_id)
            return slot.booked, slot.available
