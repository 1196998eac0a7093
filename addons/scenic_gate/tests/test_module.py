import datetime as dt

from scenic_common import gate as engine
from scenic_ticket import reservation
from scenic_ticket.tests.tools import (
    ViewPYSONTestMixin, configure_pii_key, create_user, savepoint)

from trytond.exceptions import UserError
from trytond.model.exceptions import AccessError, ValidationError
from trytond.model.modelview import AccessButtonError
from trytond.modules.company.tests import CompanyTestMixin, set_company
from trytond.pool import Pool
from trytond.tests.test_tryton import ModuleTestCase, with_transaction
from trytond.transaction import Transaction, check_access

from ..scan import warning_level
from ..upload import parse_scans, upload
from .tools import (
    SHANGHAI, area_time, build_area, issue_card, new_box, refund, scan, sell,
    slot_day)


class ScenicGateTestCase(
        ViewPYSONTestMixin, CompanyTestMixin, ModuleTestCase):
    "Test scenic_gate module"
    module = 'scenic_gate'

    @classmethod
    def setUpClass(cls):
        configure_pii_key()
        super().setUpClass()

    # --- gates and rules ---------------------------------------------------

    @with_transaction()
    def test_gate_and_rule_validation(self):
        "Gate codes are unique per area, lanes positive, rules sensible"
        pool = Pool()
        Gate = pool.get('scenic.gate')
        Rule = pool.get('scenic.gate.rule')
        area = build_area()
        with set_company(Pool().get('company.company')(area.company)):
            # The first gate gave the area its default rule.
            default, = Rule.search([('company', '=', area.company)])
            self.assertTrue(default.default)
            self.assertEqual(
                (default.early_minutes, default.exit_counts), (30, True))
            values = {'company': area.company, 'code': 'EAST',
                'name': "East", 'zone': area.zone}
            with self.assertRaisesRegex(ValidationError, 'Lanes'), \
                    savepoint():
                Gate.create([dict(values, lanes=0)])
            with self.assertRaisesRegex(ValidationError, 'Late Minutes'), \
                    savepoint():
                Rule.create([{'company': area.company, 'name': "Bad",
                            'late_minutes': -1}])
            Gate.create([values])
            # A gate boxes may hold cannot be deleted, only closed.
            box_id, token = new_box(area)
            Box = pool.get('scenic.gate.box')
            Box.enrol(token)
            with self.assertRaisesRegex(UserError, 'Deactivate'), \
                    savepoint():
                Gate.delete(Gate.search([('code', '=', 'EAST')]))

    # --- cards -------------------------------------------------------------

    @with_transaction()
    def test_card_lifecycle(self):
        "Issue, suspend, reactivate, report lost, replace"
        pool = Pool()
        Card = pool.get('scenic.card')
        Usage = pool.get('scenic.ticket.usage')
        area = build_area()
        with set_company(pool.get('company.company')(area.company)):
            issued = issue_card(area, 'count', remaining=8,
                binding_method='photo', binding_photo=b'\xff\xd8\xff photo',
                binding_template='tpl-1')
            card = Card(issued.id)
            self.assertEqual(card.state, 'active')
            self.assertEqual(card.holder_hash, card.holder.id_hash)
            Card.suspend([card])
            self.assertEqual(card.state, 'suspended')
            with self.assertRaises(UserError), savepoint():
                Card.suspend([card])
            card = Card(card.id)  # read again after the rollback
            Card.reactivate([card])
            self.assertEqual(card.state, 'active')
            Card.report_lost([card])
            self.assertEqual(card.state, 'lost')
            Usage.create([{'company': area.company, 'card': card.id,
                        'entries': 2, 'exits': 1}])

            CardReplace = pool.get('scenic.card.replace', type='wizard')
            session_id, _, _ = CardReplace.create()
            with Transaction().set_context(active_model='scenic.card',
                    active_id=card.id, active_ids=[card.id]):
                wizard = CardReplace(session_id)
                defaults = wizard.default_start([])
                self.assertEqual(defaults['reason'], 'lost')
                wizard.start.number = '04:de:ad:be:ef'
                wizard.start.reason = defaults['reason']
                self.assertEqual(wizard.transition_replace(), 'end')
            card = Card(card.id)
            new = card.replaced_by
            self.assertEqual(card.state, 'lost')
            self.assertEqual(card.replaced_by, new)
            self.assertEqual(new.number, '04DEADBEEF')
            self.assertEqual(new.state, 'active')
            self.assertEqual(new.holder, card.holder)
            self.assertEqual(new.remaining, 8)
            self.assertEqual(new.valid_until, card.valid_until)
            self.assertEqual(new.binding_method, 'photo')
            self.assertEqual(bytes(new.binding_photo), b'\xff\xd8\xff photo')
            self.assertEqual(new.binding_template, 'tpl-1')
            usage, = Usage.search([('card', '=', new.id)])
            self.assertEqual(usage.entries, 2)
            # A replacement needs another UID; a replaced card stays so.
            with self.assertRaises(UserError), savepoint():
                new.replace_with(new.number)
            new = Card(new.id)
            replaced = new.replace_with('04CAFE0001', 'damaged')
            self.assertEqual(new.state, 'replaced')
            with self.assertRaises(UserError), savepoint():
                Card.reactivate([new])
            new, card = Card(new.id), Card(card.id)
            self.assertEqual(replaced.remaining, 8)

            # At the gate: the old UIDs are refused, the new one admits.
            gate = engine.GateInfo(id=area.gate_in)
            ttype = engine.TicketTypeInfo(id=area.count, entries=10)
            now = dt.datetime.now(SHANGHAI)

            def decide(record):
                return engine.decide_card(engine.CardInfo(
                        uid=record.number, id=record.id,
                        ticket_type=area.count, state=record.state,
                        remaining=record.remaining), ttype, gate, now=now)
            self.assertEqual(decide(card).reason, 'card_lost')
            self.assertEqual(decide(new).reason, 'card_replaced')
            self.assertEqual(decide(replaced).reason, 'ok')

    # Unique constraints are the database's: on SQLite a violation ends
    # the test's transaction, so each has a test of its own.

    @with_transaction()
    def test_gate_code_unique(self):
        "Gate codes are unique in an area"
        Gate = Pool().get('scenic.gate')
        area = build_area()
        with self.assertRaisesRegex(ValidationError, 'unique'):
            Gate.create([{'company': area.company, 'code': 'MAIN-IN',
                        'name': "Again", 'zone': area.zone}])

    @with_transaction()
    def test_rule_default_unique(self):
        "An area has one default rule"
        Rule = Pool().get('scenic.gate.rule')
        area = build_area()
        with self.assertRaisesRegex(ValidationError, 'default'):
            Rule.create([{'company': area.company, 'name': "Other",
                        'default': True}])

    @with_transaction()
    def test_card_uid_unique(self):
        "One active card per UID in an area; inactive ones do not count"
        Card = Pool().get('scenic.card')
        area = build_area()
        card = issue_card(area)
        Card.report_lost([Card(card.id)])
        again = issue_card(area, number=card.number)
        self.assertEqual(Card(again.id).state, 'active')
        with self.assertRaisesRegex(ValidationError, 'UID'):
            issue_card(area, number=card.number.lower())

    @with_transaction()
    def test_card_validation(self):
        "UIDs, dates, entries left and the card type are checked"
        area = build_area()
        pool = Pool()
        with set_company(pool.get('company.company')(area.company)):
            for values, field in [
                    ({'number': 'XYZ'}, 'UID'),
                    ({'number': '04A1B'}, 'UID'),
                    ({'remaining': None, 'type_name': 'count'},
                        'Entries Left'),
                    ({'valid_until': dt.datetime(2000, 1, 1)},
                        'Valid Until'),
                    ]:
                type_name = values.pop('type_name', 'annual')
                with self.assertRaisesRegex(ValidationError, field), \
                        savepoint():
                    issue_card(area, type_name, **values)
            with self.assertRaises(ValidationError), savepoint():
                issue_card(area, 'adult')  # not a card type

    @with_transaction()
    def test_card_photo_access(self):
        "Binding photos are for supervisors, gate staff and personal data"
        pool = Pool()
        Card = pool.get('scenic.card')
        area = build_area()
        issued = issue_card(area, binding_method='photo',
            binding_photo=b'\xff\xd8\xff')
        cashier = create_user(area.company, 'cashier')
        gate = create_user(area.company, 'gate')
        context = {'company': area.company, 'companies': [area.company]}
        with Transaction().set_context(context):
            with Transaction().set_user(cashier.id), check_access():
                self.assertEqual(Card(issued.id).state, 'active')
                with self.assertRaises(AccessError):
                    Card.read([issued.id], ['binding_photo'])
                Card.suspend([Card(issued.id)])
            with Transaction().set_user(gate.id), check_access():
                self.assertEqual(Card.read([issued.id], ['binding_photo'])[0][
                        'binding_photo'], b'\xff\xd8\xff')
                with self.assertRaises(AccessButtonError):
                    Card.reactivate([Card(issued.id)])

    # --- boxes -------------------------------------------------------------

    @with_transaction()
    def test_enrolment_token(self):
        "A token works once, for 24 hours; a revoked box gets none"
        pool = Pool()
        Box = pool.get('scenic.gate.box')
        area = build_area()
        box_id, token = new_box(area)
        box = Box(box_id)
        self.assertEqual(len(box.token_hash), 64)
        self.assertNotIn(token, box.token_hash)
        self.assertEqual(Box.enrol('wrong'), (None, None))
        enrolled, secret = Box.enrol(token, 'gate-1')
        self.assertEqual(enrolled, box)
        self.assertEqual(len(secret), 43)
        self.assertEqual(Box.enrol(token), (None, None))
        self.assertEqual(Box.authenticate(box_id, secret)[2], 'enrolled')
        self.assertIsNone(Box.authenticate(box_id, 'nope'))

        # A new token re-enrols (a replaced box), after 24 h it is void.
        token, expires = box.new_enrolment_token()
        self.assertAlmostEqual(expires - dt.datetime.now(),
            dt.timedelta(hours=24), delta=dt.timedelta(minutes=1))
        later = dt.datetime.now() + dt.timedelta(hours=24, seconds=1)
        self.assertEqual(Box.enrol(token, now=later), (None, None))
        self.assertEqual(Box.enrol(token)[0], box)
        self.assertIsNone(Box.authenticate(box_id, secret))

        # The back office's wizard shows a token once.
        EnrolmentToken = pool.get(
            'scenic.gate.box.enrolment_token', type='wizard')
        session_id, _, _ = EnrolmentToken.create()
        with Transaction().set_context(active_model='scenic.gate.box',
                active_id=box.id, active_ids=[box.id]):
            shown = EnrolmentToken(session_id).default_show([])
        self.assertEqual(shown['box'], box.id)
        self.assertEqual(Box.enrol(shown['token'])[0], box)

        Box.revoke([box])
        self.assertEqual(box.state, 'revoked')
        with self.assertRaisesRegex(UserError, 'revoked'):
            box.new_enrolment_token()
        self.assertFalse(box.online)

    # --- orders ------------------------------------------------------------

    @with_transaction()
    def test_order_states_from_scans(self):
        "Admitted tickets make their paid orders partly used, then used"
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
        family = sell(area, quantity=3)
        group, = sell(area, 'GROUP5', persons=5)
        leaving, = sell(area)
        refunded, = sell(area)
        refund(refunded, now=noon - dt.timedelta(hours=1))

        def order(ticket_id):
            return Order(Ticket(ticket_id).order.id)

        def send(*scans):
            return upload(
                box_id, company, parse_scans({'scans': list(scans)}))

        # One of three in; a refusal, an exit and an admission after the
        # refund move nothing; the group's one ticket is the whole order.
        send(scan(area.gate_in, family[0], at=noon),
            scan(area.gate_in, family[1], decision='deny',
                reason='not_yet_valid', at=noon),
            scan(area.gate_in, group, persons=5, at=noon),
            scan(area.gate_out, leaving, direction='out', at=noon),
            scan(area.gate_in, refunded, at=noon))
        self.assertEqual(
            [order(t).state for t in [family[0], group, leaving, refunded]],
            ['partly_used', 'used', 'paid', 'refunded'])
        self.assertEqual([Ticket(t).state for t in family],
            ['used', 'valid', 'valid'])

        # A used order is not refunded; its tickets stay as they are.
        with self.assertRaises(reservation.BookingError) as refused, \
                savepoint():
            reservation.cancel(order(family[0]).id, by_back_office=True)
        self.assertEqual(refused.exception.code, 'not_cancellable')
        self.assertEqual(order(family[0]).state, 'partly_used')

        # The others in one batch, with a re-entry flagged as a conflict.
        answer = send(scan(area.gate_in, family[1], at=noon),
            scan(area.gate_in, family[2], at=noon),
            scan(area.gate_in, family[0], at=noon + dt.timedelta(minutes=1)))
        self.assertEqual([c['reason'] for c in answer['conflicts']],
            ['already_used'])
        self.assertEqual(order(family[0]).state, 'used')
        with self.assertRaises(reservation.BookingError), savepoint():
            reservation.cancel(order(family[0]).id, by_back_office=True)
        # A retried payment of a used order answers as before.
        paid = order(family[0])
        self.assertEqual(reservation.pay(
                paid.id, 'simulated', paid.total).state, 'used')

    @with_transaction()
    def test_upload_odd_nonces_and_ids(self):
        "Nonces with quotes, backslashes and commas and huge ids round-trip"
        pool = Pool()
        Company = pool.get('company.company')
        Box = pool.get('scenic.gate.box')
        Scan = pool.get('scenic.gate.scan')
        area = build_area()
        company = Company(area.company)
        box_id, token = new_box(area)
        Box.enrol(token)
        noon = area_time(area)
        ticket, = sell(area)
        scans = [
            scan(area.gate_in, ticket, at=noon, nonce='a"b,{c}',
                binding={'method': 'face', 'ref': 'r\\"1', 'score': 0.5}),
            scan(area.gate_in, 2 ** 40, at=noon, nonce='d\\e'),
            scan(area.gate_out, ticket, direction='out', at=noon,
                nonce='NULL'),
            ]
        answer = upload(box_id, company, parse_scans({'scans': scans}))
        self.assertEqual(answer['accepted'], ['a"b,{c}', 'd\\e', 'NULL'])
        self.assertEqual(answer['conflicts'],
            [{'nonce': 'd\\e', 'reason': 'unknown_ticket'}])
        stored, = Scan.search([('nonce', '=', 'a"b,{c}')])
        self.assertEqual(
            (stored.ticket.id, stored.binding_ref, stored.binding_score),
            (ticket, 'r\\"1', 0.5))
        again = upload(box_id, company, parse_scans({'scans': scans}))
        self.assertEqual(again['duplicates'], ['a"b,{c}', 'd\\e', 'NULL'])
        self.assertEqual(again['accepted'], [])

    # --- headcount ---------------------------------------------------------

    @with_transaction()
    def test_headcount_warning_levels(self):
        "LB/T 068-2017 levels at 80, 90, 95 %; at 100 % gates refuse"
        pool = Pool()
        Zone = pool.get('scenic.zone')
        Company = pool.get('company.company')
        Box = pool.get('scenic.gate.box')
        Headcount = pool.get('scenic.zone.headcount')
        area = build_area(instant_max=100)
        company = Company(area.company)
        box_id, token = new_box(area)
        Box.enrol(token)
        card = issue_card(area)
        noon = now = area_time(area)
        self.enterContext(slot_day(area))  # the zones' inside is today's
        expected = [(79, 'none'), (80, 'yellow'), (89, 'yellow'),
            (90, 'orange'), (95, 'red'), (100, 'red')]
        inside = 0
        for n, (total, level) in enumerate(expected):
            scans = parse_scans({'scans': [scan(area.gate_in, card=card.id,
                            persons=total - inside,
                            at=noon + dt.timedelta(minutes=n))]})
            answer = upload(box_id, company, scans)
            self.assertEqual(answer['conflicts'], [])
            inside = total
            zone = Zone(area.zone)
            self.assertEqual(zone.inside, total)
            self.assertEqual(zone.load, float(total))
            self.assertEqual(zone.warning_level, level, total)
            self.assertEqual(zone.full, total >= 100)
        headcount, = Headcount.search([('zone', '=', area.zone)])
        self.assertEqual((headcount.entries, headcount.inside,
                headcount.warning_level), (100, 100, 'red'))
        # The full zone refuses entries at every gate (its inside is synced).
        decision = engine.decide_card(
            engine.CardInfo(uid='04A1B2C3', id=card.id,
                ticket_type=area.annual),
            engine.TicketTypeInfo(id=area.annual, entries=0),
            engine.GateInfo(id=area.gate_in, zone=area.zone),
            zone=engine.ZoneLoad(inside=zone.inside,
                instant_max=zone.instant_max),
            now=now)
        self.assertEqual(decision.reason, 'capacity_full')
        # Counted exits bring the level down.
        scans = parse_scans({'scans': [scan(area.gate_out, card=card.id,
                        direction='out', persons=25,
                        at=noon + dt.timedelta(minutes=10))]})
        upload(box_id, company, scans)
        zone = Zone(area.zone)
        self.assertEqual((zone.inside, zone.warning_level, zone.full),
            (75, 'none', False))
        # A zone without scans today is empty.
        other = Zone(area.museum)
        self.assertEqual((other.inside, other.warning_level), (0, 'none'))
        self.assertEqual(warning_level(5, None), 'none')


del ModuleTestCase
