"""The booking engine's database functions (sql/engine.sql), on PostgreSQL.

test_engine runs every booking API test through the engine, i.e. through
these functions; here is what is their own: they are installed and
upgraded by version, `scenic_book` writes the rows the Python write step
(`write_booking`, the SQLite path and the reference) writes and refuses
with its codes leaving nothing written, the day's counters fall back to
the Python claim when no free stripe has room, and the payment's hooks
run once whether a listener has a database function or not.
"""
import json
import unittest
from decimal import Decimal

from werkzeug.test import Client

from trytond import backend
from trytond.pool import Pool
from trytond.protocols.wrappers import Response
from trytond.tests.test_tryton import DB_NAME
from trytond.transaction import Transaction
from trytond.wsgi import app as tryton_app

from .. import api, reservation, sqlfunctions, workflow
from ..engine import BOOK_UNFINISHED, EngineApp
from ..errors import BookingError
from . import test_booking
from .test_booking import new_id

ORDER_COLUMNS = ['company', 'channel', 'state', 'contact_name',
    'contact_phone', 'total', 'currency', 'create_uid']
LINE_COLUMNS = ['ticket_type', 'quantity', 'persons', 'unit_price', 'amount',
    'price_explanation', 'create_uid']
TICKET_COLUMNS = ['company', 'ticket_type', 'persons', 'entries_allowed',
    'state', 'create_uid']


@unittest.skipUnless(backend.name == 'postgresql',
    "the database functions are PostgreSQL's")
