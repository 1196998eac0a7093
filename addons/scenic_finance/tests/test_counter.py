"The box office's shifts through the daily posting (scenic_counter)."
import datetime as dt
import unittest
from decimal import Decimal

from trytond.modules.company.tests import set_company
from trytond.pool import Pool
from trytond.tests.test_tryton import (
    activate_module, drop_db, with_transaction)
from trytond.transaction import Transaction

from scenic_ticket.tests.tools import configure_pii_key, create_user

from .tools import YEAR, at, balances, finance_area, post

D = Decimal


def day(month, d):
    return dt.date(YEAR, month, d)


def windows(f, tolerance='5'):
    "A window and a cash method on the finance area, and its cashiers."
    pool = Pool()
    Point = pool.get('sale.point')
    Method = pool.get('sale.point.payment.method')
    TransferType = pool.get('sale.point.cash.transfer.type')
    Journal = pool.get('account.journal')
    Location = pool.get('stock.location')
    Sequence = pool.get('ir.sequence.strict')
    ModelData = pool.get('ir.model.data')
    from scenic_account_cn.chart import accounts_by_code
    company = f.company
    with set_company(company):
        accounts = accounts_by_code(company)
        cash_journal, = Journal.search([('type', '=', 'cash')], limit=1)
        storage, = Location.search([('code', '=', 'STO')])
        customer, = Location.search([('code', '=', 'CUS')])
        difference, float_type = TransferType.create([{
                    'company': company.id, 'name': name,
                    'journal': cash_journal.id,
                    'account': accounts['1901'].id,
                    } for name in ["Shortage/overage", "Float from safe"]])
        sequence, = Sequence.create([{
                    'name': "Window 1", 'company': company.id,
                    'sequence_type': ModelData.get_id(
                        'sale_point', 'sequence_type_sale'),
                    'prefix': 'W1-'}])
        point, = Point.create([{
                    'name': "东门1号窗口", 'company': company.id,
                    'journal': f.rule.journal.id, 'sequence': sequence.id,
                    'storage_location': storage.id,
                    'customer_location': customer.id,
                    'scenic_kind': 'window',
                    'scenic_channel': f.area.channel,
                    'cash_tolerance': D(tolerance),
                    'difference_transfer_type': difference.id,
                    'float_transfer_type': float_type.id,
                    }])
        cash, = Method.create([{
                    'company': company.id, 'name': "Cash",
                    'account': accounts['1001'].id, 'cash': True,
                    'scenic_provider': 'cash'}])
        cashier = create_user(company, 'cashier', 'cashier1')
        supervisor = create_user(company, 'supervisor', 'super1')
    return point, cash, cashier, supervisor


