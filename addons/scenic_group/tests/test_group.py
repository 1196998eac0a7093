"""Group orders in the back office: visitor files, booking and confirming,
no-show credits and the monthly statement."""
import csv
import datetime as dt
import io
import unittest
from decimal import Decimal

import openpyxl

from scenic_common.idnumber import make_resident_id
from scenic_ticket.tests.tools import (
    configure_pii_key, create_area, create_slot, create_ticket_type,
    create_zone, frozen_clock, savepoint)

from trytond.modules.company.tests import set_company
from trytond.pool import Pool
from trytond.tests.test_tryton import activate_module, with_transaction

from .. import visitors
from ..exceptions import GroupOrderError, ImportError_
from .tools import create_partner

IDS = [make_resident_id('440106', dt.date(1980, 1, 1) + dt.timedelta(n),
        n + 1) for n in range(10)]
BAD = IDS[0][:-1] + ('0' if IDS[0][-1] != '0' else '1')


def csv_bytes(rows, encoding='utf-8'):
    out = io.StringIO()
    csv.writer(out).writerows(rows)
    return out.getvalue().encode(encoding)


def xlsx_bytes(rows):
    book = openpyxl.Workbook()
    sheet = book.active
    for row in rows:
        sheet.append(row)
    out = io.BytesIO()
    book.save(out)
    return out.getvalue()


class VisitorFileTestCase(unittest.TestCase):
    "Test visitor files"

    def test_parse_csv_with_chinese_header_and_errors(self):
        "Every bad row is reported with its number; IDs are masked"
        data = csv_bytes([['姓名', '身份证号'], ['张三', IDS[0]],
                ['李四', BAD], ['', IDS[1]], ['王五', IDS[0].lower()],
                ['赵六', IDS[2]]], encoding='gb18030')
        rows, errors = visitors.parse('group.csv', data)
        self.assertEqual([r.number for r in rows], [2, 6])
        self.assertEqual([(e.number, e.code) for e in errors], [
                (3, 'invalid_id_number'), (4, 'missing_name'),
                (5, 'duplicate_in_file')])
        text = '\n'.join(str(e) for e in errors)
        self.assertNotIn(IDS[0], text)
        self.assertNotIn(BAD, text)
        self.assertIn('row 2', text)

    def test_parse_xlsx_positional(self):
        "An XLSX without a header reads name, ID number, ID type"
        data = xlsx_bytes([['Tom', 'E12345678', '护照'],
                ['Ann', IDS[3], None]])
        rows, errors = visitors.parse('list.xlsx', data)
        self.assertEqual(errors, [])
        self.assertEqual([(r.name, r.id_type) for r in rows],
            [('Tom', 'passport'), ('Ann', 'resident_id')])

    def test_unreadable(self):
        "Files that are not visitor lists are refused as a whole"
        for name, data in [('x.xlsx', b'PK\x03\x04 broken'),
                ('x.pdf', b'%PDF'), ('x.csv', b'')]:
            with self.assertRaises(visitors.UnreadableFile):
                visitors.parse(name, data)


