"""The booking API through the booking engine (engine.py), on PostgreSQL.

Every test of test_booking runs again with the engine in front of trytond's
application, so the contract (paths, fields, codes) is the same whichever
serves it; then what is the engine's own: it answers without trytond's
request handling, sees a back-office price change within 2 s, and hands a
payment with state-change listeners to the Tryton path.
"""
import datetime as dt
import time
import unittest
from decimal import Decimal

from werkzeug.test import Client

from trytond import backend
from trytond.cache import MemoryCache
from trytond.pool import Pool
from trytond.protocols.wrappers import Response
from trytond.tests.test_tryton import DB_NAME
from trytond.transaction import Transaction
from trytond.wsgi import app as tryton_app

from ..engine import EngineApp
from . import test_booking
from .test_booking import new_id


class CountingApp:
    "trytond's application, counting the requests handed to it."

    def __init__(self):
        self.calls = []

    def __call__(self, environ, start_response):
        self.calls.append(
            (environ['REQUEST_METHOD'], environ['PATH_INFO']))
        return tryton_app(environ, start_response)


@unittest.skipUnless(backend.name == 'postgresql',
    "the booking engine serves PostgreSQL")
class EngineBookingAPITestCase(test_booking.BookingAPITestCase):
    "Test the booking API through the booking engine"

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.tryton = CountingApp()
        cls.engine_app = EngineApp(cls.tryton)

    @classmethod
    def tearDownClass(cls):
        cls.engine_app.close()
        super().tearDownClass()

    def client(self):
        return Client(self.engine_app, Response)

    def test_engine_answers_without_tryton(self):
        "Book, pay and read an order without trytond's request handling"
        slot = self.day_slot()
        del self.tryton.calls[:]
        booked = self.book(self.body(slot, [new_id()]))
        self.assertEqual(booked.status_code, 201, booked.get_data())
        paid = self.pay(booked.json)
        self.assertEqual(paid.status_code, 200, paid.get_data())
        got = self.client().get(self.url(f"/orders/{booked.json['order']}"),
            headers=self.headers(idempotency=False))
        self.assertEqual(got.json, paid.json)
        self.assertEqual(self.tryton.calls, [])
        # the rows are the back office's, with their audit columns
        with Transaction().start(DB_NAME, 0, readonly=True):
            Order = Pool().get('scenic.order')
            order, = Order.search(
                [('reference', '=', booked.json['order'])])
            self.assertEqual(order.state, 'paid')
            self.assertTrue(order.create_date)
            self.assertEqual(order.create_uid.id, 0)
            self.assertTrue(all(t.code and t.create_date
                    for t in order.tickets))
            self.assertEqual([p.amount for p in order.payments],
                [Decimal('100')])

    def test_engine_payment_runs_sql_hooks(self):
        "A payment through the engine keeps the slot-sales rollup current"
        slot = self.day_slot()

        def sold():
            with Transaction().start(DB_NAME, 0, readonly=True):
                SlotSales = Pool().get('scenic.slot.sales')
                return sum(s.tickets for s in SlotSales.search(
                        [('slot', '=', slot)]))
        before = sold()
        del self.tryton.calls[:]
        booked = self.book(self.body(slot, [new_id(), new_id()]))
        paid = self.pay(booked.json)
        self.assertEqual(paid.status_code, 200, paid.get_data())
        self.assertEqual(self.tryton.calls, [])
        self.assertEqual(sold(), before + 2)

    def test_engine_availability_same_as_tryton(self):
        "The engine answers availability as trytond's route, without it"
        slot = self.day_slot(capacity=40)
        self.book(self.body(slot, [new_id(), new_id()]))
        with Transaction().start(DB_NAME, 0) as transaction:
            pool = Pool()
            TimeSlot = pool.get('scenic.time_slot')
            Zone = pool.get('scenic.zone')
            first = TimeSlot(slot)
            date = first.date
            main, = Zone.search([('code', '=', 'MAIN')])
            # a zone's slot at the same time and an earlier one: the order
            with Transaction().set_context(company=first.company.id):
                TimeSlot.create([{'company': first.company.id,
                            'zone': main.id, 'date': date,
                            'start_time': first.start_time,
                            'end_time': first.end_time, 'capacity': 5},
                        {'company': first.company.id, 'date': date,
                            'start_time': dt.time(9, 0),
                            'end_time': dt.time(9, 30), 'capacity': 7}])
            transaction.commit()
        path = self.url(f'/availability?date={date}')
        headers = self.headers(idempotency=False)
        del self.tryton.calls[:]
        engine = self.client().get(path, headers=headers)
        self.assertEqual(self.tryton.calls, [])
        tryton = Client(tryton_app, Response).get(path, headers=headers)
        self.assertEqual(engine.status_code, 200, engine.get_data())
        self.assertEqual(engine.json, tryton.json)
        listed = [(s['capacity'], s['available'], s['zone'])
            for s in engine.json['slots']]
        self.assertEqual(listed, [(7, 7, None), (40, 38, None),
                (5, 5, 'MAIN')])
        for query in ['?date=2026-02-30', '']:
            self.assertEqual(
                self.client().get(self.url(f'/availability{query}'),
                    headers=headers).json,
                Client(tryton_app, Response).get(
                    self.url(f'/availability{query}'),
                    headers=headers).json)
        self.assertError(self.client().get(path), 401, 'unauthorized')

    def test_availability_fresh_within_2s(self):
        "A capacity and a price edited in the back office: availability"
        slot = self.day_slot(capacity=40)
        with Transaction().start(DB_NAME, 0, readonly=True):
            date = Pool().get('scenic.time_slot')(slot).date
        path = self.url(f'/availability?date={date}')

        def seen():
            answer = self.client().get(path,
                headers=self.headers(idempotency=False)).json
            listed, = [s for s in answer['slots'] if s['id'] == slot]
            return listed['capacity'], [p['price'] for p in listed['prices']
                if p['ticket_type'] == 'ADULT'][0]
        self.assertEqual(seen(), (40, '100.00'))

        def edit(capacity, price):
            with Transaction().start(DB_NAME, 0) as transaction:
                pool = Pool()
                TicketType = pool.get('scenic.ticket.type')
                TimeSlot = pool.get('scenic.time_slot')
                TicketType.write(TicketType.search(
                        [('code', '=', 'ADULT')]),
                    {'base_price': Decimal(price)})
                TimeSlot.write([TimeSlot(slot)], {'capacity': capacity})
                transaction.commit()
        edit(47, '123')
        try:
            deadline = time.monotonic() + 2
            while (answer := seen()) != (47, '123.00') and (
                    time.monotonic() < deadline):
                time.sleep(0.1)
            self.assertEqual(answer, (47, '123.00'))
        finally:
            edit(40, '100')

    def test_price_change_seen_within_2s(self):
        "A price edited in the back office is quoted by the engine in 2 s"
        self.check_price_change_seen()

    def test_price_change_seen_within_2s_listening(self):
        "Also when trytond notifies cache changes (clean_timeout = 0)"
        from trytond import config
        section = config.has_section('cache')
        if not section:
            config.add_section('cache')
        previous = config.get('cache', 'clean_timeout', default=None)
        config.set('cache', 'clean_timeout', '0')
        try:
            self.check_price_change_seen('77')
        finally:
            if previous is None:
                config.remove_option('cache', 'clean_timeout')
            else:
                config.set('cache', 'clean_timeout', previous)
            # stop the listener trytond started in this process meanwhile
            # (it would keep a session on the test database)
            MemoryCache.drop(DB_NAME)

    def check_price_change_seen(self, new_price='123'):
        slot = self.day_slot()
        self.assertEqual(
            self.book(self.body(slot, [new_id()])).json['total'], '100.00')

        def set_price(price):
            with Transaction().start(DB_NAME, 0) as transaction:
                TicketType = Pool().get('scenic.ticket.type')
                TicketType.write(TicketType.search(
                        [('code', '=', 'ADULT')]),
                    {'base_price': Decimal(price)})
                transaction.commit()
        set_price(new_price)
        try:
            deadline = time.monotonic() + 2
            while True:
                total = self.book(self.body(slot, [new_id()])).json['total']
                if total == f'{new_price}.00' or time.monotonic() > deadline:
                    break
                time.sleep(0.1)
            self.assertEqual(total, f'{new_price}.00')
        finally:
            set_price('100')

    def test_hooked_payment_goes_to_tryton(self):
        "A payment whose moves have hook listeners is paid by Tryton"
        slot = self.day_slot()
        booked = self.book(self.body(slot, [new_id()])).json
        Ticket = Pool(DB_NAME).get('scenic.ticket')
        hooks = Ticket._state_hooks
        Ticket._state_hooks = hooks | {'valid'}
        del self.tryton.calls[:]
        try:
            paid = self.pay(booked)
        finally:
            Ticket._state_hooks = hooks
        self.assertEqual(paid.status_code, 200, paid.get_data())
        self.assertEqual(paid.json['state'], 'paid')
        self.assertEqual(self.tryton.calls,
            [('POST', f"/{DB_NAME}/scenic/v1/orders/{booked['order']}/pay")])

    def test_provider_needing_tryton_goes_to_tryton(self):
        "A payment through a provider that is not engine-safe is Tryton's"
        from ..providers import PROVIDERS
        slot = self.day_slot()
        booked = self.book(self.body(slot, [new_id()])).json
        provider = PROVIDERS['simulated']
        del self.tryton.calls[:]
        provider.engine_safe = False
        try:
            paid = self.pay(booked)
        finally:
            del provider.engine_safe
        self.assertEqual(paid.status_code, 200, paid.get_data())
        self.assertEqual(self.tryton.calls,
            [('POST', f"/{DB_NAME}/scenic/v1/orders/{booked['order']}/pay")])

    def test_engine_refuses_bad_bodies(self):
        "The engine's routes: 413 over 1 MB without a length, 4xx for junk"
        import io

        from werkzeug.test import EnvironBuilder

        from ..web import MAX_BODY
        del self.tryton.calls[:]

        def post(path, body, chunked=False):
            environ = EnvironBuilder(path=self.url(path), method='POST',
                data=body, headers=self.headers()).get_environ()
            if chunked:
                environ.pop('CONTENT_LENGTH', None)
                environ['HTTP_TRANSFER_ENCODING'] = 'chunked'
                environ['wsgi.input_terminated'] = True
                environ['wsgi.input'] = io.BytesIO(body)
            seen = []
            data = b''.join(self.engine_app(environ,
                    lambda status, headers: seen.append(status)))
            return int(seen[0].split()[0]), data
        big = b'{"slot": 1, "x": "' + b'x' * MAX_BODY + b'"}'
        status, data = post('/orders', big, chunked=True)
        self.assertEqual(status, 413, data)
        for body in [b'', b'[]', b'{', b'{"slot": "x"}', b'\xff\xfe',
                b'{"items": [' + b'{}, ' * 1000 + b'{}]}']:
            for chunked in [False, True]:
                with self.subTest(body=body[:20], chunked=chunked):
                    status, data = post('/orders', body, chunked=chunked)
                    self.assertTrue(400 <= status < 500, (status, data))
        self.assertEqual(self.tryton.calls, [])

    def test_unknown_key_and_other_routes(self):
        "A wrong key is refused by the engine; other routes reach Tryton"
        slot = self.day_slot()
        del self.tryton.calls[:]
        response = self.book(self.body(slot, [new_id()]), key='nope')
        self.assertError(response, 401, 'unauthorized')
        self.assertEqual(self.tryton.calls, [])
        self.client().get(self.url('/openapi.json'))
        self.assertEqual(self.tryton.calls,
            [('GET', f'/{DB_NAME}/scenic/v1/openapi.json')])