class ScenicFinanceCounterTestCase(unittest.TestCase):
    """Test scenic_finance with the box office (the generic model tests of
    these modules run in test_module.ScenicFinanceTestCase)"""

    @classmethod
    def setUpClass(cls):
        configure_pii_key()
        drop_db()
        # The modules and order of ScenicFinanceTestCase: its cached
        # database is reused.
        activate_module(['scenic_finance', 'scenic_account_cn',
                'scenic_counter'])

    @classmethod
    def tearDownClass(cls):
        drop_db()

    def cash_lines(self, company, date):
        "(account code, debit, credit, description) of the day's cash move."
        Batch = Pool().get('scenic.finance.batch')
        batches = Batch.search([('company', '=', company.id),
                ('date', '=', date), ('kind', '=', 'cash')])
        if not batches:
            return None, []
        batch, = batches
        return batch, sorted((l.account.code, l.debit, l.credit,
                l.description) for l in batch.move.lines)

    @with_transaction()
    def test_shortage_to_1901_then_5711_on_approval(self):
        "A short shift: 1901 when counted, 5711 the day it is approved"
        pool = Pool()
        Session = pool.get('sale.point.cash.session')
        f = finance_area()
        point, cash, cashier, supervisor = windows(f, tolerance='5')
        with set_company(f.company):
            # The day has a sale (posting starts at the first payment).
            f.history.sell(f.types['adult'], '100', at(3, 1, 9))
            with Transaction().set_user(cashier.id):
                session = Session.open_shift(point, '200',
                    now=at(3, 1, 8))
                closed = session.close_shift({100: 1, 50: 1, 10: 4},
                    now=at(3, 1, 18))  # 190: 10 short, beyond tolerance
            self.assertEqual(closed.state, 'pending')
            post(f.company, day(3, 1))
            batch, lines = self.cash_lines(f.company, day(3, 1))
            self.assertEqual([l[:3] for l in lines], [
                    ('1001', D(0), D(10)), ('1901', D(10), D(0))])
            self.assertIn("东门1号窗口", lines[0][3])
            self.assertIn(cashier.rec_name, lines[0][3])
            self.assertEqual(batch.counted_sessions, (Session(closed.id),))
            Day = pool.get('scenic.finance.day')
            first, = Day.search([('date', '=', day(3, 1))])
            self.assertEqual(first.cash_difference, D(-10))

            # Approved the next morning: cleared to 5711 with that day.
            with Transaction().set_user(supervisor.id):
                Session.approve([closed], now=at(3, 2, 9))
            post(f.company, day(3, 2))
            batch, lines = self.cash_lines(f.company, day(3, 2))
            self.assertEqual([l[:3] for l in lines], [
                    ('1901', D(0), D(10)), ('5711', D(10), D(0))])
            self.assertEqual(batch.late, 0)
            b = balances(f.company, ['1001', '1901', '5711'])
            self.assertEqual(b, {'1001': D(10), '1901': D(0),
                    '5711': D(-10)})
            # Posting again posts nothing new.
            post(f.company, day(3, 3))
            self.assertEqual(balances(f.company, ['1901', '5711']),
                {'1901': D(0), '5711': D(-10)})

    @with_transaction()
    def test_overage_within_tolerance_to_5301(self):
        "An overage within tolerance: counted and cleared the same day"
        Session = Pool().get('sale.point.cash.session')
        f = finance_area()
        point, cash, cashier, supervisor = windows(f, tolerance='5')
        with set_company(f.company):
            # The day has a sale (posting starts at the first payment).
            f.history.sell(f.types['adult'], '100', at(3, 1, 9))
            with Transaction().set_user(cashier.id):
                session = Session.open_shift(point, '200',
                    now=at(3, 1, 8))
                closed = session.close_shift({100: 2, 1: 2},
                    now=at(3, 1, 18))
            self.assertEqual(closed.state, 'closed')
            post(f.company, day(3, 1))
            _, lines = self.cash_lines(f.company, day(3, 1))
            self.assertEqual(sorted(l[:3] for l in lines), [
                    ('1001', D(2), D(0)), ('1901', D(0), D(2)),
                    ('1901', D(2), D(0)), ('5301', D(0), D(2))])
            self.assertEqual(balances(f.company, ['1901', '5301']),
                {'1901': D(0), '5301': D(2)})

    @with_transaction()
    def test_late_close_posts_with_next_day(self):
        "A shift counted on a day already posted goes with the next day"
        pool = Pool()
        Session = pool.get('sale.point.cash.session')
        Batch = pool.get('scenic.finance.batch')
        f = finance_area()
        point, cash, cashier, supervisor = windows(f, tolerance='0')
        with set_company(f.company):
            f.history.sell(f.types['adult'], '100', at(3, 1, 9))
            post(f.company, day(3, 1))
            moves = {b.move for b in Batch.search([('date', '=', day(3, 1))])}
            with Transaction().set_user(cashier.id):
                session = Session.open_shift(point, '200',
                    now=at(3, 1, 8))
                # Recorded after 3-1 was posted, dated 3-1.
                session.close_shift({100: 1, 50: 1, 20: 2},
                    now=at(3, 1, 20))
            post(f.company, day(3, 2))
            self.assertEqual(
                {b.move for b in Batch.search([('date', '=', day(3, 1))])},
                moves)
            self.assertEqual(self.cash_lines(f.company, day(3, 1)),
                (None, []))
            batch, lines = self.cash_lines(f.company, day(3, 2))
            self.assertEqual(batch.late, 1)
            self.assertEqual([l[:3] for l in lines], [
                    ('1001', D(0), D(10)), ('1901', D(10), D(0))])
            self.assertIn("2025-03-01", lines[0][3])

    @with_transaction()
    def test_settlement_cashier_is_the_shifts(self):
        "A counter payment's cashier is the shift's, not who wrote the row"
        pool = Pool()
        Session = pool.get('sale.point.cash.session')
        Order = pool.get('scenic.order')
        Day = pool.get('scenic.finance.day')
        from scenic_counter.window import _record_sale
        f = finance_area()
        point, cash, cashier, supervisor = windows(f)
        with set_company(f.company):
            with Transaction().set_user(cashier.id):
                session = Session.open_shift(point, '0', now=at(3, 1, 8))
            # The payment row is written by another user (a sync job).
            order_id, _ = f.history.sell(f.types['adult'], '100',
                at(3, 1, 10), provider='cash')
            online_id, _ = f.history.sell(f.types['adult'], '35.50',
                at(3, 1, 11), provider='wechat')
            order = Order(order_id)
            _record_sale(session, order, cash, order.total,
                order.payments[0].provider_reference)
            post(f.company, day(3, 1))
            settlement, = Day.search([('date', '=', day(3, 1))])
            money = {(l.method, l.cashier): l.money_in
                for l in settlement.lines if l.money_in}
            admin = Transaction().user
            self.assertEqual(money, {
                    ('cash', cashier): D(100),
                    ('wechat', pool.get('res.user')(admin)): D('35.50')})


    @with_transaction()
    def test_late_wallet_trade_pair_reconciles(self):
        "A trade paid too late: a payment and its refund, matched in the "
        "wallet's file; the order's own refund gives back only its payment"
        import contextlib
        import json
        import sys
        from unittest import mock

        from scenic_counter import window
        from scenic_ticket import reservation
        from ..wallet import import_wallet_file, settlement_file
        pool = Pool()
        Intent = pool.get('scenic.counter.provider_intent')
        Order = pool.get('scenic.order')
        f = finance_area()
        inline = contextlib.ExitStack()
        # SQLite's in-memory test database has one connection: an intent's
        # own transaction would commit the test's data (every copy of the
        # module: as scenic_counter and as trytond.modules.scenic_counter).
        for name, module in list(sys.modules.items()):
            if name.endswith('scenic_counter.intent'):
                inline.enter_context(mock.patch.object(module,
                        '_in_own_transaction', lambda func: func()))
        with set_company(f.company), inline:
            order_id, _ = f.history.sell(f.types['adult'], '100',
                at(3, 1, 9), provider='simulated')
            order = Order(order_id)
            # Paid already, yet the visitor also paid the QR on screen.
            Intent.create([{'key': f'native-{order.reference}',
                        'provider': 'simulated', 'operation': 'native',
                        'reference': order.reference, 'amount': D(100),
                        'state': 'pending',
                        'result': '/db/scenic/kiosk/simpay/tok123'}])
            body = json.dumps({'out_trade_no': order.reference,
                    'token': 'tok123'}).encode()
            for _ in range(2):  # delivered twice
                self.assertIsNone(window.apply_notification(
                        'simulated', {}, body, now=at(3, 1, 9, 5)))
            order = Order(order_id)
            self.assertEqual(order.state, 'paid')
            late, = [p for p in order.payments
                if p.provider_reference == 'SIM-QR-tok123']
            refund, = [p for p in order.payments if p.kind == 'refund']
            self.assertEqual((late.kind, late.amount, refund.amount,
                    refund.refund_of), ('payment', D(100), D(100), late))

            # Refunding the order gives back its own payment only.
            order = reservation.cancel(order_id, now=at(3, 1, 11),
                by_back_office=True)
            self.assertEqual(order.state, 'refunded')
            refunds = [p for p in order.payments if p.kind == 'refund']
            self.assertEqual(len(refunds), 2)
            self.assertEqual(sorted(p.refund_of.id for p in refunds),
                sorted(p.id for p in order.payments if p.kind == 'payment'))
            self.assertEqual(len(Intent.search([('operation', '=', 'refund'),
                            ('reference', '=', 'SIM-QR-tok123')])), 1)

            # The wallet's settlement file matches every trade.
            statement = import_wallet_file(f.company, 'simulated',
                settlement_file(f.company, day(3, 1), 'simulated'))
            matches = [(l.number, l.scenic_match) for l in statement.lines
                if l.number]
            self.assertEqual(len(matches), 4)
            self.assertEqual({m for _, m in matches}, {'matched'})
            self.assertIn(('SIM-QR-tok123', 'matched'), matches)
            self.assertIn(('SIM-REFUND-SIM-QR-tok123', 'matched'), matches)

            post(f.company, day(3, 1))
            account = f.rule.method_account('simulated').code
            self.assertEqual(balances(f.company, [account, '2203', '5051']),
                {account: D(0), '2203': D(0), '5051': D(0)})


    @with_transaction()
    def test_used_ticket_refund_reverses_revenue(self):
        "A used ticket refunded with a supervisor's approval: its earned "
        "revenue and VAT are reversed (not 2203), the days balanced"
        from scenic_ticket import reservation
        from scenic_ticket.errors import BookingError
        pool = Pool()
        Order = pool.get('scenic.order')
        Day = pool.get('scenic.finance.day')
        Recognition = pool.get('scenic.finance.recognition')
        f = finance_area()
        codes = ['2203', '5001', '5051', '22210101']
        with set_company(f.company):
            # 106 = 100 net + 6 VAT each
            earlier, (first,) = f.history.sell(f.types['adult'], '106',
                at(3, 1, 9))
            same_day, (second,) = f.history.sell(f.types['adult'], '106',
                at(3, 1, 9))
            f.history.enter([first], at(3, 1, 10))
            post(f.company, day(3, 1))
            account = f.rule.method_account('simulated').code
            self.assertEqual(balances(f.company, [account] + codes), {
                    account: D(-212), '2203': D(100), '5001': D(100),
                    '5051': D(0), '22210101': D(12)})

            # earned on day 1, refunded on day 2; the other used and
            # refunded on day 2, before the day is posted
            f.history.enter([second], at(3, 2, 9))
            with self.assertRaises(BookingError) as refused:
                reservation.cancel(earlier, now=at(3, 2, 10),
                    by_back_office=True)
            self.assertEqual(refused.exception.code, 'not_cancellable')
            self.assertEqual(Order(earlier).state, 'used')
            for order_id in [earlier, same_day]:
                order = reservation.cancel(order_id, now=at(3, 2, 10),
                    by_back_office=True, used_approved=True)
                self.assertEqual(order.state, 'refunded')
                self.assertEqual([t.state for t in order.tickets],
                    ['revoked'])
                refund, = [p for p in order.payments if p.kind == 'refund']
                self.assertEqual(refund.amount, D(106))
            post(f.company, day(3, 2))
            self.assertEqual(balances(f.company, [account] + codes), {
                    account: D(0), '2203': D(0), '5001': D(0),
                    '5051': D(0), '22210101': D(0)})
            reversals = Recognition.search([('kind', '=', 'refund')])
            self.assertEqual(sorted((r.ticket.id, r.amount)
                    for r in reversals),
                [(first, D(-100)), (second, D(-100))])
            second_day, = Day.search([('date', '=', day(3, 2))])
            # earned 100 (the second's entry), reversed 200
            self.assertEqual(second_day.revenue, D(-100))
            for move in pool.get('account.move').search([]):
                self.assertEqual(sum(l.debit for l in move.lines),
                    sum(l.credit for l in move.lines))
