import datetime as dt
from decimal import Decimal

from scenic_common.idnumber import make_resident_id

from trytond.exceptions import UserError
from trytond.model.exceptions import AccessError, ValidationError
from trytond.modules.company.tests import CompanyTestMixin, set_company
from trytond.pool import Pool
from trytond.tests.test_tryton import ModuleTestCase, with_transaction
from trytond.transaction import Transaction, check_access

from .tools import (
    configure_pii_key, create_area, create_slot, create_ticket_type,
    ViewPYSONTestMixin, create_user, create_zone, frozen_clock, savepoint)

MONDAY = dt.date(2026, 12, 7)


class ScenicTicketTestCase(
        ViewPYSONTestMixin, CompanyTestMixin, ModuleTestCase):
    "Test scenic_ticket module"
    module = 'scenic_ticket'

    @classmethod
    def setUpClass(cls):
        configure_pii_key()
        super().setUpClass()

    # --- zones ---------------------------------------------------------

    @with_transaction()
    def test_zone_maxima_validated(self):
        "Zone maxima must be positive and instantaneous <= daily"
        company = create_area()
        with set_company(company):
            with self.assertRaisesRegex(ValidationError, 'Daily Maximum'), \
                    savepoint():
                create_zone(company, daily_max=0)
            with self.assertRaisesRegex(ValidationError, 'instantaneous'), \
                    savepoint():
                create_zone(company, daily_max=100, instant_max=200)
            main = create_zone(company)
            museum = create_zone(
                company, 'MUSEUM', daily_max=800, instant_max=300,
                parent=main)
            self.assertEqual(museum.parent, main)
            self.assertEqual(main.children, (museum,))

    # --- ticket types --------------------------------------------------

    @with_transaction()
    def test_ticket_type_creates_product(self):
        "A ticket type sells as a service product named after it"
        company = create_area()
        with set_company(company):
            ttype = create_ticket_type(company)
            self.assertEqual(ttype.product.template.type, 'service')
            self.assertEqual(ttype.product.template.name, 'Adult')
            ttype.name = "Adult Day Ticket"
            ttype.save()
            self.assertEqual(
                ttype.product.template.name, "Adult Day Ticket")
            self.assertEqual(ttype.entries, 1)

    @with_transaction()
    def test_ticket_type_bad_values_refused(self):
        "Zero persons, small groups and bad entries are refused, unsaved"
        pool = Pool()
        TicketType = pool.get('scenic.ticket.type')
        company = create_area()
        with set_company(company):
            with self.assertRaisesRegex(
                    ValidationError, 'Persons per Ticket'), savepoint():
                create_ticket_type(company, persons=0)
            with self.assertRaisesRegex(ValidationError, 'at least 2'), \
                    savepoint():
                create_ticket_type(company, 'GROUP', category='group')
            with self.assertRaisesRegex(ValidationError, 'Entries Allowed'), \
                    savepoint():
                create_ticket_type(
                    company, 'MULTI', entry_mode='multiple',
                    entries_allowed=1)
            with self.assertRaisesRegex(ValidationError, 'Valid To'), \
                    savepoint():
                create_ticket_type(
                    company, 'RANGE', validity='date_range',
                    valid_from=dt.date(2026, 5, 1),
                    valid_to=dt.date(2026, 4, 1))
            with self.assertRaisesRegex(ValidationError, 'Re-entry'), \
                    savepoint():
                create_ticket_type(company, 'BIND', reentry_binding='photo')
            self.assertEqual(TicketType.search([], count=True), 0)
            group = create_ticket_type(
                company, 'GROUP', category='group', persons=10,
                real_name=False)
            self.assertEqual(group.persons, 10)
            annual = create_ticket_type(
                company, 'ANNUAL', category='annual_card',
                validity='days_from_first_use', validity_days=365,
                entry_mode='unlimited', reentry_binding='face')
            self.assertTrue(annual.is_card)
            self.assertEqual(annual.entries, 0)

    # --- time slots ----------------------------------------------------

    @with_transaction()
    def test_slot_validation(self):
        "Slots cannot overlap, end before start, or have negative capacity"
        company = create_area()
        with set_company(company):
            zone = create_zone(company)
            create_slot(company, MONDAY, (9, 0), (9, 30))
            with self.assertRaisesRegex(ValidationError, 'overlaps'), \
                    savepoint():
                create_slot(company, MONDAY, (9, 15), (9, 45))
            with self.assertRaisesRegex(ValidationError, 'Capacity'), \
                    savepoint():
                create_slot(company, MONDAY, (10, 0), (10, 30), capacity=-1)
            with self.assertRaisesRegex(ValidationError, 'must be after'), \
                    savepoint():
                create_slot(company, MONDAY, (11, 0), (10, 30))
            # Adjacent slots, and a zone's own slots, do not overlap.
            create_slot(company, MONDAY, (9, 30), (10, 0))
            zone_slot = create_slot(company, MONDAY, (9, 0), (9, 30), zone=zone)
            self.assertEqual(zone_slot.zone, zone)

    @with_transaction()
    def test_slot_start_is_timezone_aware(self):
        "Slot datetimes come from the area's timezone (stored as UTC)"
        company = create_area()
        with set_company(company):
            slot = create_slot(company, MONDAY, (9, 0), (9, 30))
            # 09:00 in Shanghai is 01:00 UTC
            self.assertEqual(slot.start, dt.datetime(2026, 12, 7, 1, 0))
            self.assertEqual(
                slot.aware(slot.start_time).utcoffset(), dt.timedelta(hours=8))

    @with_transaction()
    def test_area_today_is_the_areas_date(self):
        "The area's date changes at its own midnight, not the server's"
        from ..slot import area_today
        company = create_area()
        # 20:00 UTC on New Year's Eve is 04:00 on 1 January in Shanghai.
        new_year = dt.datetime(2026, 12, 31, 20, 0, tzinfo=dt.timezone.utc)
        with set_company(company), frozen_clock(new_year):
            self.assertEqual(area_today(company), dt.date(2027, 1, 1))
            # Tryton's own today, in the company's zone, agrees.
            self.assertEqual(Pool().get('ir.date').today(),
                dt.date(2027, 1, 1))
            company.timezone = 'Europe/London'
            self.assertEqual(area_today(company), dt.date(2026, 12, 31))

    def _generate(self, company, **values):
        pool = Pool()
        Generate = pool.get('scenic.time_slot.generate', type='wizard')
        session_id, _, _ = Generate.create()
        wizard = Generate(session_id)
        defaults = {
            'company': company, 'zone': None, 'start_date': MONDAY,
            'end_date': MONDAY + dt.timedelta(days=6),
            'first_start': dt.time(8, 0), 'last_end': dt.time(17, 0),
            'interval': 30, 'capacity': 500, 'closed_weekdays': [],
            }
        defaults.update(values)
        for name, value in defaults.items():
            setattr(wizard.start, name, value)
        action, _ = wizard.do_generate(
            {'name': "Time Slots", 'pyson_domain': '[]'})
        return action

    @with_transaction()
    def test_slot_generation(self):
        "Generation makes a pattern of slots, skips closed days, is idempotent"
        pool = Pool()
        TimeSlot = pool.get('scenic.time_slot')
        CalendarDay = pool.get('scenic.calendar.day')
        company = create_area()
        with set_company(company):
            CalendarDay.create([{
                        'company': company.id, 'date': MONDAY + dt.timedelta(2),
                        'kind': 'closed', 'name': "Maintenance"}])
            action = self._generate(company, closed_weekdays=['0'])
            # 7 days less Monday (closed weekday) and Wednesday (closed day)
            self.assertEqual(TimeSlot.search([], count=True), 5 * 18)
            self.assertIn('(90)', action['name'])
            first, = TimeSlot.search([], limit=1)
            self.assertEqual(first.date, MONDAY + dt.timedelta(1))
            self.assertEqual(
                (first.start_time, first.end_time),
                (dt.time(8, 0), dt.time(8, 30)))
            self.assertEqual(first.capacity, 500)
            self._generate(company, closed_weekdays=['0'])
            self.assertEqual(TimeSlot.search([], count=True), 90)

    @with_transaction()
    def test_slot_generation_errors(self):
        "Inverted dates, zero interval and inverted times are refused"
        TimeSlot = Pool().get('scenic.time_slot')
        company = create_area()
        with set_company(company):
            with self.assertRaisesRegex(UserError, 'To Date'), \
                    savepoint():
                self._generate(
                    company, end_date=MONDAY - dt.timedelta(days=1))
            with self.assertRaisesRegex(UserError, 'Slot Length'), \
                    savepoint():
                self._generate(company, interval=0)
            with self.assertRaisesRegex(UserError, 'Last Slot Ends'), \
                    savepoint():
                self._generate(company, last_end=dt.time(7, 0))
            with self.assertRaisesRegex(UserError, 'To Date'), \
                    savepoint():
                self._generate(company, end_date=MONDAY + dt.timedelta(400))
            with self.assertRaisesRegex(UserError, 'Capacity'), \
                    savepoint():
                self._generate(company, capacity=-5)
            self.assertEqual(TimeSlot.search([], count=True), 0)
            # A pattern overlapping existing slots differently is refused.
            create_slot(company, MONDAY, (8, 10), (8, 40))
            with self.assertRaisesRegex(ValidationError, 'overlaps'), \
                    savepoint():
                self._generate(company, end_date=MONDAY)

    # --- price rules ---------------------------------------------------

    def _rule(self, company, name, priority, method, value, **values):
        PriceRule = Pool().get('scenic.price.rule')
        rule, = PriceRule.create([{
                    'company': company.id, 'name': name, 'priority': priority,
                    'method': method, 'value': Decimal(value), **values}])
        return rule

    @with_transaction()
    def test_price_rule_precedence_and_explanation(self):
        "Rules apply by priority, final stops, and the explanation says so"
        pool = Pool()
        PriceRule = pool.get('scenic.price.rule')
        CalendarDay = pool.get('scenic.calendar.day')
        Channel = pool.get('scenic.channel')
        company = create_area()
        with set_company(company):
            adult = create_ticket_type(company, price='100')
            child = create_ticket_type(company, 'CHILD', price='50')
            ota, = Channel.create([{
                        'company': company.id, 'name': "OTA", 'code': 'ota',
                        'kind': 'ota'}])
            saturday = MONDAY + dt.timedelta(days=5)
            slot = create_slot(company, saturday, (8, 0), (8, 30))
            self._rule(company, "Weekend", 20, 'percentage', '20',
                weekdays=['5', '6'])
            self._rule(company, "Early bird", 30, 'amount', '-10',
                time_to=dt.time(9, 0))
            self._rule(company, "Demand", 40, 'percentage', '10',
                min_fill_ratio=Decimal('0.8'))
            self._rule(company, "OTA net", 50, 'amount', '-5',
                channels=[('add', [ota.id])])
            self._rule(company, "Children flat", 10, 'fixed', '40',
                final=True, ticket_types=[('add', [child.id])])

            quote = PriceRule.quote(adult, MONDAY)
            self.assertEqual(quote.price, Decimal('100.00'))
            self.assertEqual(quote.steps, ())

            # 100 * 1.2 = 120, -10 = 110, * 1.1 = 121.00, -5 = 116
            quote = PriceRule.quote(
                adult, saturday, slot=slot, channel=ota,
                fill_ratio=Decimal('0.85'))
            self.assertEqual(quote.price, Decimal('116.00'))
            self.assertEqual(
                [s.rule.name for s in quote.steps],
                ["Weekend", "Early bird", "Demand", "OTA net"])
            self.assertEqual(
                quote.explanation().splitlines(), [
                    "Base price: 100.00",
                    "[20] Weekend: +20 % → 120.00",
                    "[30] Early bird: -10 → 110.00",
                    "[40] Demand: +10 % → 121.00",
                    "[50] OTA net: -5 → 116.00",
                    "Price: 116.00",
                    ])
            # Below the fill ratio, demand pricing does not apply.
            quote = PriceRule.quote(
                adult, saturday, slot=slot, fill_ratio=Decimal('0.5'))
            self.assertEqual(quote.price, Decimal('110.00'))
            # The child rule comes first and is final.
            quote = PriceRule.quote(child, saturday, slot=slot, channel=ota)
            self.assertEqual(quote.price, Decimal('40.00'))
            self.assertIn("(final)", quote.explanation())

            # Holiday rules follow the calendar.
            self._rule(company, "Golden week", 5, 'fixed', '150',
                day_kind='holiday', ticket_types=[('add', [adult.id])])
            self.assertEqual(PriceRule.quote(adult, MONDAY).price,
                Decimal('100.00'))
            CalendarDay.create([{'company': company.id, 'date': MONDAY,
                        'kind': 'holiday'}])
            self.assertEqual(PriceRule.quote(adult, MONDAY).price,
                Decimal('150.00'))

    @with_transaction()
    def test_price_check_wizard_explains(self):
        "The price check shows the price and its explanation"
        PriceCheck = Pool().get('scenic.price.check')
        company = create_area()
        with set_company(company):
            adult = create_ticket_type(company, price='80')
            self._rule(company, "Winter", 10, 'percentage', '-25',
                date_from=dt.date(2026, 12, 1), date_to=dt.date(2027, 2, 28))
            check = PriceCheck(ticket_type=adult, date=MONDAY)
            self.assertEqual(check.on_change_with_price(), Decimal('60.00'))
            self.assertIn("Winter: -25 %", check.on_change_with_explanation())

    @with_transaction()
    def test_price_rule_bad_values_refused(self):
        "Empty or inverted ranges and absurd values are refused"
        PriceRule = Pool().get('scenic.price.rule')
        company = create_area()
        with set_company(company):
            with self.assertRaisesRegex(ValidationError, 'To Date'), \
                    savepoint():
                self._rule(company, "Bad", 1, 'amount', '1',
                    date_from=dt.date(2026, 5, 2), date_to=dt.date(2026, 5, 1))
            with self.assertRaisesRegex(ValidationError, 'Slots Before'), \
                    savepoint():
                self._rule(company, "Bad", 1, 'amount', '1',
                    time_from=dt.time(10), time_to=dt.time(10))
            with self.assertRaisesRegex(ValidationError, 'between 0 and 1'), \
                    savepoint():
                self._rule(company, "Bad", 1, 'amount', '1',
                    min_fill_ratio=Decimal('1.5'))
            with self.assertRaisesRegex(ValidationError, '100 %'), \
                    savepoint():
                self._rule(company, "Bad", 1, 'percentage', '-120')
            self.assertEqual(PriceRule.search([], count=True), 0)

    # --- visitors and personal data ------------------------------------

    @with_transaction()
    def test_visitor_id_protected(self):
        "ID numbers are validated, encrypted, masked and found by hash"
        pool = Pool()
        Visitor = pool.get('scenic.visitor')
        company = create_area()
        number = make_resident_id('110105', dt.date(1985, 6, 15), 123)
        with set_company(company):
            visitor, = Visitor.create([{
                        'company': company.id, 'name': "Li Lei",
                        'id_type': 'resident_id', 'id_number': number}])
            self.assertEqual(visitor.id_masked, number[:3] + '*' * 11
                + number[-4:])
            self.assertNotIn(number, visitor.id_encrypted)
            self.assertEqual(len(visitor.id_hash), 64)
            cursor = Transaction().connection.cursor()
            table = Visitor.__table__()
            cursor.execute(*table.select(
                    table.id_encrypted, table.id_masked, table.id_hash))
            for value in cursor.fetchone():
                self.assertNotIn(number, value)
            # root reads it in full; search goes through the hash
            self.assertEqual(visitor.id_number, number)
            self.assertEqual(
                Visitor.search([('id_number', '=', number.lower())]),
                [visitor])
            self.assertEqual(
                Visitor.search([('rec_name', '=', number)]), [visitor])
            # Last: an SQL constraint error ends the test's savepoints.
            with self.assertRaisesRegex(ValidationError, 'already exists'):
                Visitor.create([{
                            'company': company.id, 'name': "Again",
                            'id_type': 'resident_id', 'id_number': number}])

    @with_transaction()
    def test_visitor_invalid_id_refused(self):
        "Invalid ID numbers are refused with the field and the reason"
        Visitor = Pool().get('scenic.visitor')
        company = create_area()
        number = make_resident_id()
        bad_check = number[:-1] + ('0' if number[-1] != '0' else '1')
        with set_company(company):
            for value, reason in [
                    (bad_check, 'check character'),
                    ('11010519900230123X', 'birth date'),
                    ('110105900101123', 'number of characters'),
                    ('', 'empty'),
                    ]:
                with self.assertRaisesRegex(UserError, 'ID Number') as cm:
                    Visitor.create([{
                                'company': company.id, 'name': "X",
                                'id_type': 'resident_id',
                                'id_number': value}])
                self.assertIn(reason, cm.exception.message)
            with self.assertRaisesRegex(UserError, 'ID Number'), \
                    savepoint():
                Visitor.create([{
                            'company': company.id, 'name': "X",
                            'id_type': 'hk_macau_permit',
                            'id_number': number}])
            self.assertEqual(Visitor.search([], count=True), 0)
            visitor, = Visitor.create([{
                        'company': company.id, 'name': "Visitor",
                        'id_type': 'passport', 'id_number': 'E12345678'}])
            with self.assertRaisesRegex(UserError, 'ID number again'), \
                    savepoint():
                Visitor.write([visitor], {'id_type': 'resident_id'})

    @with_transaction()
    def test_visitor_full_number_only_for_personal_data_group(self):
        "Cashiers see the masked number; supervisors see it in full"
        pool = Pool()
        Visitor = pool.get('scenic.visitor')
        company = create_area()
        number = make_resident_id()
        with set_company(company):
            visitor, = Visitor.create([{
                        'company': company.id, 'name': "Han Meimei",
                        'id_number': number}])
            cashier = create_user(company, 'cashier')
            supervisor = create_user(company, 'supervisor')
            with Transaction().set_user(cashier.id), check_access():
                self.assertEqual(
                    Visitor(visitor.id).id_number, visitor.id_masked)
            with Transaction().set_user(supervisor.id), check_access():
                self.assertEqual(Visitor(visitor.id).id_number, number)

    @with_transaction()
    def test_missing_pii_key_is_explained(self):
        "Without a configured key, saving an ID number says what to set"
        Visitor = Pool().get('scenic.visitor')
        company = create_area()
        configure_pii_key('')
        try:
            with set_company(company):
                with self.assertRaisesRegex(UserError, 'pii_key'), \
                        savepoint():
                    Visitor.create([{
                                'company': company.id, 'name': "X",
                                'id_number': make_resident_id()}])
        finally:
            configure_pii_key()

    @with_transaction()
    def test_pii_key_rotation_reencrypts(self):
        "After a rotation, reencrypt_all puts every secret under the new key"
        from scenic_common.pii import DEMO_PII_KEY
        from trytond import config
        from ..vault import (
            ENCRYPTED_COLUMNS, check_pii_configuration, reencrypt_all)
        from .tools import TEST_PII_KEY
        pool = Pool()
        Visitor = pool.get('scenic.visitor')
        Channel = pool.get('scenic.channel')
        SigningKey = pool.get('scenic.signing_key')
        company = create_area()
        number = make_resident_id()
        new_key = 'the-new-key-of-this-area-0123456789abcdef'
        with set_company(company):
            visitor, = Visitor.create([{
                        'company': company.id, 'name': "Li Lei",
                        'id_number': number}])
            channel, = Channel.create([{'company': company.id,
                        'name': "Web", 'code': 'WEB-R', 'kind': 'online'}])
            api_key = channel.set_api_key()
            SigningKey.active_signer(company)
            hash_before = visitor.id_hash
            try:
                config.set('scenic', 'pii_key', new_key)
                config.set('scenic', 'pii_key_previous', TEST_PII_KEY)
                config.set('scenic', 'pii_lookup_key', TEST_PII_KEY)
                counts = reencrypt_all()
                self.assertEqual(counts, {'scenic.visitor': 1,
                        'scenic.channel': 1, 'scenic.signing_key': 1})
                self.assertEqual(reencrypt_all(), dict.fromkeys(counts, 0))
                # the old key gone: everything still reads
                config.set('scenic', 'pii_key_previous', '')
                self.assertEqual(Visitor(visitor.id).id_number, number)
                self.assertEqual(Channel(channel.id).get_api_key(), api_key)
                self.assertEqual(Visitor.search(
                        [('id_number', '=', number)]), [visitor])
                self.assertEqual(Visitor(visitor.id).id_hash, hash_before)
                self.assertTrue(SigningKey.active_signer(company))
                # the demo's key is refused where the configuration does not
                # say demo
                config.set('scenic', 'pii_key', DEMO_PII_KEY)
                config.set('scenic', 'demo', 'False')
                with self.assertRaisesRegex(RuntimeError, 'published'):
                    check_pii_configuration()
                config.set('scenic', 'demo', 'True')
                check_pii_configuration()
            finally:
                config.set('scenic', 'pii_key_previous', '')
                config.set('scenic', 'pii_lookup_key', '')
                configure_pii_key()
        self.assertEqual(len(ENCRYPTED_COLUMNS), 3)

    # --- areas and roles -----------------------------------------------

    @with_transaction()
    def test_area_isolation(self):
        "Users of one scenic area do not see another area's records"
        pool = Pool()
        TicketType = pool.get('scenic.ticket.type')
        Zone = pool.get('scenic.zone')
        cloud = create_area("Cloud Mountain")
        lake = create_area("Jade Lake")
        with set_company(cloud):
            cloud_type = create_ticket_type(cloud, 'CLOUD')
            create_zone(cloud, 'MAIN')
        with set_company(lake):
            create_ticket_type(lake, 'LAKE')
            create_zone(lake, 'MAIN')  # codes are unique per area only
        user = create_user(lake, 'marketing')
        with Transaction().set_user(user.id), \
                Transaction().set_context(company=lake.id,
                    companies=[lake.id]), check_access():
            self.assertEqual(
                [t.code for t in TicketType.search([])], ['LAKE'])
            self.assertEqual(len(Zone.search([])), 1)
            # Reading another area's record by id is refused.
            with self.assertRaises(AccessError):
                TicketType.read([cloud_type.id], ['code'])

    @with_transaction()
    def test_role_access(self):
        "Marketing manages prices; cashiers cannot change them"
        pool = Pool()
        PriceRule = pool.get('scenic.price.rule')
        Visitor = pool.get('scenic.visitor')
        company = create_area()
        with set_company(company):
            rule = self._rule(company, "Weekend", 10, 'percentage', '10')
        cashier = create_user(company, 'cashier')
        marketing = create_user(company, 'marketing')
        finance = create_user(company, 'finance')
        context = {'company': company.id, 'companies': [company.id]}
        with Transaction().set_context(context):
            with Transaction().set_user(cashier.id), check_access():
                self.assertEqual(PriceRule.search([]), [rule])
                with self.assertRaises(AccessError):
                    PriceRule.write([PriceRule(rule.id)], {'value': 1})
                Visitor.create([{'company': company.id, 'name': "A",
                            'id_number': make_resident_id()}])
            with Transaction().set_user(marketing.id), check_access():
                PriceRule.write([PriceRule(rule.id)], {'value': 15})
                with self.assertRaises(AccessError):
                    Visitor.search([])
            with Transaction().set_user(finance.id), check_access():
                with self.assertRaises(AccessError):
                    PriceRule.create([{'company': company.id, 'name': "X",
                                'method': 'amount', 'value': 1}])
        self.assertEqual(PriceRule(rule.id).value, Decimal(15))


    @with_transaction()
    def test_codes_and_personal_data_by_role(self):
        "Each role reads the codes and personal data it needs, and no more"
        pool = Pool()
        company = create_area()
        # (model, field): the roles that may read it
        readers = {
            ('scenic.ticket', 'code'): {'supervisor', 'cashier'},
            ('scenic.ticket', 'holder_hash'): {'supervisor'},
            ('scenic.ticket', 'holder_masked'): {
                'supervisor', 'cashier', 'finance', 'gate'},
            ('scenic.visitor', 'id_masked'): {'supervisor', 'cashier', 'gate'},
            ('scenic.visitor', 'id_encrypted'): {'supervisor'},
            ('scenic.visitor', 'id_hash'): {'supervisor'},
            ('scenic.order', 'contact_phone'): {
                'supervisor', 'cashier', 'finance', 'marketing', 'gate'},
            ('scenic.channel', 'api_key_encrypted'): set(),
            ('scenic.signing_key', 'private_key_encrypted'): set(),
            }
        roles = ['supervisor', 'cashier', 'finance', 'marketing', 'gate']
        users = {r: create_user(company, r) for r in roles}
        context = {'company': company.id, 'companies': [company.id]}
        seen = {}
        with Transaction().set_context(context):
            for (model, field), allowed in readers.items():
                Model = pool.get(model)
                if field not in Model._fields:
                    continue
                for role in roles:
                    with Transaction().set_user(users[role].id), \
                            check_access():
                        try:
                            Model.read([], [field])
                            Model.search([], limit=1)
                            seen[model, field, role] = True
                        except AccessError:
                            seen[model, field, role] = False
        wrong = {key: value for key, value in seen.items()
            if value != (key[2] in readers[key[:2]])}
        self.maxDiff = None
        self.assertEqual(wrong, {})
        self.assertEqual(seen['scenic.ticket', 'code', 'finance'], False)
        self.assertEqual(seen['scenic.ticket', 'code', 'gate'], False)

del ModuleTestCase