class EngineHTTPTestCase(unittest.TestCase):
    "The engine's own request and answer (engine.Request, engine.Answer)"

    @staticmethod
    def environ(body=b'', **extra):
        import io
        environ = {'REQUEST_METHOD': 'POST', 'PATH_INFO': '/db/x',
            'QUERY_STRING': '', 'wsgi.input': io.BytesIO(body),
            'REMOTE_ADDR': '10.0.0.7'}
        environ.update(extra)
        return environ

    def test_headers_args_address(self):
        "Headers by any case, the query's first values, the address"
        from ..engine import Request
        request = Request(self.environ(
                HTTP_AUTHORIZATION='Bearer k', HTTP_IDEMPOTENCY_KEY='abc',
                CONTENT_TYPE='application/json',
                QUERY_STRING='date=2026-12-05&date=x&empty='))
        self.assertEqual(request.headers.get('authorization'), 'Bearer k')
        self.assertEqual(request.headers.get('Idempotency-Key'), 'abc')
        self.assertEqual(request.headers.get('Content-Type'),
            'application/json')
        self.assertEqual(request.headers.get('Content-Encoding', ''), '')
        self.assertEqual(request.args.get('date'), '2026-12-05')
        self.assertEqual(request.args.get('empty'), '')
        self.assertIsNone(request.args.get('other'))
        self.assertEqual(request.remote_addr, '10.0.0.7')

    def test_body_as_json_body_reads_it(self):
        "The body by Content-Length, refused over 1 MB with or without it"
        from ..engine import Request
        from ..errors import ApiError
        from ..web import MAX_BODY, json_body
        body = b'{"slot": 1}'
        request = Request(self.environ(body + b'garbage',
                CONTENT_LENGTH=str(len(body))))
        self.assertEqual(json_body(request), {'slot': 1})
        self.assertEqual(request.get_data(cache=True), body)  # cached
        cases = {
            # announced too big: refused before it is read
            'announced': self.environ(b'', CONTENT_LENGTH=str(MAX_BODY + 1)),
            # chunked, the server ending the input: read up to the limit
            'chunked': self.environ(b'{"a":"' + b'x' * MAX_BODY + b'"}',
                HTTP_TRANSFER_ENCODING='chunked',
                **{'wsgi.input_terminated': True}),
            }
        for name, environ in cases.items():
            with self.subTest(name):
                with self.assertRaises(ApiError) as raised:
                    json_body(Request(environ))
                self.assertEqual(raised.exception.code, 'payload_too_large')
                self.assertEqual(raised.exception.status, 413)
                self.assertLessEqual(environ['wsgi.input'].tell(),
                    MAX_BODY + 1)
        # no length and an input the server does not end: no body (as
        # werkzeug), a 422, never a read that waits
        for extra in [{}, {'CONTENT_LENGTH': 'abc'}]:
            with self.subTest(extra=extra):
                with self.assertRaises(ApiError) as raised:
                    json_body(Request(self.environ(b'{"slot": 1}', **extra)))
                self.assertEqual(raised.exception.status, 422)

    def test_answer(self):
        "An answer: status line, JSON headers, the bytes of web's JSON"
        from ..engine import Answer
        from ..ratelimit import RateLimited
        from ..web import error_response, json_text
        seen = []
        answer = Answer({'a': '票', 'n': 1}, status=201,
            headers={'Idempotent-Replayed': 'true'})
        body = b''.join(answer({}, lambda *a: seen.append(a)))
        self.assertEqual(body, json_text({'a': '票', 'n': 1}).encode())
        self.assertEqual(answer.get_data(), body)
        status, headers = seen[0]
        self.assertEqual(status, '201 CREATED')
        self.assertEqual(dict(headers), {'Content-Type': 'application/json',
                'Content-Length': str(len(body)),
                'Idempotent-Replayed': 'true'})
        # errors as every API route answers them, Retry-After included
        refused = error_response(RateLimited("Slow down.", 30),
            respond=Answer)
        del seen[:]
        refused({}, lambda *a: seen.append(a))
        self.assertEqual(seen[0][0], '429 TOO MANY REQUESTS')
        self.assertEqual(dict(seen[0][1])['Retry-After'], '30')
