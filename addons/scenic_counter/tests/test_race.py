"""Counter sales and online bookings racing for the last places.

Both go through scenic_ticket's claims; on PostgreSQL, concurrent
transactions never sell more than the slot holds.
"""
import unittest
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal

from scenic_ticket import reservation
from scenic_ticket.errors import BookingError

from trytond import backend
from trytond.pool import Pool
from trytond.tests.test_tryton import DB_NAME, RouteTestCase
from trytond.transaction import Transaction

from .tools import AnyTable, build_windows, configure, person

PLACES = 10


@unittest.skipIf(backend.name != 'postgresql',
    "concurrency is proven on PostgreSQL")
class CounterRaceTestCase(RouteTestCase):
    "Counter and online sales race for the last places"
    module = 'scenic_counter'

    @classmethod
    def setUpClass(cls):
        configure()
        super().setUpClass()

    @classmethod
    def setUpDatabase(cls):
        pool = Pool()
        Session = pool.get('sale.point.cash.session')
        Channel = pool.get('scenic.channel')
        Transaction()._locked_tables = AnyTable()  # no retry loop here
        w = build_windows(capacity=PLACES)
        with Transaction().set_context(company=w.company.id):
            Channel.create([{'company': w.company.id, 'name': "Web",
                        'code': 'web', 'kind': 'online'}])
            for point, user in zip(w.points, [w.cashier, w.cashier2]):
                with Transaction().set_user(user.id):
                    Session.open_shift(point, Decimal(0))

    def _counter(self, n):
        from .. import txn, window

        def work():
            pool = Pool()
            Session = pool.get('sale.point.cash.session')
            Method = pool.get('sale.point.payment.method')
            session, = Session.search([('point.name', '=',
                        f"Window {1 + n % 2}")])
            cash, = Method.search([('scenic_provider', '=', 'cash')])
            slot, = pool.get('scenic.time_slot').search([])
            with Transaction().set_context(
                    company=session.point.company.id), \
                    Transaction().set_user(session.cashier.id):
                window.sell(session, slot.id, [{'ticket_type': 'ADULT',
                            'visitors': [person(100 + n)]}], cash)
            return 'sold'
        try:
            return txn.run(DB_NAME, 0, work)
        except BookingError as error:
            return error.code

    def _online(self, n):
        from .. import txn, window

        def work():
            pool = Pool()
            Channel = pool.get('scenic.channel')
            web, = Channel.search([('code', '=', 'web')])
            slot, = pool.get('scenic.time_slot').search([])
            request = window._request(slot.id, [{'ticket_type': 'ADULT',
                        'visitors': [person(500 + n)]}], '13800138000')
            with Transaction().set_context(company=web.company.id):
                order_id, _ = reservation.book(web, request, f'web-{n}')
                reservation.pay(order_id, 'simulated', Decimal(100))
            return 'sold'
        try:
            return txn.run(DB_NAME, 0, work)
        except BookingError as error:
            return error.code

    def test_race_for_last_places(self):
        "30 counter sales and 30 online bookings at 10 places sell 10"
        work = [(self._counter, n) for n in range(30)] + [
            (self._online, n) for n in range(30)]
        work = work[::2] + work[1::2]   # interleave the two kinds
        with ThreadPoolExecutor(max_workers=16) as pool:
            results = list(pool.map(lambda w: w[0](w[1]), work))
        self.assertEqual(results.count('sold'), PLACES, results)
        self.assertEqual(set(results) - {'sold'}, {'sold_out'})
        with Transaction().start(DB_NAME, 0, readonly=True):
            pool = Pool()
            slot, = pool.get('scenic.time_slot').search([])
            self.assertEqual(slot.booked, PLACES)
            Ticket = pool.get('scenic.ticket')
            self.assertEqual(Ticket.search(
                    [('state', '=', 'valid')], count=True), PLACES)
            Payment = pool.get('sale.point.payment')
            counter_sold = sum(1 for (kind, _), result in zip(work, results)
                if kind == self._counter and result == 'sold')
            self.assertEqual(Payment.search([], count=True), counter_sold)


class CountingWallet:
    "A wallet gateway that counts its calls (the recorded answers' stand-in)."
    name = 'wechat'

    def __init__(self):
        self.charges = []

    def charge(self, order_reference, amount, currency):
        self.charges.append(order_reference)
        return f'WX{len(self.charges):08d}'

    def query(self, order_reference):
        return None

    def refund(self, payment_reference, amount, currency):
        raise AssertionError("not refunded here")

    query_refund = query


@unittest.skipIf(backend.name != 'postgresql',
    "retries of serialization failures are PostgreSQL's")
class ProviderIntentTestCase(RouteTestCase):
    "A retried sale never calls the wallet twice"
    module = 'scenic_counter'

    @classmethod
    def setUpClass(cls):
        configure()
        super().setUpClass()

    @classmethod
    def setUpDatabase(cls):
        Session = Pool().get('sale.point.cash.session')
        Transaction()._locked_tables = AnyTable()  # no retry loop here
        w = build_windows(capacity=PLACES)
        with Transaction().set_context(company=w.company.id), \
                Transaction().set_user(w.cashier.id):
            Session.open_shift(w.points[0], Decimal(0))

    def test_serialization_failures_call_the_wallet_once(self):
        "Three forced serialization failures after the charge: one call"
        from psycopg.errors import SerializationFailure
        from scenic_ticket.providers import PROVIDERS, register

        from .. import txn, window
        from ..intent import RecordedProvider
        wallet = CountingWallet()
        previous = PROVIDERS.get('wechat')
        register(RecordedProvider(wallet))
        failures = []

        def work():
            pool = Pool()
            Session = pool.get('sale.point.cash.session')
            Method = pool.get('sale.point.payment.method')
            session, = Session.search([('state', '=', 'open')])
            method, = Method.search([('scenic_provider', '=', 'wechat')])
            slot, = pool.get('scenic.time_slot').search([])
            with Transaction().set_context(
                    company=session.point.company.id), \
                    Transaction().set_user(session.cashier.id):
                result = window.sell(session, slot.id, [{
                            'ticket_type': 'ADULT',
                            'visitors': [person(900)]}], method,
                    idempotency_key='sale-wx-1')
            if len(failures) < 3:
                failures.append(result['order'])
                raise SerializationFailure("forced by the test")
            return result
        try:
            result = txn.run(DB_NAME, 0, work)
        finally:
            if previous is not None:
                register(previous)
            else:
                PROVIDERS.pop('wechat', None)
        self.assertEqual(len(failures), 3)
        self.assertEqual(len(wallet.charges), 1)
        self.assertEqual(result['trade_number'], 'WX00000001')
        with Transaction().start(DB_NAME, 0, readonly=True):
            pool = Pool()
            Intent = pool.get('scenic.counter.provider_intent')
            intent, = Intent.search([])
            self.assertEqual((intent.state, intent.result, intent.key),
                ('done', 'WX00000001', 'sale-wx-1'))
            payment, = pool.get('sale.point.payment').search([])
            self.assertEqual(payment.trade_number, 'WX00000001')
            self.assertEqual(pool.get('scenic.time_slot').search(
                    [])[0].booked, 1)
