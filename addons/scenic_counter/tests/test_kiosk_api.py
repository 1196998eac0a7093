"""The kiosk's API, the QR on screen and the wallet notification endpoint,
through trytond's WSGI application."""
import json
import uuid
from decimal import Decimal
from unittest import mock

from trytond import backend, config
from trytond.pool import Pool
from trytond.tests.test_tryton import RouteTestCase
from trytond.transaction import Transaction

from .tools import AnyTable, build_windows, configure, person

KIOSK_KEY = 'test-kiosk-key-0123456789'
OFFICE_KEY = 'test-office-key-0123456789'


def build_kiosk():
    "build_windows' area with a kiosk channel and a kiosk sale point."
    pool = Pool()
    Channel = pool.get('scenic.channel')
    Point = pool.get('sale.point')
    w = build_windows(capacity=5)
    channel, = Channel.create([{'company': w.company.id, 'name': "Kiosk",
                'code': 'kiosk', 'kind': 'kiosk'}])
    channel.set_api_key(KIOSK_KEY)
    w.channel.set_api_key(OFFICE_KEY)
    window = w.points[0]
    kiosk, = Point.copy([window], {'name': "Kiosk 1", 'scenic_kind': 'kiosk',
                'scenic_channel': channel.id})
    return w


class KioskAPITestCase(RouteTestCase):
    "Test the kiosk API and the wallet notifications"
    module = 'scenic_counter'

    @classmethod
    def setUpClass(cls):
        configure()
        config.set('scenic_payment', 'kiosk', 'simulated wechat alipay')
        super().setUpClass()

    @classmethod
    def setUpDatabase(cls):
        Transaction()._locked_tables = AnyTable()
        build_kiosk()

    def setUp(self):
        super().setUp()
        from .. import intent
        if backend.name == 'sqlite':
            # One connection in the in-memory test database (test_module).
            patcher = mock.patch.object(intent, '_in_own_transaction',
                lambda func: func())
            patcher.start()
            self.addCleanup(patcher.stop)

    def headers(self, key=KIOSK_KEY):
        return {'Authorization': f'Bearer {key}'}

    def url(self, path):
        return f'/{self.db_name}/scenic/kiosk/v1{path}'

    def get(self, path, key=KIOSK_KEY):
        return self.client().get(self.url(path), headers=self.headers(key))

    def post(self, path, body, key=KIOSK_KEY):
        return self.client().post(self.url(path), headers=self.headers(key),
            json=body)

    def test_page_served(self):
        "The kiosk page and its assets, with the pages' CSP"
        client = self.client()
        page = client.get(f'/{self.db_name}/scenic/kiosk')
        self.assertEqual(page.status_code, 200)
        self.assertIn('kiosk.js?v=', page.get_data(as_text=True))
        self.assertIn("script-src 'self'",
            page.headers['Content-Security-Policy'])
        for name in ['kiosk.js', 'kiosk.css']:
            self.assertEqual(client.get(
                    f'/{self.db_name}/scenic/counter/static/{name}'
                    ).status_code, 200)

    def test_box_from_the_device_registry(self):
        "The kiosk's and the window's box: address and health from the registry"
        from trytond.model.exceptions import ValidationError

        from .. import counter_api

        @self.run_in_db
        def link():
            pool = Pool()
            Box = pool.get('scenic.gate.box')
            Device = pool.get('scenic.gate.device')
            Point = pool.get('sale.point')
            kiosk, = Point.search([('scenic_kind', '=', 'kiosk')])
            box, = Box.create([{'company': kiosk.company.id,
                        'name': "Kiosk PC box"}])
            for bad in ['http://10.0.0.5:8100', 'https://127.0.0.1:8100',
                    'http://127.0.0.1', 'http://localhost:8100/x',
                    'http://127.0.0.1:8100?next=1']:
                with self.assertRaises(ValidationError):
                    Box.write([box], {'local_url': bad})
            Box.write([box], {'local_url': 'http://127.0.0.1:8101'})
            Point.write([kiosk], {'box': box.id})
            Device.create([{'box': box.id, 'kind': 'printer',
                        'name': 'kiosk-printer', 'ok': False,
                        'paper': 'out'}])
            Transaction().commit()
        # A box not enrolled yet is not given to the page.
        self.assertIsNone(self.get('/state').json['box'])

        @self.run_in_db
        def enrol():
            Box = Pool().get('scenic.gate.box')
            box, = Box.search([('name', '=', "Kiosk PC box")])
            token, _ = box.new_enrolment_token()
            Box.enrol(token, hostname='kiosk-pc')
            Transaction().commit()
        self.assertEqual(self.get('/state').json['box'],
            'http://127.0.0.1:8101')

        @self.run_in_db
        def health():
            Transaction()._locked_tables = AnyTable()  # no retry loop here
            pool = Pool()
            Box = pool.get('scenic.gate.box')
            Point = pool.get('sale.point')
            Session = pool.get('sale.point.cash.session')
            box, = Box.search([('name', '=', "Kiosk PC box")])
            kiosk, = Point.search([('scenic_kind', '=', 'kiosk')])
            # The registry shows the kiosk's health on the point and the
            # point on its box.
            self.assertEqual((kiosk.box_online, kiosk.box_alarm,
                    kiosk.printer_paper), (False, 'offline', 'out'))
            self.assertEqual(box.sale_point_names, kiosk.name)
            # A window's shift gives the counter page its PC's box.
            window, = Point.search([('scenic_kind', '=', 'window')],
                limit=1)
            Point.write([window], {'box': box.id})
            shift = Session.open_shift(window, '0')
            self.assertEqual(counter_api._shift_json(shift)['box'],
                'http://127.0.0.1:8101')
            Transaction().rollback()

    def test_kiosk_only_with_a_kiosk_key(self):
        "The booking API's keys of other channels are refused"
        self.assertEqual(self.get('/state', key='nope').status_code, 401)
        self.assertEqual(self.get('/state', key=OFFICE_KEY).status_code,
            401)
        state = self.get('/state').json
        self.assertEqual(state['kiosk'], "Kiosk 1")
        self.assertEqual(state['providers'], ['simulated', 'wechat'][
                :len(state['providers'])])
        self.assertIn('simulated', state['providers'])
        self.assertEqual(state['types'][0]['code'], 'ADULT')

    def buy(self, n):
        slot = self.get('/state').json['slots'][0]
        order = self.post('/orders', {'slot': slot['id'],
                'key': uuid.uuid4().hex, 'items': [{'ticket_type': 'ADULT',
                        'visitors': [person(n)]}]})
        self.assertEqual(order.status_code, 201, order.get_data())
        return order.json

    def test_buy_pay_by_qr_print_once(self):
        "Book, QR, the simulated wallet notifies, printed once"
        order = self.buy(11)
        self.assertEqual((order['state'], order['paid']), ('reserved', False))
        ref = order['order']
        refused = self.post(f'/orders/{ref}/print', {})
        self.assertEqual(refused.json['error']['code'], 'not_payable')
        qr = self.post(f'/orders/{ref}/qr', {'provider': 'simulated'}).json
        self.assertTrue(qr['svg'].startswith('<svg'))
        self.assertIn('/scenic/kiosk/simpay/', qr['code_url'])
        # Asked again (a page reload): the same QR.
        self.assertEqual(self.post(f'/orders/{ref}/qr',
                {'provider': 'simulated'}).json['code_url'], qr['code_url'])
        self.assertEqual(self.post(f'/orders/{ref}/qr',
                {'provider': 'cash'}).json['error']['field'], 'provider')

        client = self.client()
        notify = f'/{self.db_name}/scenic/notify/simulated'
        token = qr['code_url'].rsplit('/', 1)[1]
        wrong = ('y' if token[0] == 'x' else 'x') + token[1:]
        forged = client.post(notify, data=json.dumps(
                {'out_trade_no': ref, 'token': wrong}))
        self.assertEqual(forged.status_code, 401)
        self.assertEqual(forged.json['code'], 'FAIL')
        self.assertFalse(self.get(f'/orders/{ref}').json['paid'])

        page = client.get(qr['code_url'])
        self.assertEqual(page.status_code, 200)
        self.assertIn('simpay-pay', page.get_data(as_text=True))
        paid = client.post(qr['code_url'], data={'order': ref})
        self.assertIn('✓', paid.get_data(as_text=True))
        # Delivered again: nothing more is paid.
        again = client.post(notify, data=json.dumps(
                {'out_trade_no': ref, 'token': token}))
        self.assertEqual(again.status_code, 204)
        self.assertEqual(self.get(f'/orders/{ref}').json['state'], 'paid')

        @self.run_in_db
        def intent_and_payments():
            pool = Pool()
            Intent = pool.get('scenic.counter.provider_intent')
            Order = pool.get('scenic.order')
            intent, = Intent.search([('operation', '=', 'native'),
                    ('reference', '=', ref)])
            self.assertEqual(intent.state, 'paid')
            order, = Order.search([('reference', '=', ref)])
            self.assertEqual(len([p for p in order.payments
                        if p.kind == 'payment']), 1)

        printed = self.post(f'/orders/{ref}/print', {}).json
        self.assertEqual((len(printed['jobs']), printed['already']),
            (1, False))
        self.assertNotIn(person(11)['id_number'], json.dumps(printed))
        again = self.post(f'/orders/{ref}/print', {}).json
        self.assertEqual((again['jobs'], again['already']), ([], True))

    def test_pickup_by_card_prints_unprinted_orders(self):
        "A card picks up today's paid orders once; others' stay"
        mine, other = self.buy(21), self.buy(22)
        client = self.client()
        for order in (mine, other):
            qr = self.post(f"/orders/{order['order']}/qr",
                {'provider': 'simulated'}).json
            client.post(qr['code_url'], data={'order': order['order']})
        picked = self.post('/pickup', {'id_number': person(21)['id_number']})
        self.assertEqual(picked.json['orders'], [mine['order']])
        self.assertEqual(len(picked.json['jobs']), 1)
        again = self.post('/pickup', {'id_number': person(21)['id_number']})
        self.assertEqual((again.json['orders'], again.json['already']),
            ([], 1))
        self.assertEqual(self.post('/pickup', {}).json['error']['field'],
            'id_number')

    def wallet(self, name, adapter):
        "The fake gateway's adapter registered as `name` for one test."
        from scenic_ticket.providers import PROVIDERS, register

        from ..intent import RecordedProvider
        previous = PROVIDERS.get(name)
        register(RecordedProvider(adapter))
        self.addCleanup(lambda: register(previous) if previous
            else PROVIDERS.pop(name, None))

    def payments(self, ref):
        found = []

        @self.run_in_db
        def count():
            Order = Pool().get('scenic.order')
            order, = Order.search([('reference', '=', ref)])
            found.extend(p.provider_reference for p in order.payments
                if p.kind == 'payment')
        return found

    def money(self, ref):
        """The order's state and its scenic.payment rows as (kind, provider
        reference, amount, reference of the payment a refund gives back)"""
        found = []

        @self.run_in_db
        def read():
            Order = Pool().get('scenic.order')
            order, = Order.search([('reference', '=', ref)])
            found.append(order.state)
            found.append(sorted((p.kind, p.provider_reference, p.amount,
                        p.refund_of.provider_reference if p.refund_of
                        else None) for p in order.payments))
        return tuple(found)

    def test_wechat_notifications_over_http(self):
        "WeChat Pay v3: forged and altered pay nothing, replayed pays once"
        from .test_wallets import MERCHANT, FakeWeChat, new_key
        gateway = FakeWeChat(MERCHANT)
        self.wallet('wechat', gateway.adapter(
                notify_url='https://example.test/notify/wechat'))
        ref = self.buy(31)['order']
        gateway.script = {'/v3/pay/transactions/native': [
                (200, {'code_url': 'weixin://wxpay/bizpayurl?pr=K1'})]}
        qr = self.post(f'/orders/{ref}/qr', {'provider': 'wechat'}).json
        self.assertEqual(qr['code_url'], 'weixin://wxpay/bizpayurl?pr=K1')
        self.assertEqual(gateway.calls[0][2]['out_trade_no'], ref)
        self.assertEqual(gateway.calls[0][2]['amount']['total'], 10000)

        client = self.client()
        url = f'/{self.db_name}/scenic/notify/wechat'
        headers, body = gateway.notification(ref, '4200001001', 10000,
            key=new_key())
        forged = client.post(url, headers=headers, data=body)
        self.assertEqual((forged.status_code, forged.json['code']),
            (401, 'FAIL'))
        headers, body = gateway.notification(ref, '4200001001', 10000)
        altered = client.post(url, headers=headers,
            data=body.replace(b'EV-1', b'EV-2'))
        self.assertEqual(altered.status_code, 401)
        self.assertEqual(self.payments(ref), [])
        self.assertEqual(client.post(url, headers=headers, data=body
                ).status_code, 204)
        self.assertEqual(client.post(url, headers=headers, data=body
                ).status_code, 204)
        self.assertEqual(self.payments(ref), ['4200001001'])
        self.assertEqual(len(gateway.calls), 1)   # nothing charged

    def test_alipay_notifications_over_http(self):
        "Alipay: a forged one answers fail and pays nothing; once paid"
        from .test_wallets import MERCHANT, FakeAlipay, new_key
        gateway = FakeAlipay(MERCHANT)
        self.wallet('alipay', gateway.adapter())
        ref = self.buy(32)['order']
        gateway.script = {'alipay.trade.precreate': [
                {'code': '10000', 'qr_code': 'https://qr.alipay.com/K1'}]}
        qr = self.post(f'/orders/{ref}/qr', {'provider': 'alipay'}).json
        self.assertEqual(qr['code_url'], 'https://qr.alipay.com/K1')
        client = self.client()
        url = f'/{self.db_name}/scenic/notify/alipay'
        _, forged = gateway.notification(ref, '2026K1', '100.00',
            key=new_key())
        answer = client.post(url, data=forged, content_type=(
                'application/x-www-form-urlencoded'))
        self.assertEqual(answer.get_data(as_text=True), 'fail')
        _, cheap = gateway.notification(ref, '2026K1', '100.00')
        answer = client.post(url, data=cheap.replace(b'100.00', b'0.01'),
            content_type='application/x-www-form-urlencoded')
        self.assertEqual(answer.get_data(as_text=True), 'fail')
        self.assertEqual(self.payments(ref), [])
        _, body = gateway.notification(ref, '2026K1', '100.00')
        for _ in range(2):
            answer = client.post(url, data=body,
                content_type='application/x-www-form-urlencoded')
            self.assertEqual(answer.get_data(as_text=True), 'success')
        self.assertEqual(self.payments(ref), ['2026K1'])

    def intents(self, ref, trade=None):
        "{operation: (state, result)} of the order's (and trade's) intents"
        found = {}

        @self.run_in_db
        def read():
            Intent = Pool().get('scenic.counter.provider_intent')
            domain = [('reference', '=', ref)]
            if trade:
                domain = ['OR', domain, [('reference', '=', trade)]]
            for intent in Intent.search(domain):
                found[intent.operation] = (intent.state, intent.result,
                    intent.key)
        return found

    def expire_and_close(self, ref, cancel=False):
        "The order's hold expires (or it is cancelled); the cron runs twice"
        import datetime as dt

        from scenic_ticket import reservation

        @self.run_in_db
        def expire():
            Order = Pool().get('scenic.order')
            order, = Order.search([('reference', '=', ref)])
            if cancel:
                reservation.cancel(order.id)
            else:
                reservation.expire_holds(now=reservation.now_utc()
                    + dt.timedelta(days=1))
            self.assertEqual(Order(order.id).state,
                'cancelled' if cancel else 'expired')
            Transaction().commit()
            Intent = Pool().get('scenic.counter.provider_intent')
            Intent.close_wallet_orders()
            Transaction().commit()
            Intent.close_wallet_orders()
            Transaction().commit()

    def test_expired_qr_closed_late_payment_refunded(self):
        "WeChat: an expired order's QR closed once; paid late, refunded once"
        from .test_wallets import MERCHANT, FakeWeChat, new_key
        gateway = FakeWeChat(MERCHANT)
        self.wallet('wechat', gateway.adapter(
                notify_url='https://example.test/notify/wechat'))
        ref = self.buy(41)['order']
        gateway.script = {'/v3/pay/transactions/native': [
                (200, {'code_url': 'weixin://wxpay/bizpayurl?pr=K2'})]}
        self.post(f'/orders/{ref}/qr', {'provider': 'wechat'})
        close_path = f'/v3/pay/transactions/out-trade-no/{ref}/close'
        gateway.script = {close_path: [(204, {})]}
        self.expire_and_close(ref)
        closes = [c for c in gateway.calls if c[1] == close_path]
        self.assertEqual(closes, [('POST', close_path,
                    {'mchid': '1900000001'})])
        intents = self.intents(ref)
        self.assertEqual(intents['native'][0], 'closed')
        self.assertEqual(intents['close'][0], 'done')

        # The visitor paid just before the close: the wallet notifies.
        client = self.client()
        url = f'/{self.db_name}/scenic/notify/wechat'
        calls = len(gateway.calls)
        headers, body = gateway.notification(ref, '4200009001', 10000,
            key=new_key())
        forged = client.post(url, headers=headers, data=body)
        self.assertEqual((forged.status_code, forged.json['code']),
            (401, 'FAIL'))
        self.assertEqual(len(gateway.calls), calls)
        gateway.script = {
            '/v3/pay/transactions/id/4200009001': [(200, {
                        'trade_state': 'SUCCESS',
                        'amount': {'total': 10000}})],
            '/v3/refund/domestic/refunds': [(200, {
                        'status': 'PROCESSING', 'refund_id': '5030009'})],
            }
        headers, body = gateway.notification(ref, '4200009001', 10000)
        for _ in range(2):
            self.assertEqual(client.post(url, headers=headers, data=body
                    ).status_code, 204)
        refunds = [c for c in gateway.calls
            if c[1] == '/v3/refund/domestic/refunds']
        self.assertEqual(len(refunds), 1)
        self.assertEqual(refunds[0][2]['transaction_id'], '4200009001')
        self.assertEqual(refunds[0][2]['amount']['refund'], 10000)
        # In money as in the wallet's settlement file: the late trade and
        # its refund; the order stays expired.
        self.assertEqual(self.money(ref), ('expired', [
                    ('payment', '4200009001', Decimal('100'), None),
                    ('refund', '5030009', Decimal('100'), '4200009001')]))
        intents = self.intents(ref, '4200009001')
        self.assertEqual(intents['native'][0], 'refunded')
        self.assertEqual(intents['refund'],
            ('done', '5030009', 'late-4200009001'))

    def test_cancelled_qr_paid_late_simulated(self):
        "Simulated wallet: a cancelled order's QR is closed; paid, refunded"
        order = self.buy(42)
        ref = order['order']
        qr = self.post(f'/orders/{ref}/qr', {'provider': 'simulated'}).json
        self.expire_and_close(ref, cancel=True)
        self.assertEqual(self.intents(ref)['native'][0], 'closed')
        client = self.client()
        # The simulated wallet's pay page no longer takes the payment.
        page = client.get(qr['code_url'])
        self.assertNotIn('simpay-pay', page.get_data(as_text=True))
        self.assertEqual(client.post(qr['code_url'],
                data={'order': ref}).status_code, 409)
        notify = f'/{self.db_name}/scenic/notify/simulated'
        token = qr['code_url'].rsplit('/', 1)[1]
        wrong = ('y' if token[0] == 'x' else 'x') + token[1:]
        forged = client.post(notify, data=json.dumps(
                {'out_trade_no': ref, 'token': wrong}))
        self.assertEqual(forged.status_code, 401)
        for _ in range(2):
            answer = client.post(notify, data=json.dumps(
                    {'out_trade_no': ref, 'token': token}))
            self.assertEqual(answer.status_code, 204)
        trade = f'SIM-QR-{token[:16]}'
        intents = self.intents(ref, trade)
        self.assertEqual(intents['native'][0], 'refunded')
        self.assertEqual(intents['refund'],
            ('done', f'SIM-REFUND-{trade}', f'late-{trade}'))
        amount = Decimal(order['total'])
        self.assertEqual(self.money(ref), ('cancelled', [
                    ('payment', trade, amount, None),
                    ('refund', f'SIM-REFUND-{trade}', amount, trade)]))
        self.assertEqual(self.get(f'/orders/{ref}').json['state'],
            'cancelled')

    def run_in_db(self, func):
        from trytond.tests.test_tryton import DB_NAME
        with Transaction().start(DB_NAME, 0):
            func()
        return func
