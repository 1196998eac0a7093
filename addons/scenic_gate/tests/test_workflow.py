"""The declared state machines of cards and boxes, and the order and
ticket hook seen from the gates (tickets used, orders partly used/used).
"""
import datetime as dt
import itertools
import unittest

from scenic_ticket.exceptions import StateError
from scenic_ticket.tests.test_workflow import force_state, recording
from scenic_ticket.tests.tools import configure_pii_key

from trytond.modules.company.tests import set_company
from trytond.pool import Pool
from trytond.tests.test_tryton import activate_module, with_transaction

from ..card import CARD_STATES, CARD_TRANSITIONS
from ..exceptions import CardStateError
from ..gate import BOX_TRANSITIONS
from ..upload import parse_scans, upload
from .tools import (
    area_time, build_area, issue_card, new_box, new_uid, scan, sell)


class GateWorkflowTestCase(unittest.TestCase):
    "Test the card and box state machines and the hook at the gates"

    @classmethod
    def setUpClass(cls):
        configure_pii_key()
        activate_module('scenic_gate')

    @with_transaction()
    def test_card_transitions(self):
        "Each declared card move works by its button; every other is refused"
        pool = Pool()
        Card = pool.get('scenic.card')
        self.assertEqual(Card._transitions, CARD_TRANSITIONS)
        area = build_area()
        moves = {
            'suspended': lambda card: Card.suspend([card]),
            'active': lambda card: Card.reactivate([card]),
            'lost': lambda card: Card.report_lost([card]),
            }
        states = [s for s, _ in CARD_STATES]
        with set_company(pool.get('company.company')(area.company)):
            card_id = issue_card(area, 'annual').id
            for from_state, to_state in itertools.product(states, states):
                if from_state == to_state:
                    continue
                with self.subTest(move=(from_state, to_state)):
                    force_state(Card, card_id, from_state)
                    card = Card(card_id)
                    if to_state == 'replaced':
                        if (from_state, to_state) in CARD_TRANSITIONS:
                            new = card.replace_with(new_uid())
                            self.assertEqual(Card(card_id).state, 'replaced')
                            self.assertEqual(new.state, 'active')
                        else:
                            with self.assertRaises(CardStateError):
                                card.replace_with(new_uid())
                        continue
                    if (from_state, to_state) in CARD_TRANSITIONS:
                        moves[to_state](card)
                        card = Card(card_id)
                        self.assertEqual(card.state, to_state)
                        self.assertTrue(card.state_changed_at)
                    else:
                        with self.assertRaises(CardStateError):
                            moves[to_state](card)
                        self.assertEqual(Card(card_id).state, from_state)

    @with_transaction()
    def test_box_transitions(self):
        "Boxes enrol from draft or enrolled and are revoked once"
        pool = Pool()
        Box = pool.get('scenic.gate.box')
        self.assertEqual(Box._transitions, BOX_TRANSITIONS)
        self.assertEqual(Box.sources('enrolled'), ['draft', 'enrolled'])
        area = build_area()
        box_id, token = new_box(area)
        box, secret = Box.enrol(token)
        self.assertEqual(box.state, 'enrolled')
        # Re-enrolment (a new disk) is enrolled -> enrolled.
        token, _ = Box(box_id).new_enrolment_token()
        self.assertTrue(Box.enrol(token)[1])
        token, _ = Box(box_id).new_enrolment_token()
        Box.revoke([Box(box_id)])
        self.assertEqual(Box(box_id).state, 'revoked')
        # A revoked box enrols no more, even with a token made before.
        self.assertEqual(Box.enrol(token), (Box(box_id), None))
        with self.assertRaises(StateError):
            Box.revoke([Box(box_id)])
        # Undeclared: revoked -> enrolled by the SQL path is refused.
        force_state(Box, box_id, 'draft')
        token, _ = Box(box_id).new_enrolment_token()
        force_state(Box, box_id, 'revoked')
        self.assertEqual(Box.enrol(token), (Box(box_id), None))
        self.assertEqual(Box(box_id).state, 'revoked')

    @with_transaction()
    def test_hook_sees_used(self):
        "Scans uploaded by a box tell the hook which tickets and orders moved"
        pool = Pool()
        Company = pool.get('company.company')
        Box = pool.get('scenic.gate.box')
        Order = pool.get('scenic.order')
        Ticket = pool.get('scenic.ticket')
        area = build_area()
        company = Company(area.company)
        box_id, token = new_box(area)
        Box.enrol(token)
        noon = area_time(area)
        family = sell(area, quantity=2)
        single, = sell(area)
        family_order = Ticket(family[0]).order.id
        single_order = Ticket(single).order.id

        def send(*scans):
            with set_company(company):
                return upload(box_id, company,
                    parse_scans({'scans': list(scans)}))

        with recording(Order, Ticket) as calls:
            send(scan(area.gate_in, family[0], at=noon),
                scan(area.gate_in, single, at=noon))
        self.assertEqual(sorted(calls), sorted([
                    ('scenic.ticket', 'used', sorted([family[0], single])),
                    ('scenic.order', 'used', [single_order]),
                    ('scenic.order', 'partly_used', [family_order]),
                    ]))
        with recording(Order, Ticket) as calls:
            send(scan(area.gate_in, family[1],
                    at=noon + dt.timedelta(minutes=1)))
        self.assertEqual(calls, [
                ('scenic.ticket', 'used', [family[1]]),
                ('scenic.order', 'used', [family_order]),
                ])
