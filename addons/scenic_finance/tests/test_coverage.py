"""Payments covered by the posting's snapshot (posting.Coverage) against
transactions in flight: a payment committed after a day's posting took
its snapshot is posted once, late, by the next day. Two connections:
PostgreSQL only (SQLite has one writer at a time)."""
import datetime as dt
import unittest
from decimal import Decimal

from trytond import backend
from trytond.modules.company.tests import set_company
from trytond.pool import Pool
from trytond.tests.test_tryton import DB_NAME, activate_module, drop_db
from trytond.transaction import Transaction, TransactionError

from scenic_ticket.tests.tools import configure_pii_key

from ..history import History
from .tools import YEAR, at, balances, finance_area, post

D = Decimal


def day(month, d):
    return dt.date(YEAR, month, d)


def in_transaction(function, **kwargs):
    "Run function in a committed transaction, retried with its locks."
    extras = {}
    for attempt in range(5):
        try:
            with Transaction(new=True).start(
                    DB_NAME, 0, **extras, **kwargs) as transaction:
                result = function()
                transaction.commit()
                return result
        except TransactionError as error:
            error.fix(extras)
    raise AssertionError("no transaction could commit")


@unittest.skipUnless(backend.name == 'postgresql', "two writers at once")
class PaymentCoverageTestCase(unittest.TestCase):
    "Test payments covered by snapshot against concurrent writers"

    @classmethod
    def setUpClass(cls):
        configure_pii_key()
        drop_db()
        # scenic_finance alone (scenic_account_cn is its dependency),
        # cached under the name scenario_finance's activate_modules
        # restores: one install serves both (PostgreSQL runs this first).
        activate_module(['scenic_finance'])

    @classmethod
    def tearDownClass(cls):
        # Committed rows would stay for the next test classes.
        drop_db()

    def test_payment_committed_after_snapshot_posted_once_late(self):
        "A payment committed after its day's snapshot posts late, once"

        def setup():
            f = finance_area()
            with set_company(f.company):
                f.history.sell(f.types['adult'], '100', at(3, 1, 9),
                    valid_until=at(4, 30))
            h = f.history
            return (f.company.id, f.types['adult'].id, h.channel.id,
                h.slot.id, h.gate.id)
        ids = in_transaction(setup)

        def area():
            pool = Pool()
            company = pool.get('company.company')(ids[0])
            history = History(company, pool.get('scenic.channel')(ids[2]),
                pool.get('scenic.time_slot')(ids[3]),
                pool.get('scenic.gate')(ids[4]))
            return company, history

        # Under the area's company in the context only: set_company writes
        # the user, whose row the writer's transaction holds.
        def post_first_day():
            company, _ = area()
            return post(company, day(3, 1))

        def sell_other():
            company, history = area()
            with Transaction().set_context(company=company.id):
                history.sell(Pool().get('scenic.ticket.type')(ids[1]), '30',
                    at(3, 1, 15), valid_until=at(4, 30))

        # The writer records a payment dated 3-1 and has not committed
        # when another one, with a higher id, commits and the posting of
        # 3-1 takes its snapshot (an id watermark would count the
        # writer's as seen and never post it); the posting commits first,
        # then the writer.
        with Transaction().start(DB_NAME, 0) as writer:
            pool = Pool()
            company, history = area()
            with Transaction().set_context(company=company.id):
                order_id, _ = history.sell(
                    pool.get('scenic.ticket.type')(ids[1]), '50',
                    at(3, 1, 22), valid_until=at(4, 30))
                late, = pool.get('scenic.payment').search(
                    [('order', '=', order_id)])
                late_id = late.id
                in_transaction(sell_other)
                self.assertEqual(
                    in_transaction(post_first_day), [day(3, 1)])
            writer.commit()

        def check():
            pool = Pool()
            Batch = pool.get('scenic.finance.batch')
            Payment = pool.get('scenic.payment')
            company, _ = area()
            with set_company(company):
                first, = Batch.search([('kind', '=', 'receipts'),
                        ('date', '=', day(3, 1))])
                self.assertEqual(first.late, 0)
                self.assertEqual(first.amount, D('130'))
                self.assertGreater(
                    max(p.id for p in first.payments), late_id)
                self.assertNotIn(late_id, [p.id for p in first.payments])
                self.assertEqual(Payment(late_id).posting_batch, None)
                self.assertEqual(Payment.search(
                        [('posting_batch', '=', None)]), [Payment(late_id)])
                self.assertEqual(post(company, day(3, 3)),
                    [day(3, 2), day(3, 3)])
                batch, = Batch.search([('kind', '=', 'receipts'),
                        ('date', '=', day(3, 2))])
                self.assertEqual(batch.late, 1)
                self.assertEqual([p.id for p in batch.payments], [late_id])
                self.assertEqual(Payment(late_id).posting_batch, batch)
                self.assertEqual(Batch.search(
                        [('payments', '=', late_id)]), [batch])
                self.assertTrue(any('Late' in (l.description or '')
                        for l in batch.move.lines))
                self.assertEqual([t.order.id for t in batch.tickets],
                    [order_id])
                # posted once: no other receipts, and nothing new again
                self.assertEqual(Batch.search_count(
                        [('kind', '=', 'receipts')]), 2)
                self.assertEqual(post(company, day(3, 4)), [day(3, 4)])
                self.assertEqual(Batch.search_count(
                        [('kind', '=', 'receipts')]), 2)
                self.assertEqual(Payment.search(
                        [('posting_batch', '=', None)]), [])
                self.assertEqual(batch.amount, D('50'))
                self.assertEqual(balances(company, ['2203'])['2203'],
                    D('94.34') + D('47.17') + D('28.30'))
        in_transaction(check)

    def test_scan_committed_after_snapshot_earned_once_late(self):
        "An entry committed after its day's snapshot is earned next day, once"

        def setup():
            f = finance_area()
            with set_company(f.company):
                # two orders: entering a ticket updates its order's row,
                # which the writer holds
                (_, (late,)), (_, (other,)) = (
                    f.history.sell(f.types['adult'], '106', at(3, 1, 9),
                        valid_until=at(4, 30))
                    for _ in range(2))
            h = f.history
            return (f.company.id, h.channel.id, h.slot.id, h.gate.id,
                late, other)
        ids = in_transaction(setup)
        late, other = ids[4:]

        def area():
            pool = Pool()
            company = pool.get('company.company')(ids[0])
            history = History(company, pool.get('scenic.channel')(ids[1]),
                pool.get('scenic.time_slot')(ids[2]),
                pool.get('scenic.gate')(ids[3]))
            return company, history

        def post_until(date):
            def run():
                company, _ = area()
                return post(company, date)
            return run

        def enter_other():
            company, history = area()
            with Transaction().set_context(company=company.id):
                history.enter([other], at(3, 1, 15))

        # An offline box's upload of an entry of 3-1 has not committed
        # when another entry, with a higher id, commits and the posting of
        # 3-1 takes its snapshot; the posting commits first.
        with Transaction().start(DB_NAME, 0) as writer:
            company, history = area()
            with Transaction().set_context(company=company.id):
                history.enter([late], at(3, 1, 14))
                in_transaction(enter_other)
                self.assertEqual(in_transaction(post_until(day(3, 1))),
                    [day(3, 1)])
            writer.commit()
        self.assertEqual(in_transaction(post_until(day(3, 3))),
            [day(3, 2), day(3, 3)])

        def check():
            pool = Pool()
            Batch = pool.get('scenic.finance.batch')
            company, _ = area()
            with set_company(company):
                earned = {b.date: [t.id for t in b.earned_tickets]
                    for b in Batch.search([('kind', '=', 'recognition')])}
                self.assertEqual(earned,
                    {day(3, 1): [other], day(3, 2): [late]})
                self.assertEqual(Batch.search(
                        [('earned_tickets', '=', late)])[0].date, day(3, 2))
                self.assertEqual(balances(company, ['2203', '5001']),
                    {'2203': D(0), '5001': D('200')})
        in_transaction(check)