class GroupOrderTestCase(unittest.TestCase):
    "Test group orders"

    @classmethod
    def setUpClass(cls):
        configure_pii_key()
        activate_module('scenic_group')

    def setup_area(self, term='deposit', bill_admitted=True):
        company = create_area()
        zone = create_zone(company, daily_max=10000, instant_max=5000)
        adult = create_ticket_type(company, 'ADULT', '120',
            zones=[('add', [zone.id])])
        group = create_ticket_type(company, 'GROUP10', '1000',
            category='group', persons=10, real_name=False, id_limit=0)
        partner, contract = create_partner(company, 'travel', term=term,
            prices=[(adult, '80'), (group, '700')],
            bill_admitted=bill_admitted, free_sale=True)
        date = dt.date.today() + dt.timedelta(days=3)
        slot = create_slot(company, date, (9, 0), (9, 30), capacity=100)
        return company, partner, contract, adult, group, slot

    @with_transaction()
    def test_dates_are_the_areas(self):
        "A partner's entries and statement month follow the area's date"
        from ..statement import _last_month
        Entry = Pool().get('scenic.group.entry')
        company, partner, *_ = self.setup_area()
        # 04:00 on 1 January in Shanghai; still New Year's Eve in UTC.
        new_year = dt.datetime(2026, 12, 31, 20, 0, tzinfo=dt.timezone.utc)
        with set_company(company), frozen_clock(new_year):
            entry = Entry.record(partner, 'deposit', Decimal('-100'))
            self.assertEqual(entry.date, dt.date(2027, 1, 1))
            self.assertEqual(_last_month(), (2026, 12))

    def wizard(self, partner, slot, ttype, file=None, name='g.csv',
            persons=None):
        Wizard = Pool().get('scenic.group.order.create', type='wizard')
        session_id, _, _ = Wizard.create()
        wizard = Wizard(session_id)
        wizard.start.partner = partner
        wizard.start.slot = slot
        wizard.start.ticket_type = ttype
        wizard.start.persons = persons
        wizard.start.leader_name = "Guide Chen"
        wizard.start.leader_phone = '13600136000'
        wizard.start.visitor_file = file
        wizard.start.visitor_file_name = name
        return wizard

    @with_transaction()
    def test_bad_file_saves_nothing(self):
        "A visitor list with errors books nothing"
        pool = Pool()
        Order = pool.get('scenic.order')
        company, partner, _, adult, _, slot = self.setup_area()
        with set_company(company):
            wizard = self.wizard(partner, slot, adult, csv_bytes(
                    [['name', 'id_number'], ['A', IDS[0]], ['B', BAD]]))
            with self.assertRaisesRegex(ImportError_, 'Row 3'):
                wizard.transition_check()
            with self.assertRaisesRegex(ImportError_, 'Row 3'):
                wizard.transition_book()
            self.assertEqual(Order.search([], count=True), 0)
            self.assertEqual(slot.__class__(slot.id).booked, 0)

    @with_transaction()
    def test_book_confirm_on_deposit_and_settle(self):
        "A group is booked from its list, drawn from the deposit, and "
        "credited for no-shows"
        pool = Pool()
        Order = pool.get('scenic.order')
        Entry = pool.get('scenic.group.entry')
        company, partner, _, adult, _, slot = self.setup_area()
        with set_company(company):
            data = xlsx_bytes([['Name', 'ID Number']]
                + [[f'V{i}', IDS[i]] for i in range(4)])
            wizard = self.wizard(partner, slot, adult, data, 'g.xlsx')
            # No deposit yet.
            with self.assertRaisesRegex(GroupOrderError,
                    'deposit_insufficient'), savepoint():
                wizard.transition_book()
            Entry.record(partner, 'deposit', Decimal('-1000'))
            self.assertEqual(wizard.transition_check(), 'start')
            self.assertIn('4', wizard.start.checked)
            self.assertEqual(wizard.transition_book(), 'end')
            order, = Order.search([])
            self.assertEqual(order.state, 'paid')
            self.assertEqual(order.total, Decimal('320'))
            self.assertEqual(order.leader_name, "Guide Chen")
            self.assertEqual(Entry.balance(partner), Decimal('-680'))
            # The same IDs again for that day: refused row by row.
            wizard = self.wizard(partner, slot, adult, data, 'g.xlsx')
            with self.assertRaisesRegex(ImportError_, 'already holds'):
                wizard.transition_book()
            # Two of the four were admitted.
            Ticket = pool.get('scenic.ticket')
            Ticket.write(list(order.tickets[:2]), {'state': 'used'})
            settled = Order.settle_arrivals(
                date=slot.date + dt.timedelta(days=1))
            self.assertEqual(settled, 1)
            self.assertEqual(Entry.balance(partner), Decimal('-840'))
            self.assertEqual(Order.settle_arrivals(
                    date=slot.date + dt.timedelta(days=1)), 0)

    @with_transaction()
    def test_group_ticket_and_statement(self):
        "A group ticket on a monthly contract, then its statement"
        pool = Pool()
        Order = pool.get('scenic.order')
        Entry = pool.get('scenic.group.entry')
        Report = pool.get('scenic.group.statement.report', type='report')
        company, partner, _, _, group, slot = self.setup_area(
            term='monthly')
        with set_company(company):
            wizard = self.wizard(partner, slot, group, persons=20)
            self.assertEqual(wizard.transition_book(), 'end')
            order, = Order.search([])
            self.assertEqual(len(order.tickets), 2)
            self.assertEqual(order.total, Decimal('1400'))
            Entry.record(partner, 'payment', Decimal('-1400'),
                date=slot.date)
            ext, content, _, name = Report.execute([], {
                    'partner': partner.id, 'year': slot.date.year,
                    'month': slot.date.month})
            self.assertEqual(ext, 'html')
            text = content if isinstance(content, str) else content.decode()
            self.assertIn('1,400.00', text)
            self.assertIn(order.reference, text)
            self.assertIn('Closing balance', text)
        wizard = self.wizard(partner, slot, group, persons=None)
        with self.assertRaises(GroupOrderError):
            wizard.transition_book()

