"""The declared state machines of orders and tickets, and the hook.

Every declared transition is walked through the set-based path
(workflow.sql_transition) and every undeclared one is refused; the
transition methods refuse what is not declared; the hook sees the ids.
"""
import datetime as dt
import itertools
import unittest
import uuid
from contextlib import contextmanager
from unittest import mock

from scenic_common.idnumber import RESIDENT_ID, make_resident_id

from trytond.modules.company.tests import set_company
from trytond.pool import Pool
from trytond.tests.test_tryton import activate_module, with_transaction
from trytond.transaction import Transaction

from .. import reservation
from ..exceptions import StateError
from ..order import (
    ORDER_STATES, ORDER_TRANSITIONS, TICKET_STATES, TICKET_TRANSITIONS)
from ..slot import area_timezone
from ..workflow import sql_transition
from .tools import (
    configure_pii_key, create_area, create_slot, create_ticket_type,
    create_zone)

_people = itertools.count(1)


def book_order(quantity=2):
    "An area with a slot tomorrow and a held order of real-name tickets."
    pool = Pool()
    Channel = pool.get('scenic.channel')
    company = create_area()
    with set_company(company):
        zone = create_zone(company)
        create_ticket_type(company, 'ADULT', '100',
            zones=[('add', [zone.id])])
        channel, = Channel.create([{
                    'company': company.id, 'name': "Web", 'code': 'web',
                    'kind': 'online'}])
        day = dt.datetime.now(area_timezone(company)).date() + dt.timedelta(
            days=1)
        slot = create_slot(company, day, (10, 0), (10, 30))
        visitors = [reservation.Visitor(
                name=f"Visitor {i}", id_type=RESIDENT_ID,
                id_number=make_resident_id('110105', dt.date(1980, 1, 1),
                    next(_people)), field=f'v{i}')
            for i in range(quantity)]
        request = reservation.BookingRequest(slot=slot.id, items=[
                reservation.Item(ticket_type='ADULT', visitors=visitors)],
            contact_name="Li Lei", contact_phone='13800138000')
        order_id, _ = reservation.book(channel, request, str(uuid.uuid4()))
    return order_id


def force_state(Model, record_id, state):
    "Put a record in a state as a test fixture, bypassing the table."
    table = Model.__table__()
    cursor = Transaction().connection.cursor()
    cursor.execute(*table.update([table.state], [state],
            where=table.id == record_id))
    Transaction().cache.clear()


@contextmanager
def recording(*Models):
    """Record the hook's calls on the models: [(model, state, ids)]. The
    original hook still runs (as a module's extension calling super())."""
    calls = []
    patches = []
    for Model in Models:
        original = Model.on_state_change.__func__

        def hook(cls, to_state, ids, original=original):
            calls.append((cls.__name__, to_state, list(ids)))
            return original(cls, to_state, ids)
        patches.append(mock.patch.object(Model, 'on_state_change',
                classmethod(hook)))
    for patch in patches:
        patch.start()
    try:
        yield calls
    finally:
        for patch in patches:
            patch.stop()


