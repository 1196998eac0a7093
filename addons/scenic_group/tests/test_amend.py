"""Amending group orders before arrival: visitors added and removed, the
persons of a group ticket changed, capacity, allotments and per-ID limits
claimed and given back, the line repriced at the contract's net price and
the partner's account adjusted; refused after arrival, past the contract's
cut-off and beyond the partner's allotment or deposit, writing nothing."""
import datetime as dt
import unittest
from decimal import Decimal

from scenic_ticket.tests.tools import (
    configure_pii_key, create_area, create_slot, create_ticket_type,
    create_zone, savepoint)

from trytond.modules.company.tests import set_company
from trytond.pool import Pool
from trytond.tests.test_tryton import activate_module, with_transaction
from trytond.transaction import Transaction

from ..amend import amend, cutoff
from ..exceptions import AmendError, ImportError_
from .test_group import IDS, csv_bytes
from .tools import create_partner

D = Decimal


class AmendTestCase(unittest.TestCase):
    "Test amending group orders"

    @classmethod
    def setUpClass(cls):
        configure_pii_key()
        activate_module('scenic_group')

    def setup_area(self, free_sale=True):
        company = create_area()
        zone = create_zone(company, daily_max=10000, instant_max=5000)
        adult = create_ticket_type(company, 'ADULT', '120',
            zones=[('add', [zone.id])])
        group = create_ticket_type(company, 'GROUP10', '1000',
            category='group', persons=10, real_name=False, id_limit=0)
        partner, contract = create_partner(company, 'travel',
            term='deposit', prices=[(adult, '80'), (group, '700')],
            free_sale=free_sale)
        date = dt.date.today() + dt.timedelta(days=3)
        slot = create_slot(company, date, (9, 0), (9, 30), capacity=100)
        Pool().get('scenic.group.entry').record(
            partner, 'deposit', D('-3000'))
        return company, partner, contract, adult, group, slot

    def book(self, partner, slot, ttype, ids=None, persons=None):
        Wizard = Pool().get('scenic.group.order.create', type='wizard')
        session_id, _, _ = Wizard.create()
        wizard = Wizard(session_id)
        wizard.start.partner = partner
        wizard.start.slot = slot
        wizard.start.ticket_type = ttype
        wizard.start.persons = persons
        wizard.start.leader_name = "Guide Chen"
        wizard.start.leader_phone = '13600136000'
        if ids:
            wizard.start.visitor_file = csv_bytes([['name', 'id_number']]
                + [[f'V{i}', i] for i in ids])
            wizard.start.visitor_file_name = 'g.csv'
        wizard.transition_book()
        return Pool().get('scenic.order').search(
            [], order=[('id', 'DESC')], limit=1)[0]

    def amend_wizard(self, order):
        "The wizard as the order's form action starts it: its defaults."
        Wizard = Pool().get('scenic.group.order.amend', type='wizard')
        session_id, _, _ = Wizard.create()
        with Transaction().set_context(active_model='scenic.order',
                active_id=order.id, active_ids=[order.id]):
            wizard = Wizard(session_id)
            values = wizard.default_start(None)
        # What the client's form holds from the defaults.
        wizard.start.order = order
        wizard.start.line = Pool().get('scenic.order.line')(values['line'])
        wizard.start.real_name = values['real_name']
        wizard.start.persons = values['persons']
        return wizard, values

    def state(self, order):
        "What the amendment changes, as it is now."
        pool = Pool()
        order = pool.get('scenic.order')(order.id)
        line, = order.lines
        live = [t for t in order.tickets if t.state == 'valid']
        return {
            'total': order.total,
            'line': (line.quantity, line.persons, line.amount),
            'live': len(live),
            'signed': all(t.code for t in live),
            'booked': pool.get('scenic.time_slot')(order.slot.id).booked,
            'balance': pool.get('scenic.group.entry').balance(
                order.group_partner),
            'paid': sum((p.amount if p.kind == 'payment' else -p.amount
                    for p in order.payments), D(0)),
            }

    @with_transaction()
    def test_add_and_remove_visitors(self):
        "Visitors are added from a list and removed, the account follows"
        pool = Pool()
        Ticket = pool.get('scenic.ticket')
        company, partner, _, adult, _, slot = self.setup_area()
        with set_company(company):
            order = self.book(partner, slot, adult, ids=IDS[:4])
            self.assertEqual(self.state(order)['balance'], D('-2680'))
            wizard, values = self.amend_wizard(order)
            self.assertEqual((values['line'], values['real_name']),
                (order.lines[0].id, True))
            # An ID already in the group is refused row by row.
            wizard.start.visitor_file = csv_bytes([['name', 'id_number'],
                    ['New', IDS[4]], ['Again', IDS[0]]])
            wizard.start.visitor_file_name = 'add.csv'
            wizard.start.remove = []
            with self.assertRaisesRegex(ImportError_, 'Row 3'):
                wizard.transition_amend()
            removed = sorted(order.tickets, key=lambda t: t.id)[0]
            wizard.start.visitor_file = csv_bytes([['name', 'id_number'],
                    ['New', IDS[4]], ['Newer', IDS[5]]])
            wizard.start.remove = [removed]
            self.assertEqual(wizard.transition_check(), 'start')
            self.assertIn('80', wizard.start.checked)
            self.assertEqual(wizard.transition_amend(), 'end')
            state = self.state(order)
            self.assertEqual(state['total'], D('400'))
            self.assertEqual(state['line'], (5, 5, D('400')))
            self.assertEqual((state['live'], state['signed']), (5, True))
            self.assertEqual(state['booked'], 5)
            self.assertEqual(state['balance'], D('-2600'))
            self.assertEqual(state['paid'], D('400'))
            self.assertEqual(Ticket(removed.id).state, 'revoked')
            # The removed visitor's ID is free for that day again.
            order2 = self.book(partner, slot, adult, ids=[IDS[0]])
            self.assertEqual(order2.state, 'paid')

    @with_transaction()
    def test_group_ticket_persons(self):
        "A group ticket's persons go up and down in whole tickets"
        company, partner, _, _, group, slot = self.setup_area()
        with set_company(company):
            order = self.book(partner, slot, group, persons=20)
            line, = order.lines
            amend(order, line, persons=30)
            state = self.state(order)
            self.assertEqual(state['line'], (3, 30, D('2100')))
            self.assertEqual((state['live'], state['signed']), (3, True))
            self.assertEqual(state['booked'], 30)
            self.assertEqual(state['balance'], D('-900'))
            amend(order, line, persons=10)
            state = self.state(order)
            self.assertEqual(state['line'], (1, 10, D('700')))
            self.assertEqual((state['total'], state['paid']),
                (D('700'), D('700')))
            self.assertEqual(state['booked'], 10)
            self.assertEqual(state['balance'], D('-2300'))
            for persons, message in [(15, 'whole tickets'),
                    (10, 'changes nothing'), (0, 'cancel the order')]:
                with self.assertRaisesRegex(AmendError, message):
                    amend(order, line, persons=persons)
            with self.assertRaisesRegex(AmendError, 'is not real-name'):
                amend(order, line, add=[object()])

    @with_transaction()
    def test_slot_wholly_allotted(self):
        "A slot wholly allotted to the partner is booked and amended by it"
        pool = Pool()
        Allotment = pool.get('scenic.group.allotment')
        company, partner, _, _, group, slot = self.setup_area(
            free_sale=False)
        with set_company(company):
            allotment = Allotment.allot(partner, slot, 100,
                release_at=dt.datetime(2099, 1, 1))
            order = self.book(partner, slot, group, persons=20)
            line, = order.lines
            amend(order, line, persons=30)
            self.assertEqual(Allotment(allotment.id).sold, 30)
            self.assertEqual(self.state(order)['booked'], 100)
            # enough deposit: the allotment is what refuses
            pool.get('scenic.group.entry').record(
                partner, 'deposit', D('-6000'))
            before = self.state(order)
            with self.assertRaisesRegex(Exception, 'allotment'), \
                    savepoint():
                amend(order, line, persons=110)
            self.assertEqual(self.state(order), before)
            self.assertEqual(Allotment(allotment.id).sold, 30)

    @with_transaction()
    def test_refused_after_arrival_and_cutoff(self):
        "No amendment past the contract's cut-off or once the group came"
        pool = Pool()
        Ticket = pool.get('scenic.ticket')
        company, partner, contract, _, group, slot = self.setup_area()
        with set_company(company):
            order = self.book(partner, slot, group, persons=20)
            line, = order.lines
            end = cutoff(order, contract)
            self.assertEqual(end, slot.aware(slot.start_time)
                - dt.timedelta(hours=contract.amend_hours))
            with self.assertRaisesRegex(AmendError, 'until 2 hours'):
                amend(order, line, persons=30, now=end)
            amend(order, line, persons=30,
                now=end - dt.timedelta(minutes=1))
            Ticket.write([order.tickets[0]], {'state': 'used'})
            with self.assertRaisesRegex(AmendError, 'has arrived'):
                amend(order, line, persons=40)
            self.assertEqual(self.state(order)['line'][1], 30)

    @with_transaction()
    def test_refused_beyond_allotment_and_deposit(self):
        "Beyond the slot's allotment or the deposit nothing is written"
        pool = Pool()
        Allotment = pool.get('scenic.group.allotment')
        Entry = pool.get('scenic.group.entry')
        company, partner, _, _, group, slot = self.setup_area(
            free_sale=False)
        with set_company(company):
            allotment = Allotment.allot(partner, slot, 30,
                release_at=dt.datetime(2099, 1, 1))
            order = self.book(partner, slot, group, persons=20)
            line, = order.lines
            before = self.state(order)
            self.assertEqual(before['booked'], 30)
            with self.assertRaisesRegex(Exception, 'allotment'), \
                    savepoint():
                amend(order, line, persons=40)
            self.assertEqual(self.state(order), before)
            self.assertEqual(Allotment(allotment.id).sold, 20)
            amend(order, line, persons=10)
            # Back in the allotment, held for the partner.
            self.assertEqual(Allotment(allotment.id).sold, 10)
            self.assertEqual(self.state(order)['booked'], 30)
            order = pool.get('scenic.order')(order.id)
            self.assertEqual(order.allotted_persons, 10)
            # Take the deposit away: adding is refused, nothing written.
            Entry.record(partner, 'payment', -Entry.balance(partner))
            before = self.state(order)
            with self.assertRaisesRegex(Exception, 'deposit'), \
                    savepoint():
                amend(order, line, persons=20)
            self.assertEqual(self.state(order), before)
            self.assertEqual(Allotment(allotment.id).sold, 10)