class EngineFunctionsTestCase(test_booking.BookingAPITestCase):
    "Test the booking engine's database functions"

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.engine_app = EngineApp(tryton_app)

    @classmethod
    def tearDownClass(cls):
        cls.engine_app.close()
        super().tearDownClass()

    def client(self):
        return Client(self.engine_app, Response)

    # --- install and upgrade ------------------------------------------------

    def test_installed_and_upgraded_by_version(self):
        "The functions are installed at the file's version, re-run on change"
        with Transaction().start(DB_NAME, 0) as transaction:
            cursor = transaction.connection.cursor()
            version = sqlfunctions.file_version()
            self.assertEqual(sqlfunctions.installed_version(cursor), version)
            sqlfunctions.check(cursor)
            self.assertFalse(sqlfunctions.install(cursor))
            # an older database: the file runs again, the version follows
            cursor.execute('CREATE OR REPLACE FUNCTION '
                'scenic_engine_version() RETURNS integer LANGUAGE sql '
                'IMMUTABLE AS $$SELECT 0$$')
            with self.assertRaises(RuntimeError):
                sqlfunctions.check(cursor)
            self.assertTrue(sqlfunctions.install(cursor))
            self.assertEqual(sqlfunctions.installed_version(cursor), version)
            self.assertTrue(sqlfunctions.install(cursor, force=True))
            cursor.execute("SELECT count(*) FROM pg_proc WHERE proname IN "
                "('scenic_book', 'scenic_book_whole', 'scenic_pay', "
                "'scenic_pay_lock', 'scenic_order_answer', "
                "'scenic_slot_sales_tickets', 'scenic_slot_sales_refunds', "
                "'scenic_rate_add', 'scenic_hold_counts', "
                "'scenic_claim_stripe')")
            self.assertEqual(cursor.fetchone()[0], 10)
            transaction.rollback()

    def test_functions_plan_once(self):
        "The rollup's, holds' and stripes' functions use generic plans"
        # engine.sql's "Plans": the rollup's upsert on `= ANY(ids)`, the
        # holds read and the stripes' update were planned again at every
        # call with the default plan_cache_mode; scenic_book keeps it
        with Transaction().start(DB_NAME, 0, readonly=True) as transaction:
            cursor = transaction.connection.cursor()
            cursor.execute("SELECT proname, proconfig FROM pg_proc "
                "WHERE proname IN ('scenic_slot_sales_tickets', "
                "'scenic_slot_sales_refunds', 'scenic_book', "
                "'scenic_book_whole', 'scenic_pay', 'scenic_hold_counts', "
                "'scenic_claim_stripe') ORDER BY proname")
            generic = ['plan_cache_mode=force_generic_plan']
            self.assertEqual(cursor.fetchall(), [
                    ('scenic_book', None),
                    ('scenic_book_whole', None),
                    ('scenic_claim_stripe', generic),
                    ('scenic_hold_counts', generic),
                    ('scenic_pay', None),
                    ('scenic_slot_sales_refunds', generic),
                    ('scenic_slot_sales_tickets', generic),
                    ])

    def test_hold_counts(self):
        "scenic_hold_counts: live holds of the slot, by its index"
        slots = [self.day_slot() for _ in range(4)]
        for slot in slots:
            for phone in ['13500000201', '13500000202', '13500000202']:
                self.assertEqual(self.book(self.body(slot, [new_id()],
                            phone=phone)).status_code, 201)
        paid = self.book(self.body(slots[0], [new_id(), new_id()],
                phone='13500000201')).json
        self.assertEqual(self.pay(paid).status_code, 200)
        with Transaction().start(DB_NAME, 0) as transaction:
            cursor = transaction.connection.cursor()
            cursor.execute('SELECT id FROM scenic_channel '
                "WHERE code = 'web'")
            channel, = cursor.fetchone()
            cursor.execute('SELECT rolsuper FROM pg_roles '
                'WHERE rolname = current_user')
            if not cursor.fetchone()[0]:
                transaction.rollback()
                self.skipTest("auto_explain needs a superuser")
            # one of the slot's holds expired, one of another slot is not
            # read
            cursor.execute('UPDATE scenic_order SET hold_expires_at = '
                "hold_expires_at - interval '1 day' WHERE id = ("
                "SELECT max(id) FROM scenic_order WHERE slot = %s "
                "AND state = 'reserved')", (slots[0],))
            # a table of some size with holds on many slots (copies of
            # the paid order, none on the slot read), and statistics that
            # hold them, as in service
            cursor.execute('INSERT INTO scenic_order (company, reference, '
                'channel, slot, visit_date, state, contact_name, '
                'contact_phone, hold_expires_at, total, currency, '
                'create_uid, create_date) '
                "SELECT o.company, 'TEST-HOLDS-' || g, o.channel, "
                's.ids[1 + g %% cardinality(s.ids)], o.visit_date, '
                "CASE WHEN g %% 4 = 0 THEN 'reserved' ELSE 'paid' END, "
                "o.contact_name, '1390000' || (g %% 1000), "
                "o.create_date + interval '15 minutes', o.total, "
                'o.currency, o.create_uid, o.create_date '
                'FROM generate_series(1, 3000) g, scenic_order o, '
                '(SELECT array_agg(id) AS ids FROM scenic_time_slot '
                'WHERE id <> %s) s '
                'WHERE o.reference = %s', (slots[0], paid['order']))
            cursor.execute('ANALYZE scenic_order')
            for setting in ["LOAD 'auto_explain'",
                    'SET LOCAL auto_explain.log_min_duration = 0',
                    'SET LOCAL auto_explain.log_nested_statements = on',
                    'SET LOCAL auto_explain.log_level = notice',
                    'SET LOCAL client_min_messages = notice']:
                cursor.execute(setting)
            counts, notices = [], []

            def notice(diagnostic):
                notices.append(diagnostic.message_primary or '')
            transaction.connection.add_notice_handler(notice)
            try:
                for phone in ['13500000201', '13500000202', None]:
                    cursor.execute('SELECT scenic_hold_counts(%s, '
                        "(now() AT TIME ZONE 'UTC')::timestamp, %s, %s, "
                        "'no-such-key', '2000-01-01')",
                        (slots[0], phone, channel))
                    counts.append(cursor.fetchone()[0])
            finally:
                transaction.connection.remove_notice_handler(notice)
            plans = '\n'.join(notices)
            transaction.rollback()
        # the phones' live holds (not the paid order nor the expired
        # hold), the channel's persons held, no rate count
        self.assertEqual(counts, [[1, 2, None], [1, 2, None],
                [0, 2, None]])
        # the slot's holds by the (slot, hold_expires_at) partial index,
        # never the whole day's through the expiry index
        self.assertIn('Index Cond: ((slot = $1) AND (hold_expires_at > $2))',
            plans)
        self.assertNotIn('Index Cond: (hold_expires_at > $2)', plans)

    def test_version_line(self):
        "The file declares its version once"
        self.assertEqual(sqlfunctions.file_version('-- x\n-- version: 7\n'),
            7)
        with self.assertRaises(ValueError):
            sqlfunctions.file_version('-- no version\n')

    def test_rate_counter(self):
        "scenic_rate_add counts a window's events, its first one included"
        from .. import ratelimit
        with Transaction().start(DB_NAME, 0) as transaction:
            for durable in [True, False, False]:
                ratelimit.add('test-kind', 'client', 60, durable=durable)
            events, _ = ratelimit.count('test-kind', 'client', 60)
            self.assertEqual(events, 3)
            cursor = transaction.connection.cursor()
            cursor.execute("SHOW synchronous_commit")
            self.assertEqual(cursor.fetchone()[0], 'off')
            transaction.rollback()

    # --- scenic_book: the same rows as write_booking -------------------------

    def plan(self, slot, numbers, transaction):
        "A plan of the web channel's booking of these IDs (ADULT)."
        Channel = Pool().get('scenic.channel')
        channel, = Channel.search([('code', '=', 'web')])
        request = api.parse_booking(self.body(slot, numbers))
        return reservation.plan_booking(channel, request)

    def rows(self, cursor, order_id):
        "The order's rows as the back office reads them, ids left out."
        def read(table, columns, where, order='id'):
            cursor.execute(f'SELECT {", ".join(columns)} FROM {table} '
                f'WHERE {where} ORDER BY {order}', (order_id,))
            return cursor.fetchall()
        order = read('scenic_order', ORDER_COLUMNS, 'id = %s')
        lines = read('scenic_order_line', LINE_COLUMNS, '"order" = %s')
        tickets = read('scenic_ticket', TICKET_COLUMNS, '"order" = %s')
        # the audit columns, each visitor linked to its ID's record
        cursor.execute('SELECT o.create_date IS NOT NULL, '
            'bool_and(t.create_date IS NOT NULL), '
            'bool_and(v.id_hash = t.holder_hash), '
            'bool_and(t.line IN (SELECT id FROM scenic_order_line l '
            'WHERE l."order" = o.id)), '
            'bool_and(t.slot = o.slot AND t.visit_date = o.visit_date) '
            'FROM scenic_order o JOIN scenic_ticket t ON t."order" = o.id '
            'LEFT JOIN scenic_visitor v ON v.id = t.visitor '
            'WHERE o.id = %s GROUP BY o.id', (order_id,))
        return order, lines, tickets, cursor.fetchone()

    def claims(self, cursor, slot):
        "The slot's booked, its day's counters and per-ID usage."
        cursor.execute('SELECT booked, date, company FROM scenic_time_slot '
            'WHERE id = %s', (slot,))
        booked, date, company = cursor.fetchone()
        cursor.execute('SELECT scope, count(*), sum(booked), sum(maximum) '
            'FROM scenic_daily_load_stripe WHERE company = %s AND date = %s '
            'GROUP BY scope ORDER BY scope', (company, date))
        daily = cursor.fetchall()
        cursor.execute('SELECT sum(count), count(*) FROM scenic_id_day_usage '
            'WHERE company = %s AND date = %s', (company, date))
        return booked, daily, cursor.fetchone()

    def test_book_function_writes_what_python_writes(self):
        "scenic_book's rows and claims are write_booking's"
        python_slot, db_slot = self.day_slot(), self.day_slot()
        results = []
        for slot, write, key in [
                (python_slot, reservation.write_booking, 'key-python'),
                (db_slot, reservation.write_booking_db, 'key-db')]:
            with Transaction().start(DB_NAME, 0) as transaction:
                plan = self.plan(slot, [new_id(), new_id(), new_id()],
                    transaction)
                order_id = write(plan, key)
                cursor = transaction.connection.cursor()
                results.append((self.rows(cursor, order_id),
                        self.claims(cursor, slot)))
                cursor.execute('SELECT reference, idempotency_key, '
                    'request_hash, hold_expires_at FROM scenic_order '
                    'WHERE id = %s', (order_id,))
                self.assertEqual(cursor.fetchone()[:3],
                    (plan.reference, key, plan.digest))
                transaction.commit()
        python, db = results
        self.assertEqual(db, python)
        (order, lines, tickets, audit), (booked, daily, usage) = db
        self.assertEqual(audit, (True, True, True, True, True))
        self.assertEqual(len(tickets), 3)
        self.assertEqual(booked, 3)
        # the day's first booking: the function found no stripes, the
        # Python claim made them (16 per scope) and counted the persons
        self.assertEqual([(c, b) for _, c, b, _ in daily],
            [(reservation.DAILY_STRIPES, 3)] * len(daily))
        self.assertEqual(usage, (3, 3))

    def test_book_function_on_existing_stripes(self):
        "Later bookings of a day claim a free stripe in the database"
        slot = self.day_slot()
        counts = []
        for n in range(3):
            with Transaction().start(DB_NAME, 0) as transaction:
                plan = self.plan(slot, [new_id()], transaction)
                reservation.write_booking_db(plan)
                counts.append(self.claims(
                        transaction.connection.cursor(), slot))
                transaction.commit()
        booked, daily, usage = counts[-1]
        self.assertEqual(booked, 3)
        self.assertEqual([b for _, _, b, _ in daily], [3] * len(daily))
        self.assertEqual(usage, (3, 3))

    def check_refused(self, slot, numbers, code, field):
        "The function refuses with code and field; nothing is written."
        with Transaction().start(DB_NAME, 0) as transaction:
            cursor = transaction.connection.cursor()
            before = self.claims(cursor, slot)
            cursor.execute('SELECT count(*) FROM scenic_order')
            orders = cursor.fetchone()[0]
            plan = self.plan(slot, numbers, transaction)
            with self.assertRaises(BookingError) as refused:
                reservation.write_booking_db(plan)
            transaction.rollback()
        self.assertEqual((refused.exception.code, refused.exception.field),
            (code, field))
        with Transaction().start(DB_NAME, 0, readonly=True) as transaction:
            cursor = transaction.connection.cursor()
            self.assertEqual(self.claims(cursor, slot), before)
            cursor.execute('SELECT count(*) FROM scenic_order')
            self.assertEqual(cursor.fetchone()[0], orders)

    def test_book_function_refusals(self):
        "id_limit (with the visitor's field) and sold_out, nothing written"
        slot = self.day_slot(capacity=4)
        taken = new_id()
        self.assertEqual(
            self.book(self.body(slot, [taken])).status_code, 201)
        self.check_refused(slot, [new_id(), taken], 'id_limit',
            'items[0].visitors[1].id_number')
        self.check_refused(slot, [taken, new_id()], 'id_limit',
            'items[0].visitors[0].id_number')
        # plan_booking saw 3 places left; another booking takes 2 first
        with Transaction().start(DB_NAME, 0) as transaction:
            plan = self.plan(slot, [new_id(), new_id(), new_id()],
                transaction)
            transaction.rollback()
        self.assertEqual(
            self.book(self.body(slot, [new_id(), new_id()])).status_code,
            201)
        with Transaction().start(DB_NAME, 0) as transaction:
            with self.assertRaises(BookingError) as refused:
                reservation.write_booking_db(plan)
            transaction.rollback()
        self.assertEqual(refused.exception.code, 'sold_out')
        self.assertEqual(self.slot_state(slot), (3, 1))

    def test_book_whole(self):
        "scenic_book_whole: only a booking written whole is an answer"
        from psycopg.errors import RaiseException
        slot = self.day_slot()
        taken = new_id()
        self.assertEqual(self.book(self.body(slot, [taken])).status_code,
            201)    # the day's stripes made

        def raised(plan, key=None):
            cursor.execute('SAVEPOINT whole')
            with self.assertRaises(RaiseException) as error:
                cursor.execute(*reservation.book_statement(plan, key,
                        whole=True))
            cursor.execute('ROLLBACK TO SAVEPOINT whole')
            self.assertEqual(error.exception.diag.message_primary,
                BOOK_UNFINISHED)
            return json.loads(error.exception.diag.message_detail)
        with Transaction().start(DB_NAME, 0) as transaction:
            cursor = transaction.connection.cursor()
            before = self.claims(cursor, slot)
            self.assertEqual(raised(self.plan(slot, [taken], transaction)),
                {'refused': 'id_limit', 'index': 0})
            self.assertEqual(self.claims(cursor, slot), before)
            cursor.execute(*reservation.book_statement(self.plan(slot,
                        [new_id()], transaction), 'key-whole', whole=True))
            order_id = cursor.fetchone()[0]['order']
            self.assertEqual(raised(self.plan(slot, [new_id()],
                        transaction), 'key-whole'),
                {'refused': 'idempotency_conflict'})
            transaction.rollback()
        self.assertTrue(order_id)

    def test_engine_books_whole_or_in_steps(self):
        """The engine's booking: a day's first (in steps), later ones and
        refusals (scenic_book_whole), without psycopg's warnings"""
        slot = self.day_slot()
        taken = new_id()
        with self.assertNoLogs('psycopg', 'WARNING'):
            # the day's first: no stripes, the Python claim makes them
            self.assertEqual(self.book(self.body(slot, [taken]),
                    idempotency='key-steps').status_code, 201)
            self.assertEqual(self.book(self.body(slot, [new_id()]))
                .status_code, 201)
            self.assertError(self.book(self.body(slot, [taken])), 409,
                'id_limit', 'items[0].visitors[0].id_number')
            replayed = self.book(self.body(slot, [taken]),
                idempotency='key-steps')
        self.assertEqual(replayed.status_code, 201)
        self.assertEqual(replayed.headers['Idempotent-Replayed'], 'true')
        self.assertEqual(self.slot_state(slot)[0], 2)
        self.check_counters(slot)

    def test_engine_book_refuses_a_wrong_key_first(self):
        "The engine reads the body before the channel: 401 still comes first"
        slot = self.day_slot()
        for headers in [{'Authorization': 'Bearer nope',
                    'Idempotency-Key': 'k'}, {'Idempotency-Key': 'k'},
                {'Authorization': 'Bearer nope'}]:
            for body in [b'{not json', b'{"slot": "x"}',
                    json.dumps(self.body(slot, [new_id()])).encode()]:
                with self.subTest(headers=headers, body=body[:12]):
                    self.assertError(self.client().post(self.url('/orders'),
                            data=body, headers=headers,
                            content_type='application/json'),
                        401, 'unauthorized')
        # a good key: the body's and the slot's refusals
        self.assertError(self.book({'slot': 'x'}), 422, 'invalid_request',
            'slot')
        self.assertError(self.book(self.body(2 ** 31 - 1, [new_id()])),
            422, 'invalid_request', 'slot')

    def test_book_function_replay(self):
        "A used key: the same request is its order, another is refused"
        slot = self.day_slot()
        numbers = [new_id(), new_id()]
        with Transaction().start(DB_NAME, 0) as transaction:
            order_id = reservation.write_booking_db(
                self.plan(slot, numbers, transaction), 'key-replay')
            transaction.commit()
        with Transaction().start(DB_NAME, 0, readonly=True) as transaction:
            cursor = transaction.connection.cursor()
            before = self.claims(cursor, slot)
            cursor.execute('SELECT count(*) FROM scenic_order')
            orders = cursor.fetchone()[0]
        with Transaction().start(DB_NAME, 0) as transaction:
            with self.assertRaises(reservation.Replayed) as replayed:
                reservation.write_booking_db(
                    self.plan(slot, numbers, transaction), 'key-replay')
            with self.assertRaises(BookingError) as refused:
                reservation.write_booking_db(
                    self.plan(slot, [new_id()], transaction), 'key-replay')
            transaction.commit()
        self.assertEqual(replayed.exception.order_id, order_id)
        self.assertEqual((refused.exception.code, refused.exception.field),
            ('idempotency_conflict', 'Idempotency-Key'))
        with Transaction().start(DB_NAME, 0, readonly=True) as transaction:
            cursor = transaction.connection.cursor()
            self.assertEqual(self.claims(cursor, slot), before)
            cursor.execute('SELECT count(*) FROM scenic_order')
            self.assertEqual(cursor.fetchone()[0], orders)

    def test_book_function_daily_limit(self):
        "A full day: the function hands the claim over, which refuses"
        slot = self.day_slot(capacity=50, zone_max=3)
        try:
            self.assertEqual(self.book(self.body(slot,
                        [new_id(), new_id()])).status_code, 201)
            self.check_refused(slot, [new_id(), new_id()], 'daily_limit',
                'slot')
            # the last place: on another stripe than the first booking's
            # (each stripe holds at most one of 3), found by the fallback
            self.assertEqual(
                self.book(self.body(slot, [new_id()])).status_code, 201)
        finally:
            self.reset_zone()
        self.check_counters(slot)

    # --- scenic_pay: the hooks ---------------------------------------------

    def sales(self, slot):
        with Transaction().start(DB_NAME, 0, readonly=True) as transaction:
            cursor = transaction.connection.cursor()
            cursor.execute('SELECT channel, ticket_type, tickets, persons, '
                'amount, refunded, refunded_amount FROM scenic_slot_sales '
                'WHERE slot = %s ORDER BY channel, ticket_type', (slot,))
            return cursor.fetchall()

    def test_pay_function_rollup_equals_recomputed(self):
        "The rollup the payment's hook kept equals one recomputed"
        slot = self.day_slot()
        orders = [self.book(self.body(slot, [new_id() for _ in range(n)]))
            .json for n in (1, 2, 3)]
        for n, order in enumerate(orders, 1):
            paid = self.pay(order)
            self.assertEqual(paid.status_code, 200, paid.get_data())
            self.assertEqual(paid.json['state'], 'paid')
            self.assertEqual([t['state'] for t in paid.json['tickets']],
                ['valid'] * n)
            # the payment's answer is the order read again
            got = self.client().get(self.url(f"/orders/{order['order']}"),
                headers=self.headers(idempotency=False))
            self.assertEqual(got.json, paid.json)
        # a retried payment answers the same, writes nothing more
        again = self.pay(orders[0])
        self.assertEqual(again.status_code, 200)
        kept = self.sales(slot)
        self.assertEqual([(t, p, a) for _, _, t, p, a, _, _ in kept],
            [(6, 6, Decimal('600.00'))])
        with Transaction().start(DB_NAME, 0) as transaction:
            Pool().get('scenic.slot.sales').refresh(slots=[slot])
            transaction.commit()
        self.assertEqual(self.sales(slot), kept)
        with Transaction().start(DB_NAME, 0, readonly=True):
            Order = Pool().get('scenic.order')
            order, = Order.search([('reference', '=', orders[0]['order'])])
            self.assertEqual([p.amount for p in order.payments],
                [Decimal('100')])
            self.assertTrue(order.paid_at and order.write_date)

    def test_pay_hook_without_function_runs_in_python(self):
        "A SQL listener without a database function still runs, once"
        slot = self.day_slot()
        order = self.book(self.body(slot, [new_id(), new_id()])).json
        calls = []

        def listener(to_state, ids):
            calls.append((to_state, ids))
        key = ('scenic.ticket', 'valid')
        workflow.sql_hook(*key)(listener)
        try:
            self.assertIsNone(workflow.sql_hook_functions(*key))
            paid = self.pay(order)
        finally:
            workflow._sql_hooks[key].remove(listener)
        self.assertEqual(paid.status_code, 200, paid.get_data())
        self.assertEqual(calls,
            [('valid', sorted(t['id'] for t in paid.json['tickets']))])
        # the rollup (a listener with its function) ran too, once
        self.assertEqual([r[2] for r in self.sales(slot)], [2])
        self.assertEqual(workflow.sql_hook_functions(*key),
            ['scenic_slot_sales_tickets'])
        self.assertEqual(workflow.sql_hook_functions('scenic.order', 'paid'),
            [])


# the booking API's own tests run through the engine in test_engine: not
# again here
for _name in dir(test_booking.BookingAPITestCase):
    if _name.startswith('test_') and _name not in vars(
            EngineFunctionsTestCase):
        setattr(EngineFunctionsTestCase, _name, None)