class WorkflowTestCase(unittest.TestCase):
    "Test the order and ticket state machines"

    @classmethod
    def setUpClass(cls):
        configure_pii_key()
        activate_module('scenic_ticket')

    def walk(self, Model, states, transitions, record_id):
        table = Model.__table__()
        states = [s for s, _ in states]
        declared = 0
        for from_state, to_state in itertools.product(states, states):
            if from_state == to_state:
                continue
            with self.subTest(model=Model.__name__, move=(from_state,
                        to_state)):
                force_state(Model, record_id, from_state)
                with recording(Model) as calls:
                    moved = sql_transition(Model, table, to_state,
                        table.id == record_id)
                if (from_state, to_state) in transitions:
                    declared += 1
                    self.assertEqual(moved, [record_id])
                    self.assertEqual(Model(record_id).state, to_state)
                    self.assertEqual(calls,
                        [(Model.__name__, to_state, [record_id])])
                else:
                    self.assertEqual(moved, [])
                    self.assertEqual(Model(record_id).state, from_state)
                    self.assertEqual(calls, [])
        self.assertEqual(declared, len(transitions))

    @with_transaction()
    def test_order_transitions(self):
        "Every declared order transition moves; every other is refused"
        Order = Pool().get('scenic.order')
        self.assertEqual(len(ORDER_STATES), 8)
        self.assertEqual(Order._transitions, ORDER_TRANSITIONS)
        self.walk(Order, ORDER_STATES, ORDER_TRANSITIONS, book_order())

    @with_transaction()
    def test_ticket_transitions(self):
        "Every declared ticket transition moves; every other is refused"
        pool = Pool()
        Order = pool.get('scenic.order')
        Ticket = pool.get('scenic.ticket')
        self.assertEqual(Ticket._transitions, TICKET_TRANSITIONS)
        ticket = Order(book_order(1)).tickets[0]
        self.walk(Ticket, TICKET_STATES, TICKET_TRANSITIONS, ticket.id)

    @with_transaction()
    def test_sources_are_the_table(self):
        "The SQL paths' allowed states are read from the declared table"
        pool = Pool()
        Order = pool.get('scenic.order')
        Ticket = pool.get('scenic.ticket')
        self.assertEqual(Order.sources('paid'), ['reserved'])
        self.assertEqual(Order.sources('used'), ['paid', 'partly_used'])
        self.assertEqual(Order.sources('expired'),
            ['paid', 'partly_used', 'reserved'])
        self.assertEqual(Ticket.sources('expired'), ['valid'])
        self.assertEqual(Ticket.sources('reserved'), [])

    @with_transaction()
    def test_transition_methods(self):
        "Order.expire, Order.close and Ticket.expire refuse undeclared moves"
        pool = Pool()
        Order = pool.get('scenic.order')
        Ticket = pool.get('scenic.ticket')
        TimeSlot = pool.get('scenic.time_slot')
        order = Order(book_order(2))
        first, second = sorted(order.tickets, key=lambda t: t.id)
        with self.assertRaises(StateError):
            Ticket.expire([first])  # a held ticket was never valid
        with self.assertRaises(StateError):
            Order.close([order])
        reservation.pay(order.id, 'simulated', order.total)
        with recording(Order, Ticket) as calls:
            Ticket.expire([Ticket(first.id)])
            Order.expire([Order(order.id)])
        self.assertEqual(
            [Ticket(first.id).state, Ticket(second.id).state],
            ['expired', 'expired'])
        order = Order(order.id)
        self.assertEqual(order.state, 'expired')
        self.assertTrue(order.closed_at)
        self.assertEqual(calls, [
                ('scenic.ticket', 'expired', [first.id]),
                ('scenic.ticket', 'expired', [second.id]),
                ('scenic.order', 'expired', [order.id]),
                ])
        with self.assertRaises(StateError):
            Order.close([order])
        with self.assertRaises(StateError):
            Ticket.expire([Ticket(first.id)])

        # A hold expired by the ORM gives its places back.
        held = Order(book_order(1))
        Order.expire([held])
        held = Order(held.id)
        self.assertEqual(held.state, 'expired')
        self.assertEqual([t.state for t in held.tickets], ['cancelled'])
        self.assertEqual(TimeSlot(held.slot.id).booked, 0)

        done = Order(book_order(1))
        reservation.pay(done.id, 'simulated', done.total)
        force_state(Order, done.id, 'used')
        with recording(Order) as calls:
            Order.close([Order(done.id)])
        self.assertEqual(Order(done.id).state, 'done')
        self.assertEqual(calls, [('scenic.order', 'done', [done.id])])

    @with_transaction()
    def test_hook_on_booking_paths(self):
        "The hook sees paid, cancelled, refunded and expired orders' ids"
        pool = Pool()
        Order = pool.get('scenic.order')
        Ticket = pool.get('scenic.ticket')
        paid, held, expiring = book_order(2), book_order(1), book_order(1)
        paid_tickets = sorted(t.id for t in Order(paid).tickets)
        with recording(Order, Ticket) as calls:
            reservation.pay(paid, 'simulated', Order(paid).total)
        self.assertEqual(calls, [
                ('scenic.ticket', 'valid', paid_tickets),
                ('scenic.order', 'paid', [paid]),
                ])
        with recording(Order, Ticket) as calls:
            reservation.cancel(paid, by_back_office=True)
            reservation.cancel(held)
        self.assertEqual(calls, [
                ('scenic.ticket', 'revoked', paid_tickets),
                ('scenic.order', 'refunded', [paid]),
                ('scenic.ticket', 'cancelled',
                    [t.id for t in Order(held).tickets]),
                ('scenic.order', 'cancelled', [held]),
                ])
        later = dt.datetime.now(dt.timezone.utc) + dt.timedelta(hours=2)
        with recording(Order) as calls:
            self.assertEqual(reservation.expire_holds(now=later), 1)
        self.assertEqual(calls, [('scenic.order', 'expired', [expiring])])

    @with_transaction()
    def test_hook_failure_rolls_back(self):
        "An exception in the hook stops the state change's caller"
        Order = Pool().get('scenic.order')
        order = Order(book_order(1))

        def refuse(cls, to_state, ids):
            raise RuntimeError("finance could not post")
        with mock.patch.object(Order, 'on_state_change',
                classmethod(refuse)):
            with self.assertRaises(RuntimeError):
                reservation.pay(order.id, 'simulated', order.total)

