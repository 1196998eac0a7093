import datetime as dt
import json
from decimal import Decimal
from unittest import mock

from scenic_common import gate as gate_rules
from scenic_common import ticketcode
from scenic_ticket.errors import BookingError
from scenic_ticket.tests.tools import (
    create_slot, savepoint)

from trytond.modules.company.tests import CompanyTestMixin, set_company
from trytond.pool import Pool
from trytond.tests.test_tryton import ModuleTestCase, with_transaction
from trytond.transaction import Transaction, check_access

from ..exceptions import CounterError, ShiftAccessError
from .tools import build_windows, configure, person


def sell(w, session, items, method=None, slot=None, **kwargs):
    from .. import window
    method = method or w.cash
    return window.sell(session, (slot or w.slot).id, items, method,
        **kwargs)


def adults(*numbers):
    return [{'ticket_type': 'ADULT', 'visitors': [person(n) for n in
                numbers]}]


class ScenicCounterTestCase(CompanyTestMixin, ModuleTestCase):
    "Test scenic_counter module"
    module = 'scenic_counter'

    @classmethod
    def setUpClass(cls):
        configure()
        super().setUpClass()

    def open_shift(self, w, point=None, user=None, float_amount='200'):
        Session = Pool().get('sale.point.cash.session')
        user = user or w.cashier
        with Transaction().set_user(user.id):
            return Session.open_shift(point or w.points[0],
                Decimal(float_amount))

    @with_transaction()
    def test_sale_and_exact_close(self):
        "Two real-name adults for cash: change, receipt, exact close"
        w = build_windows()
        with set_company(w.company), Transaction().set_user(w.cashier.id):
            session = self.open_shift(w)
            self.assertEqual(session.cashier, w.cashier)
            self.assertEqual(session.float_amount, Decimal(200))
            result = sell(w, session, adults(1, 2), tendered=Decimal(250))
            self.assertEqual(result['total'], Decimal(200))
            self.assertEqual(result['change'], Decimal(50))
            self.assertTrue(result['receipt'].startswith('W1-'))
            self.assertEqual(len(result['tickets']), 2)
            payment, = session.__class__(session.id).shift_payments
            self.assertEqual(payment.cashier, w.cashier)
            self.assertEqual(payment.session, session)
            self.assertEqual(payment.method, w.cash)
            self.assertEqual(payment.sale.state, 'done')
            self.assertEqual(payment.scenic_order.state, 'paid')

            x = session.report('X')
            self.assertEqual(x['expected'], Decimal(400))
            self.assertEqual(x['methods']['Cash']['amount'], Decimal(200))
            self.assertEqual(x['ticket_types']['Adult']['quantity'], 2)
            with self.assertRaises(CounterError):
                session.report('Z')

            closed = session.close_shift({100: 3, 50: 2})
            self.assertEqual(closed.state, 'closed')
            self.assertEqual(closed.counted_amount, Decimal(400))
            self.assertEqual(closed.difference, Decimal(0))
            self.assertEqual(closed.end_amount, Decimal(400))
            z = closed.report()
            self.assertEqual(z['kind'], 'Z')
            self.assertEqual(z['sales'], 1)
            job = closed.report_job()
            self.assertEqual(job['title'], 'Z report')

            # The next shift starts from what was left in the drawer.
            with self.assertRaises(CounterError):
                sell(w, closed, adults(3))
            nxt = self.open_shift(w, float_amount='400')
            self.assertEqual(nxt.start_amount, Decimal(400))
            self.assertFalse(nxt.transfers)

    @with_transaction()
    def test_difference_waits_for_supervisor(self):
        "A difference beyond tolerance waits; within it closes"
        pool = Pool()
        Session = pool.get('sale.point.cash.session')
        w = build_windows(tolerance='2')
        with set_company(w.company):
            with Transaction().set_user(w.cashier.id):
                session = self.open_shift(w)
                sell(w, session, adults(1), tendered=Decimal(100))
                closed = session.close_shift({100: 2, 10: 9})  # 10 short
                self.assertEqual(closed.state, 'pending')
                self.assertEqual(closed.difference, Decimal(-10))
                with self.assertRaises(ShiftAccessError):
                    Session.approve([closed])
                with self.assertRaises(ShiftAccessError):
                    Session.open([closed])
                with self.assertRaises(CounterError):
                    self.open_shift(w)  # the window waits for approval
            with Transaction().set_user(w.supervisor.id):
                Session.approve([closed])
            closed = Session(closed.id)
            self.assertEqual(closed.state, 'closed')
            self.assertEqual(closed.approved_by, w.supervisor)
            transfer, = [t for t in closed.transfers
                if t.type == w.points[0].difference_transfer_type]
            self.assertEqual(transfer.amount, Decimal(-10))
            self.assertEqual(closed.end_amount, Decimal(290))

            with Transaction().set_user(w.cashier.id):
                second = self.open_shift(w, float_amount='290')
                small = second.close_shift({100: 2, 50: 1, 20: 1, 10: 1,
                        1: 1})  # 281: 9 short
            self.assertEqual(small.state, 'pending')
            with Transaction().set_user(w.supervisor.id):
                Session.open([small])
            with Transaction().set_user(w.cashier.id):
                small = Session(small.id).close_shift(
                    {100: 2, 50: 1, 20: 2})  # 290 exact
            self.assertEqual(small.state, 'closed')
            with Transaction().set_user(w.cashier.id):
                third = self.open_shift(w, float_amount='290')
                third = third.close_shift({100: 2, 50: 1, 20: 1, 10: 1,
                        5: 1, 1: 3})  # 288: 2 short, within tolerance
            self.assertEqual(third.state, 'closed')
            self.assertEqual(third.difference, Decimal(-2))

    @with_transaction()
    def test_cashier_sees_own_shift_only(self):
        "A cashier cannot see or use another window's shift"
        Session = Pool().get('sale.point.cash.session')
        Payment = Pool().get('sale.point.payment')
        w = build_windows()
        with set_company(w.company):
            mine = self.open_shift(w, w.points[0], w.cashier)
            theirs = self.open_shift(w, w.points[1], w.cashier2)
            with Transaction().set_user(w.cashier2.id):
                sell(w, theirs, adults(5))
            with Transaction().set_user(w.cashier.id):
                sell(w, mine, adults(6))
                with check_access():
                    self.assertEqual(Session.search([]), [mine])
                    self.assertEqual(
                        [p.shift for p in Payment.search([])], [mine])
                with self.assertRaises(ShiftAccessError):
                    Session.current_shift(w.points[1])
                with self.assertRaises(ShiftAccessError):
                    sell(w, theirs, adults(7))
                with self.assertRaises(ShiftAccessError):
                    theirs.close_shift({})
            with Transaction().set_user(w.supervisor.id), check_access():
                self.assertEqual(len(Session.search([])), 2)

    @with_transaction()
    def test_counter_sale_uses_the_claims(self):
        "Counter sales respect capacity and the per-ID rule"
        w = build_windows(capacity=2)
        with set_company(w.company), Transaction().set_user(w.cashier.id):
            session = self.open_shift(w)
            sell(w, session, adults(1))
            with self.assertRaises(BookingError) as cm, savepoint():
                sell(w, session, adults(1))
            self.assertEqual(cm.exception.code, 'id_limit')
            with self.assertRaises(BookingError) as cm, savepoint():
                sell(w, session, adults(2, 3))
            self.assertEqual(cm.exception.code, 'sold_out')
            with self.assertRaises(CounterError) as cm, savepoint():
                sell(w, session, adults(4), tendered=Decimal(50))
            self.assertEqual(cm.exception.code, 'amount_short')
            sell(w, session, adults(4))
            self.assertEqual(w.slot.__class__(w.slot.id).booked, 2)

    @with_transaction()
    def test_idempotent_sale(self):
        "The same sale key sells once"
        w = build_windows()
        with set_company(w.company), Transaction().set_user(w.cashier.id):
            session = self.open_shift(w)
            one = sell(w, session, adults(1), idempotency_key='k1')
            two = sell(w, session, adults(1), idempotency_key='k1')
            self.assertEqual(one['order'], two['order'])
            self.assertEqual(one['receipt'], two['receipt'])
            self.assertEqual(len(session.__class__(
                        session.id).shift_payments), 1)

    @with_transaction()
    def test_card_refund_goes_back_to_card(self):
        "A UnionPay sale is refunded to UnionPay with its trade number"
        from .. import window
        Order = Pool().get('scenic.order')
        w = build_windows()
        with set_company(w.company), Transaction().set_user(w.cashier.id):
            session = self.open_shift(w)
            with self.assertRaises(CounterError), savepoint():
                sell(w, session, adults(1), method=w.unionpay)
            tomorrow = create_slot(w.company,
                w.today + dt.timedelta(days=1), capacity=10, zone=w.zone)
            result = sell(w, session, adults(1), method=w.unionpay,
                trade_number='UP20261204000123', slot=tomorrow)
            order = Order(result['order_id'])
            # The ticket type's rule applies to counter refunds too.
            order, (refund,) = window.refund(session, order,
                now=dt.datetime.now(dt.timezone.utc))
            self.assertEqual(order.state, 'refunded')
            self.assertEqual(refund.method, w.unionpay)
            self.assertEqual(refund.amount, Decimal(-100))
            self.assertEqual(refund.trade_number, 'UP20261204000123')
            self.assertEqual(refund.original_payment.amount, Decimal(100))
            self.assertIsNone(refund.session)  # not cash: not the drawer
            report = Pool().get('sale.point.cash.session')(
                session.id).report('X')
            self.assertEqual(report['methods']['UnionPay']['refunds'],
                Decimal(100))
            self.assertEqual(report['expected'], Decimal(200))

    def wallet(self, provider):
        "Register `provider` as the window's WeChat Pay for one test."
        from scenic_ticket.providers import PROVIDERS, register

        from ..intent import RecordedProvider
        from trytond import backend

        from .. import intent
        previous = PROVIDERS.get('wechat')
        register(RecordedProvider(provider))
        if backend.name == 'sqlite':
            # SQLite's in-memory test database has one connection: the
            # intent's own transaction would commit the test's data. The
            # intent's own-transaction behaviour is tested on PostgreSQL
            # (test_race); here the intents are written inline.
            patcher = mock.patch.object(intent, '_in_own_transaction',
                lambda func: func())
            patcher.start()
            self.addCleanup(patcher.stop)
        self.addCleanup(lambda: register(previous) if previous
            else PROVIDERS.pop('wechat', None))

    @with_transaction()
    def test_wechat_sale_refunded_to_wechat(self):
        "A WeChat Pay sale is refunded to WeChat with its trade number"
        from .. import window
        from .test_wallets import MERCHANT, FakeWeChat
        Order = Pool().get('scenic.order')
        gateway = FakeWeChat(MERCHANT)
        self.wallet(gateway.adapter())
        w = build_windows()
        with set_company(w.company), Transaction().set_user(w.cashier.id):
            session = self.open_shift(w)
            tomorrow = create_slot(w.company,
                w.today + dt.timedelta(days=1), capacity=10, zone=w.zone)
            gateway.script = {'/v3/pay/transactions/codepay': [
                    (200, {'trade_state': 'SUCCESS',
                            'transaction_id': '4200000777'})]}
            result = sell(w, session, adults(1), method=w.wechat,
                payment_code='134567890123456789', slot=tomorrow)
            order = Order(result['order_id'])
            self.assertEqual(gateway.calls[0][2]['out_trade_no'],
                order.reference)
            gateway.script = {
                '/v3/pay/transactions/id/4200000777': [
                    (200, {'trade_state': 'SUCCESS',
                            'amount': {'total': 10000}})],
                '/v3/refund/domestic/refunds': [
                    (200, {'status': 'SUCCESS', 'refund_id': '50007'})]}
            order, (refund,) = window.refund(session, order,
                now=dt.datetime.now(dt.timezone.utc))
            self.assertEqual(order.state, 'refunded')
            method, path, body = gateway.calls[-1]
            self.assertEqual(path, '/v3/refund/domestic/refunds')
            self.assertEqual(body['transaction_id'], '4200000777')
            self.assertEqual(body['amount']['refund'], 10000)
            self.assertEqual(refund.method, w.wechat)
            self.assertEqual(refund.trade_number, '4200000777')
            self.assertEqual(refund.amount, Decimal(-100))
            wallet_refund, = [p for p in order.payments
                if p.kind == 'refund']
            self.assertEqual(wallet_refund.provider_reference, '50007')

    @with_transaction()
    def test_qr_notification_forged_and_replayed(self):
        "A forged notification pays nothing; a replayed one pays once"
        from scenic_ticket import reservation

        from .. import wallets, window
        from .test_wallets import MERCHANT, FakeWeChat, new_key
        Order = Pool().get('scenic.order')
        gateway = FakeWeChat(MERCHANT)
        self.wallet(gateway.adapter())
        w = build_windows()
        with set_company(w.company):
            order_id, _ = reservation.book(w.channel,
                window._request(w.slot.id, adults(1)), 'qr-sale-1')
            order = Order(order_id)
            self.assertEqual(order.state, 'reserved')
            forged = gateway.notification(order.reference, '4200000888',
                10000, key=new_key())
            with self.assertRaises(wallets.ForgedNotification):
                window.apply_notification('wechat', *forged)
            self.assertEqual(Order(order_id).state, 'reserved')
            genuine = gateway.notification(order.reference, '4200000888',
                10000)
            paid = window.apply_notification('wechat', *genuine)
            self.assertEqual(paid.state, 'paid')
            self.assertIsNone(window.apply_notification('wechat', *genuine))
            payment, = [p for p in Order(order_id).payments
                if p.kind == 'payment']
            self.assertEqual(payment.provider_reference, '4200000888')
            self.assertEqual(payment.amount, Decimal(100))
            self.assertEqual(gateway.calls, [])  # nothing charged

    @with_transaction()
    def test_print_decode_and_open_gate(self):
        "The printed QR decodes with the box's decoder and opens a gate"
        from scenic_iotbox.drivers import create
        from scenic_iotbox.drivers.printer import raster_images
        from scenic_iotbox.drivers.qr import ZxingDecoder

        from .. import window
        pool = Pool()
        Order = pool.get('scenic.order')
        SigningKey = pool.get('scenic.signing_key')
        Ticket = pool.get('scenic.ticket')
        w = build_windows()
        with set_company(w.company), Transaction().set_user(w.cashier.id):
            session = self.open_shift(w)
            result = sell(w, session, adults(1, 2))
            order = Order(result['order_id'])
            jobs = window.print_order(session, order, result['receipt'])
            self.assertEqual(len(jobs), 2)
            self.assertNotIn(person(1)['id_number'], repr(jobs))
            printer = create('printer', 'memory')
            for job in jobs:
                printer.print_job(job)
            keyring = SigningKey.keyring(w.company)
            decoder = ZxingDecoder()
            gate = gate_rules.GateInfo(id=1, zone=w.zone.id,
                direction='in')
            now = dt.datetime.now(dt.timezone.utc)
            opened = []
            for job, data, _ in printer.jobs:
                image, = raster_images(data)
                text, = decoder.decode(image)
                self.assertEqual(text, job['code'])
                verification = ticketcode.verify(text, keyring, now=now)
                ttype = gate_rules.TicketTypeInfo(
                    id=w.adult.id, zones={w.zone.id})
                decision = gate_rules.decide_ticket(
                    verification, ttype, gate, now=now)
                self.assertTrue(decision.opened, decision.message)
                opened.append(decision.ticket)
            self.assertEqual(sorted(opened), sorted(result['tickets']))
            # A reprint is counted on the ticket and attributed.
            window.print_order(session, order, reprint=True)
            self.assertEqual({t.print_count for t in order.tickets}, {2})
            self.assertEqual(session.report('X')['reprints'], 2)

    @with_transaction()
    def test_kiosk_pickup_prints_the_orders_tickets(self):
        "Pickup by ID card finds the visitor's orders, prints only those"
        from .. import window
        w = build_windows()
        with set_company(w.company), Transaction().set_user(w.cashier.id):
            session = self.open_shift(w)
            mine = sell(w, session, adults(1, 2))
            other = sell(w, session, adults(3))
            orders = window.find_by_id(w.company.id, person(2)['id_number'],
                w.today)
            self.assertEqual([o.reference for o in orders], [mine['order']])
            jobs = window.print_order(w.points[0], orders[0])
            self.assertEqual(sorted(j['ticket'] for j in jobs),
                sorted(mine['tickets']))
            self.assertFalse(set(other['tickets']) & {
                    j['ticket'] for j in jobs})
            self.assertEqual(window.find_by_id(
                    w.company.id, person(9)['id_number']), [])

    @with_transaction()
    def test_drawer_open_attributed(self):
        "Opening the drawer without a sale is recorded with the cashier"
        from .. import window
        Event = Pool().get('scenic.counter.event')
        w = build_windows()
        with set_company(w.company), Transaction().set_user(w.cashier.id):
            session = self.open_shift(w)
            window.open_drawer(session, note="change for 100")
            event, = Event.search([('kind', '=', 'drawer')])
            self.assertEqual(event.user, w.cashier)
            self.assertEqual(event.session, session)
            self.assertEqual(session.report('X')['drawer_opens'], 1)


    @with_transaction()
    def test_refund_outside_period_needs_supervisor(self):
        "Past the refund period a cashier's refund is refused; a "
        "supervisor's approval refunds it, recorded with the approval"
        from .. import window
        pool = Pool()
        Order = pool.get('scenic.order')
        Event = pool.get('scenic.counter.event')
        w = build_windows()
        with set_company(w.company):
            with Transaction().set_user(w.cashier.id):
                session = self.open_shift(w)
                order = Order(sell(w, session, adults(21))['order_id'])
                late = w.slot.aware(w.slot.start_time) + dt.timedelta(
                    hours=1)
                with self.assertRaises(BookingError), savepoint():
                    window.refund(session, order, now=late)
                with self.assertRaises(ShiftAccessError), savepoint():
                    window.refund(session, order, now=late, approved=True)
                self.assertEqual(Order(order.id).state, 'paid')
            with Transaction().set_user(w.supervisor.id):
                order, (refund,) = window.refund(session, Order(order.id),
                    now=late, approved=True)
            self.assertEqual(order.state, 'refunded')
            self.assertEqual((refund.method, refund.amount),
                (w.cash, Decimal(-100)))
            event, = Event.search([('kind', '=', 'refund')])
            self.assertEqual(event.user, w.supervisor)
            self.assertTrue(event.note)


    @with_transaction()
    def test_used_ticket_refund_needs_supervisor(self):
        "A used ticket's refund: a cashier is refused, approving or not; "
        "a supervisor's approval gives the money back by the original "
        "method and trade number, revokes the ticket for the gates, audited"
        from scenic_gate import sync
        from scenic_ticket.reservation import mark_orders_used
        from scenic_ticket.workflow import sql_transition
        from trytond.i18n import gettext
        from .. import window
        pool = Pool()
        Order = pool.get('scenic.order')
        Ticket = pool.get('scenic.ticket')
        Event = pool.get('scenic.counter.event')
        w = build_windows()
        with set_company(w.company):
            with Transaction().set_user(w.cashier.id):
                session = self.open_shift(w)
                order = Order(sell(w, session, adults(23),
                        method=w.unionpay,
                        trade_number='UP20261204000456')['order_id'])
                ticket, = order.tickets
                table = Ticket.__table__()
                # the gates' path: the ticket admitted, its order used
                sql_transition(Ticket, table, 'used', table.id == ticket.id)
                mark_orders_used([order.id])
                self.assertEqual(Order(order.id).state, 'used')
                late = w.slot.aware(w.slot.start_time) + dt.timedelta(
                    hours=1)
                with self.assertRaises(BookingError) as refused, \
                        savepoint():
                    window.refund(session, Order(order.id), now=late)
                self.assertEqual(refused.exception.code, 'not_cancellable')
                self.assertIn("used", refused.exception.message)
                with self.assertRaises(ShiftAccessError), savepoint():
                    window.refund(session, Order(order.id), now=late,
                        approved=True)
                self.assertEqual(Ticket(ticket.id).state, 'used')
            # the sao button (back office, no approval) refuses it too
            with self.assertRaises(BookingError), savepoint():
                Order.cancel([Order(order.id)])
            with Transaction().set_user(w.supervisor.id):
                order, (refund,) = window.refund(session, Order(order.id),
                    now=late, approved=True)
            self.assertEqual(order.state, 'refunded')
            self.assertEqual((refund.method, refund.amount,
                    refund.trade_number),
                (w.unionpay, Decimal(-100), 'UP20261204000456'))
            self.assertEqual(refund.original_payment.amount, Decimal(100))
            ticket = Ticket(ticket.id)
            self.assertEqual(ticket.state, 'revoked')
            self.assertIsNotNone(ticket.revoked_at)
            event, = Event.search([('kind', '=', 'refund')])
            self.assertEqual(event.user, w.supervisor)
            self.assertEqual(event.note,
                gettext('scenic_counter.msg_refund_used_approved'))
            # As the boxes read it: on PostgreSQL the lists are JSON the
            # database rendered (sync.RawJSON).
            answer = json.loads(sync.dumps(sync.snapshot(w.company, None,
                Transaction().database.name, now=late)))
            self.assertIn(ticket.id, [r['ticket'] for r in answer['revoked']])


del ModuleTestCase
