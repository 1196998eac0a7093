"""The rollups the dashboards read equal a recomputation from raw rows,
after random uploads (hypothesis), on the backend the tests run on."""
import datetime as dt
import unittest
import uuid
from unittest import mock
from collections import defaultdict
from contextlib import contextmanager
from decimal import Decimal

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from scenic_ticket.tests.tools import configure_pii_key

from trytond.pool import Pool
from trytond.tests.test_tryton import activate_module, with_transaction
from trytond.transaction import Transaction

from scenic_ticket import reservation

from .. import rollup
from ..upload import parse_scans, upload
from .tools import area_time, build_area, new_box, refund, sell

UTC = dt.timezone.utc


@contextmanager
def undone():
    "Run a hypothesis example in a savepoint that is always rolled back."
    transaction = Transaction()
    cursor = transaction.connection.cursor()
    cursor.execute('SAVEPOINT rollup_example')
    try:
        yield
    finally:
        cursor.execute('ROLLBACK TO SAVEPOINT rollup_example')
        cursor.execute('RELEASE SAVEPOINT rollup_example')
        transaction.cache.clear()


def _dt(value):
    if isinstance(value, str):
        value = dt.datetime.fromisoformat(value)
    return value


def recomputed(company_id):
    "The rollups as plain dicts, recomputed from the scan rows."
    pool = Pool()
    cursor = Transaction().connection.cursor()
    scan = pool.get('scenic.gate.scan').__table__()
    gate = pool.get('scenic.gate').__table__()
    cursor.execute(*gate.select(gate.id, gate.zone,
            where=gate.company == company_id))
    zones = dict(cursor)
    cursor.execute(*scan.select(scan.gate, scan.time, scan.direction,
            scan.decision, scan.persons, where=scan.company == company_id))
    minute = defaultdict(lambda: [0, 0])
    quarter = defaultdict(lambda: [0, 0, 0])
    for gate_id, time, direction, decision, persons in cursor.fetchall():
        time = _dt(time)
        m = time.replace(second=0, microsecond=0)
        q = m.replace(minute=m.minute // 15 * 15)
        if decision == 'deny':
            quarter[(gate_id, q)][2] += 1
            continue
        i = 0 if direction == 'in' else 1
        quarter[(gate_id, q)][i] += persons
        minute[(zones[gate_id], m)][i] += persons
    return ({k: tuple(v) for k, v in minute.items()},
        {k: tuple(v) for k, v in quarter.items()})


def stored(company_id):
    pool = Pool()
    cursor = Transaction().connection.cursor()
    m = pool.get('scenic.zone.minute').__table__()
    q = pool.get('scenic.gate.quarter').__table__()
    cursor.execute(*m.select(m.zone, m.minute, m.entries, m.exits,
            where=m.company == company_id))
    minute = {(z, _dt(t)): (i, o) for z, t, i, o in cursor.fetchall()}
    cursor.execute(*q.select(q.gate, q.quarter, q.entries, q.exits,
            q.refused, where=q.company == company_id))
    quarter = {(g, _dt(t)): (i, o, r) for g, t, i, o, r in cursor.fetchall()}
    return minute, quarter


SCAN = st.tuples(
    st.integers(0, 2),                 # gate
    st.integers(0, 150),               # minutes after 09:00
    st.integers(0, 59),                # second
    st.sampled_from(['in', 'out']),
    st.sampled_from(['open', 'open', 'deny']),
    st.integers(1, 3))                 # persons


class RollupTestCase(unittest.TestCase):
    "Rollups of scans and sales"

    @classmethod
    def setUpClass(cls):
        configure_pii_key()
        activate_module('scenic_gate')

    @with_transaction()
    def test_scan_rollups_equal_recomputation(self):
        "Zone minutes and gate quarters equal the raw scans after uploads"
        pool = Pool()
        Company = pool.get('company.company')
        Box = pool.get('scenic.gate.box')
        area = build_area()
        company = Company(area.company)
        box_id, token = new_box(area)
        Box.enrol(token)
        gates = [area.gate_in, area.gate_out, area.gate_museum]
        start = area_time(area, 9)

        @settings(max_examples=12, deadline=None,
            suppress_health_check=list(HealthCheck))
        @given(st.lists(st.lists(SCAN, max_size=25), min_size=1,
                max_size=3))
        def check(batches):
            with undone():
                for batch in batches:
                    scans = [{
                            'nonce': str(uuid.uuid4()),
                            'at': (start + dt.timedelta(minutes=m, seconds=s)
                                ).isoformat(),
                            'gate': gates[g], 'lane': 1, 'medium': 'qr',
                            'ticket': None, 'card': None, 'decision': d,
                            'reason': 'ok' if d == 'open' else 'expired',
                            'persons': p, 'direction': direction,
                            'offline': False, 'binding': None}
                        for g, m, s, direction, d, p in batch]
                    upload(box_id, company, parse_scans({'scans': scans}))
                expected = recomputed(area.company)
                self.assertEqual(stored(area.company), expected)
                rollup.rebuild(area.company, chunk=7)
                self.assertEqual(stored(area.company), expected)
        check()

    @with_transaction()
    def test_rollup_counts_by_hand(self):
        "Two people in at 09:00:10 and 09:00:50, one out at 09:16; a refusal"
        pool = Pool()
        Company = pool.get('company.company')
        Box = pool.get('scenic.gate.box')
        area = build_area()
        company = Company(area.company)
        box_id, token = new_box(area)
        Box.enrol(token)
        t0 = area_time(area, 9)

        def scan(gate, seconds, direction='in', decision='open', persons=1):
            return {'nonce': str(uuid.uuid4()),
                'at': (t0 + dt.timedelta(seconds=seconds)).isoformat(),
                'gate': gate, 'lane': 1, 'medium': 'qr', 'ticket': None,
                'card': None, 'decision': decision,
                'reason': 'ok' if decision == 'open' else 'expired',
                'persons': persons, 'direction': direction,
                'offline': False, 'binding': None}
        upload(box_id, company, parse_scans({'scans': [
                        scan(area.gate_in, 10), scan(area.gate_in, 50),
                        scan(area.gate_in, 55, decision='deny'),
                        scan(area.gate_out, 16 * 60, 'out', persons=2)]}))
        minute, quarter = stored(area.company)
        utc9 = t0.astimezone(UTC).replace(tzinfo=None)
        self.assertEqual(minute, {
                (area.zone, utc9): (2, 0),
                (area.zone, utc9 + dt.timedelta(minutes=16)): (0, 2)})
        self.assertEqual(quarter, {
                (area.gate_in, utc9): (2, 0, 1),
                (area.gate_out, utc9 + dt.timedelta(minutes=15)): (0, 2, 0)})

    @with_transaction()
    def test_slot_sales_equal_recomputation(self):
        "Sales per slot equal the tickets after sales, a refund and a refresh"
        pool = Pool()
        SlotSales = pool.get('scenic.slot.sales')
        Ticket = pool.get('scenic.ticket')
        area = build_area()
        before = dt.datetime.now(UTC)
        adults = sell(area, 'ADULT', quantity=3)
        sell(area, 'GROUP5', persons=5)
        refunded = sell(area, 'ADULT', quantity=2)
        refund(refunded[0])
        self.assertEqual(SlotSales.refresh(since=before), [area.slot])
        rows = SlotSales.search([('slot', '=', area.slot)])
        got = {r.ticket_type.id: (r.tickets, r.persons, r.amount,
                r.refunded, r.refunded_amount) for r in rows}
        self.assertEqual(got, {
                area.adult: (3, 3, Decimal('300.00'), 2, Decimal('200.00')),
                area.group: (1, 5, Decimal('400.00'), 0, Decimal('0.00'))})
        # Against a recomputation from the tickets:
        expected = defaultdict(lambda: [0, 0])
        for t in Ticket.search([('slot', '=', area.slot)]):
            if t.state in {'valid', 'used'}:
                expected[t.ticket_type.id][0] += 1
                expected[t.ticket_type.id][1] += t.persons
        self.assertEqual({k: (v[0], v[1]) for k, v in got.items()},
            {k: tuple(v) for k, v in expected.items()})
        self.assertEqual(len(adults), 3)
        # Nothing changed since: the incremental refresh touches nothing.
        self.assertEqual(SlotSales.refresh(
                since=dt.datetime.now(UTC) + dt.timedelta(seconds=1)), [])
        # The cron's refresh (since its latest run, minus the margin) finds
        # the slot again and keeps the same figures.
        SlotSales.refresh_cron()
        self.assertEqual(len(SlotSales.search(
                    [('slot', '=', area.slot)])), 2)


    @with_transaction()
    def test_slot_sales_kept_in_the_booking_transaction(self):
        """Sales per slot, kept by the state hook as orders are booked,
        paid, refunded and holds cancelled (no refresh), equal a
        recomputation from the tickets; the repair refresh agrees."""
        pool = Pool()
        SlotSales = pool.get('scenic.slot.sales')
        Channel = pool.get('scenic.channel')
        area = build_area()
        slot = pool.get('scenic.time_slot')(area.slot)
        now = slot.aware(slot.start_time) - dt.timedelta(hours=1)

        def hold(code, persons):
            request = reservation.BookingRequest(slot=area.slot, items=[
                    reservation.Item(ticket_type=area.codes[code],
                        persons=persons)],
                contact_name="Wang Fang", contact_phone='13800138001')
            with Transaction().set_context(company=area.company):
                order_id, _ = reservation.book(Channel(area.channel),
                    request, str(uuid.uuid4()), now=now)
            return order_id

        @settings(max_examples=10, deadline=None,
            suppress_health_check=list(HealthCheck))
        @given(st.lists(st.tuples(
                    st.sampled_from(['sell', 'sell', 'refund', 'hold']),
                    st.sampled_from(['ADULT', 'GROUP5', 'MULTI']),
                    st.integers(1, 3)), min_size=1, max_size=5))
        def check(actions):
            with undone():
                sold = []
                for action, code, n in actions:
                    if action == 'sell':
                        persons = 5 if code == 'GROUP5' else None
                        sold.append(sell(area, code,
                                quantity=n if code == 'ADULT' else 1,
                                persons=persons if code != 'ADULT' else None))
                    elif action == 'refund' and sold:
                        refund(sold.pop(n % len(sold))[0], now=now)
                    elif action == 'hold':
                        order_id = hold('MULTI', n)
                        if n % 2:
                            reservation.cancel(order_id, now=now)
                self.assertEqual(sales_rows(area.slot),
                    recomputed_sales(area.slot))
                SlotSales.refresh(slots=[area.slot])
                self.assertEqual(sales_rows(area.slot),
                    recomputed_sales(area.slot))
        check()


def sales_rows(slot):
    "scenic.slot.sales of a slot as {(channel, type): figures}."
    cursor = Transaction().connection.cursor()
    table = Pool().get('scenic.slot.sales').__table__()
    cursor.execute(*table.select(table.channel, table.ticket_type,
            table.tickets, table.persons, table.amount, table.refunded,
            table.refunded_amount, where=table.slot == slot))
    return {(c, t): (n, p, Decimal(str(a)).quantize(Decimal('0.01')), r,
            Decimal(str(ra)).quantize(Decimal('0.01')))
        for c, t, n, p, a, r, ra in cursor.fetchall()}


def recomputed_sales(slot):
    "The same figures recomputed ticket by ticket through the ORM."
    Ticket = Pool().get('scenic.ticket')
    Transaction().cache.clear()
    figures = defaultdict(lambda: [0, 0, Decimal(0), 0, Decimal(0)])
    for ticket in Ticket.search([('slot', '=', slot)]):
        key = (ticket.order.channel.id, ticket.ticket_type.id)
        price = ticket.line.unit_price
        if ticket.state in {'valid', 'used', 'expired'}:
            figures[key][0] += 1
            figures[key][1] += ticket.persons
            figures[key][2] += price
        if ticket.order.state == 'refunded':
            figures[key][3] += 1
            figures[key][4] += price
    return {k: (v[0], v[1], v[2].quantize(Decimal('0.01')), v[3],
            v[4].quantize(Decimal('0.01')))
        for k, v in figures.items() if v[0] or v[3]}


class ReportRoleTestCase(unittest.TestCase):
    "The reporting layer's PostgreSQL role"

    @classmethod
    def setUpClass(cls):
        configure_pii_key()
        activate_module('scenic_gate')

    def test_report_role_cannot_read_personal_data(self):
        "The read-only role reads the rollups, not ID numbers or phones"
        from trytond import backend
        if backend.name != 'postgresql':
            self.skipTest("roles are PostgreSQL's")
        import os

        import psycopg
        from scenic_analytics import connect, reports
        from scenic_analytics.roles import create_role
        from trytond import config
        from trytond.tests.test_tryton import DB_NAME
        server = config.get('database', 'uri').rstrip('/')
        admin = f'{server}/{DB_NAME}'
        role = f'scenic_report_test_{os.getpid()}'
        self.assertGreater(create_role(admin, role, password='r-pass'), 10)
        parts = server.split('://', 1)[1].split('@')[-1]
        url = f'postgresql://{role}:r-pass@{parts}/{DB_NAME}'
        try:
            with psycopg.connect(url, autocommit=True) as con:
                for column, table in [
                        ('contact_phone', 'scenic_order'),
                        ('id_encrypted', 'scenic_visitor'),
                        ('id_hash', 'scenic_visitor'),
                        ('id_masked', 'scenic_visitor'),
                        ('holder_hash', 'scenic_ticket'),
                        ('code', 'scenic_ticket'),
                        ('binding_ref', 'scenic_gate_scan'),
                        ('id_hash', 'scenic_id_day_usage'),
                        ('login', 'res_user'),
                        ('value', 'party_contact_mechanism'),
                        ]:
                    with self.subTest(column=column, table=table), \
                            self.assertRaises(
                                psycopg.errors.InsufficientPrivilege):
                        con.execute(f'SELECT "{column}" FROM "{table}"')
                con.execute('SELECT id, state, slot FROM scenic_order')
                with self.assertRaises(psycopg.errors.ReadOnlySqlTransaction):
                    con.execute('UPDATE scenic_zone SET instant_max = 1')
            with connect(url) as db:
                frame = reports.zone_headcount(db, 1)
                self.assertIn('inside', frame.columns)
                reports.slots_of_day(db, 1, dt.date.today())
                reports.cash_from_payments(db, 1, dt.date.today(),
                    dt.date.today())
                reports.no_shows(db, 1, dt.date.today(), dt.date.today())
        finally:
            with psycopg.connect(admin, autocommit=True) as con:
                con.execute(f'DROP OWNED BY "{role}"')
                con.execute(f'DROP ROLE "{role}"')


def _simulate_history_module():
    "scripts/simulate_history.py of this checkout (not a package)."
    import importlib.util
    from pathlib import Path
    path = (Path(__file__).resolve().parents[3] / 'scripts'
        / 'simulate_history.py')
    spec = importlib.util.spec_from_file_location('simulate_history', path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class SetBasedHistoryTestCase(unittest.TestCase):
    "The set-based (PostgreSQL) history generator"

    @classmethod
    def setUpClass(cls):
        configure_pii_key()
        activate_module('scenic_gate')

    @with_transaction()
    def test_set_based_history_is_consistent(self):
        "A set-based history: rollups, scans, counters and reports agree"
        from trytond import backend
        if backend.name != 'postgresql':
            self.skipTest("the set-based generator is PostgreSQL's")
        from scenic_analytics import reports
        from scenic_analytics.db import Database
        from scenic_ticket.tests.tools import create_ticket_type
        from trytond.modules.company.tests import set_company
        from .tools import new_box
        sim = _simulate_history_module()
        pool = Pool()
        Channel = pool.get('scenic.channel')
        Company = pool.get('company.company')
        area = build_area()
        new_box(area)
        company = Company(area.company)
        with set_company(company):
            Channel.create([{'company': area.company, 'code': code,
                        'name': code.title(), 'kind': kind}
                    for code, kind in [('web', 'online'), ('ota', 'ota'),
                        ('box_office', 'box_office'), ('kiosk', 'kiosk'),
                        ('agency', 'agency')]])
            for code, price in [('ADULT', '100'), ('CHILD', '50'),
                    ('SENIOR', '60'), ('STUDENT', '70')]:
                create_ticket_type(company, code, price)
        days, visitors = 5, 400
        with Transaction().set_context(company=area.company):
            counts = sim.simulate_set_based(area.company, days, visitors,
                seed=3, log=lambda message: None)
        self.assertEqual(counts['slots'], days * len(sim.SLOT_HOURS))
        self.assertGreater(counts['tickets'], days * visitors * 0.7)
        self.assertGreater(counts['scans'], counts['tickets'])
        cursor = Transaction().connection.cursor()

        def one(sql, *params):
            cursor.execute(sql, (area.company,) + params)
            return cursor.fetchall()
        # Scans: every admitted one has its (used) ticket, in then out;
        # refused ones have none.
        self.assertEqual(one("""SELECT s.decision, s.direction, t.state,
                    count(*) FROM scenic_gate_scan AS s
                LEFT JOIN scenic_ticket AS t ON t.id = s.ticket
                WHERE s.company = %s
                GROUP BY 1, 2, 3 ORDER BY 1, 2"""), [
                ('deny', 'in', None, mock.ANY),
                ('open', 'in', 'used', mock.ANY),
                ('open', 'out', 'used', mock.ANY)])
        rows = one("""SELECT count(*) FROM scenic_ticket AS t
            WHERE t.company = %s AND t.state = 'used' AND (
                SELECT count(*) FROM scenic_gate_scan AS s
                WHERE s.ticket = t.id AND s.decision = 'open') <> 2""")
        self.assertEqual(rows, [(0,)])
        self.assertEqual(one("""SELECT count(*) FROM scenic_gate_scan AS a
                JOIN scenic_gate_scan AS b ON b.ticket = a.ticket
                    AND b.direction = 'out'
                WHERE a.company = %s AND a.direction = 'in'
                    AND b.time < a.time"""), [(0,)])
        # Counters: slots' booked = their orders' persons, within capacity;
        # lines' persons = their tickets; orders' total = their lines.
        self.assertEqual(one("""SELECT count(*) FROM scenic_time_slot AS s
                WHERE s.company = %s AND s.date < %s AND (s.booked > s.capacity
                    OR s.booked <> COALESCE((SELECT sum(l.persons)
                        FROM scenic_order AS o
                        JOIN scenic_order_line AS l ON l."order" = o.id
                        WHERE o.slot = s.id), 0))""", area.day), [(0,)])
        self.assertEqual(one("""SELECT count(*) FROM scenic_order_line AS l
                JOIN scenic_order AS o ON o.id = l."order"
                WHERE o.company = %s AND (l.persons <> (
                        SELECT count(*) FROM scenic_ticket AS t
                        WHERE t.line = l.id)
                    OR o.total <> l.amount
                    OR l.amount <> l.unit_price * l.quantity)"""), [(0,)])
        # Payments: one per order, a refund per refunded order.
        self.assertEqual(one("""SELECT count(*) FROM scenic_order AS o
                WHERE o.company = %s AND (
                    (SELECT count(*) FROM scenic_payment AS p
                        WHERE p."order" = o.id AND p.kind = 'payment') <> 1
                    OR (SELECT count(*) FROM scenic_payment AS p
                        WHERE p."order" = o.id AND p.kind = 'refund')
                    <> CASE WHEN o.state = 'refunded' THEN 1 ELSE 0 END)"""),
            [(0,)])
        # The zone's headcount = the entries of the day's tickets.
        self.assertEqual(one("""SELECT count(*)
                FROM scenic_zone_headcount AS h WHERE h.company = %s
                AND h.entries <> (SELECT count(*) FROM scenic_gate_scan AS s
                    JOIN scenic_ticket AS t ON t.id = s.ticket
                    WHERE t.visit_date = h.date AND s.direction = 'in'
                        AND s.decision = 'open')"""), [(0,)])
        # Rollups equal their recomputations.
        self.assertEqual(stored(area.company), recomputed(area.company))
        cursor.execute('SELECT id FROM scenic_time_slot WHERE company = %s '
            'AND date < %s', (area.company, area.day))
        slots = [s for s, in cursor.fetchall()]
        self.assertEqual(len(slots), days * len(sim.SLOT_HOURS))
        for slot in slots:
            self.assertEqual(sales_rows(slot), recomputed_sales(slot))
        # The ids' sequences continue after the rows written.
        cursor.execute('SELECT max(id) FROM scenic_ticket')
        top, = cursor.fetchone()
        cursor.execute("SELECT nextval('scenic_ticket_id_seq')")
        self.assertGreater(cursor.fetchone()[0], top)
        # The analytics reports read it (in this transaction).
        db = Database.__new__(Database)
        db.url, db.kind = None, 'postgresql'
        db.connection = Transaction().connection
        end = area.day - dt.timedelta(days=1)
        start = area.day - dt.timedelta(days=days)
        for name, query in [
                ('arrival_curve', reports.arrival_curve),
                ('dwell_times', reports.dwell_times),
                ('no_shows', reports.no_shows),
                ('demand_pricing', reports.demand_pricing),
                ('channel_mix', reports.channel_mix)]:
            with self.subTest(report=name):
                self.assertGreater(len(query(db, area.company, start, end)),
                    0)
        self.assertGreater(len(reports.sales_of_day(db, area.company, end)),
            0)
        self.assertGreater(len(reports.zone_headcount(db, area.company,
                    end)), 0)
