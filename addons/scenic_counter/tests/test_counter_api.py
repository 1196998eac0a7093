"""The counter page's API through trytond's WSGI application."""
import base64
import uuid


from trytond.pool import Pool
from trytond.tests.test_tryton import DB_NAME, RouteTestCase
from trytond.transaction import Transaction

from .tools import AnyTable, build_windows, configure, person

PASSWORD = 'window-password-2026'


class CounterAPITestCase(RouteTestCase):
    "Test the counter API"
    module = 'scenic_counter'

    @classmethod
    def setUpClass(cls):
        configure()
        super().setUpClass()

    @classmethod
    def setUpDatabase(cls):
        User = Pool().get('res.user')
        Transaction()._locked_tables = AnyTable()  # no retry loop here
        w = build_windows(capacity=3)
        User.write([w.cashier, w.cashier2, w.supervisor],
            {'password': PASSWORD})

    def login(self, login):
        response = self.client().post(f'/{self.db_name}/rpc/', json={
                'method': 'common.db.login', 'id': 1,
                'params': [login, {'password': PASSWORD}, 'en']})
        user_id, token = response.json['result'][:2]
        raw = f'{login}:{user_id}:{token}'.encode()
        return {'Authorization': 'Session ' + base64.b64encode(raw).decode()}

    def url(self, path):
        return f'/{self.db_name}/scenic/counter/v1{path}'

    def get(self, path, headers):
        return self.client().get(self.url(path), headers=headers)

    def post(self, path, headers, body):
        return self.client().post(self.url(path), headers=headers, json=body)

    def test_page_and_assets(self):
        "The page and its two assets are served, nothing else"
        client = self.client()
        page = client.get(f'/{self.db_name}/scenic/counter')
        self.assertEqual(page.status_code, 200)
        self.assertIn('counter.js?v=', page.get_data(as_text=True))
        self.assertIn("script-src 'self'",
            page.headers['Content-Security-Policy'])
        for name in ['counter.js', 'counter.css']:
            self.assertEqual(client.get(
                    f'/{self.db_name}/scenic/counter/static/{name}'
                    ).status_code, 200)
        self.assertEqual(client.get(
                f'/{self.db_name}/scenic/counter/static/counter_page.py'
                ).status_code, 404)
        self.assertNotEqual(client.get(
                f'/{self.db_name}/scenic/counter/static/..%2Ftxn.py'
                ).status_code, 200)

    def test_counter_day_over_http(self):
        "Log in, open, sell with change, refuse others, close"
        self.assertEqual(self.get('/state', {}).status_code, 401)
        self.assertEqual(self.get('/state', {'Authorization':
                    'Session ' + base64.b64encode(
                        b'cashier1:1:forged').decode()}).status_code, 401)
        me = self.login('cashier1')
        other = self.login('cashier2')
        state = self.get('/state', me).json
        self.assertIsNone(state['shift'])
        point = state['points'][0]['id']
        self.assertEqual(self.post('/sell', me, {}).json['error']['code'],
            'no_shift')
        opened = self.post('/shift', me, {'point': point, 'float': '100'})
        self.assertEqual(opened.status_code, 201, opened.get_data())
        self.assertEqual(self.post('/shift', other, {'point': point,
                    'float': '0'}).json['error']['code'], 'shift_open')

        state = self.get('/state', me).json
        self.assertEqual(state['shift']['float'], '100.00')
        slot = state['slots'][0]
        adult = state['types'][0]
        self.assertEqual(adult['code'], 'ADULT')
        # Each slot lists the types it sells (those admitting to its
        # zone) at its own prices.
        self.assertEqual(slot['prices']['ADULT'], adult['price'])
        cash = [m for m in state['methods'] if m['provider'] == 'cash'][0]
        key = uuid.uuid4().hex
        body = {'slot': slot['id'], 'method': cash['id'], 'key': key,
            'tendered': '250', 'items': [{'ticket_type': 'ADULT',
                    'visitors': [person(1), person(2)]}]}
        sale = self.post('/sell', me, body)
        self.assertEqual(sale.status_code, 201, sale.get_data())
        sale = sale.json
        self.assertEqual((sale['total'], sale['change'], sale['tickets']),
            ('200.00', '50.00', 2))
        self.assertEqual(len(sale['jobs']), 2)
        self.assertNotIn(person(1)['id_number'], str(sale['jobs']))
        again = self.post('/sell', me, body).json
        self.assertEqual(again['receipt'], sale['receipt'])
        self.assertEqual(self.get('/state', me).json['slots'][0]['left'], 1)
        refused = self.post('/sell', me, dict(body, key=uuid.uuid4().hex,
                items=[{'ticket_type': 'ADULT',
                        'visitors': [person(3), person(4)]}]))
        self.assertEqual(refused.status_code, 409)
        self.assertEqual(refused.json['error']['code'], 'sold_out')

        # Another cashier has no shift of their own: nothing to act on.
        self.assertEqual(self.post('/close', other, {'counts': {}}
                ).json['error']['code'], 'no_shift')
        self.assertEqual(self.post('/drawer', me, {}).status_code, 200)
        report = self.get('/report', me).json
        self.assertEqual(report['title'], 'X report')
        closed = self.post('/close', me, {'counts': {'100': 3}}).json
        self.assertEqual((closed['state'], closed['difference']),
            ('closed', '0.00'))

        # F7 refund: today's slot has started, past the refund period: a
        # cashier is refused, a supervisor approves at their own window.
        boss = self.login('super1')
        self.assertEqual(self.post('/shift', boss, {'point': state[
                        'points'][1]['id'], 'float': '500'}).status_code,
            201)
        self.assertEqual(self.post('/refund', boss, {'order': 'NOPE'}
                ).status_code, 404)
        self.assertEqual(self.post('/refund', boss, {'order': sale['order'],
                    'approve': 'yes'}).json['error']['field'], 'approve')
        self.assertEqual(self.post('/refund', boss, {'order': sale['order']}
                ).json['error']['code'], 'not_cancellable')
        refunded = self.post('/refund', boss, {'order': sale['order'],
                'approve': True})
        self.assertEqual(refunded.status_code, 200, refunded.get_data())
        self.assertEqual((refunded.json['state'], refunded.json['refunds']),
            ('refunded', [{'method': 'cash', 'amount': '200.00',
                        'trade_number': f"CASH-{sale['order']}"}]))
        self.assertEqual(refunded.json['shift']['expected'], '300.00')
        self.assertEqual(self.post('/close', boss, {'counts': {'100': 3}}
                ).json['state'], 'closed')
        with Transaction().start(DB_NAME, 0, readonly=True):
            Event = Pool().get('scenic.counter.event')
            kinds = sorted(e.kind for e in Event.search([]))
        self.assertEqual(kinds, ['close', 'close', 'drawer', 'open', 'open',
                'print', 'refund', 'sale'])

    def test_payment_code_at_the_window(self):
        "A scanned WeChat payment code pays the sale (micropay)"
        from unittest import mock

        from scenic_ticket.providers import PROVIDERS, register
        from trytond import backend

        from .. import intent
        from ..intent import RecordedProvider
        from .test_wallets import MERCHANT, FakeWeChat
        gateway = FakeWeChat(MERCHANT)
        previous = PROVIDERS.get('wechat')
        register(RecordedProvider(gateway.adapter()))
        self.addCleanup(lambda: register(previous) if previous
            else PROVIDERS.pop('wechat', None))
        if backend.name == 'sqlite':
            patcher = mock.patch.object(intent, '_in_own_transaction',
                lambda func: func())
            patcher.start()
            self.addCleanup(patcher.stop)
        me = self.login('cashier2')
        state = self.get('/state', me).json
        if not state['shift']:
            self.assertEqual(self.post('/shift', me, {
                        'point': state['points'][1]['id'], 'float': '0'}
                    ).status_code, 201)
            state = self.get('/state', me).json
        wechat, = [m for m in state['methods'] if m['provider'] == 'wechat']
        body = {'slot': state['slots'][0]['id'], 'method': wechat['id'],
            'key': uuid.uuid4().hex, 'items': [{'ticket_type': 'CHILD',
                    'visitors': [person(9)]}]}
        refused = self.post('/sell', me, dict(body, payment_code='12ab'))
        self.assertEqual(refused.json['error']['field'], 'payment_code')
        # The window's transaction starts again once holding the receipt
        # sequence's lock; with SQLite's inline intents (above) the retry
        # calls again (on PostgreSQL the intent is committed first and
        # the retry reuses it: test_race).
        gateway.script = {'/v3/pay/transactions/codepay': [
                (200, {'trade_state': 'SUCCESS',
                        'transaction_id': '4200002001'})] * 3}
        sale = self.post('/sell', me, dict(body,
                payment_code='134567890123456789'))
        self.assertEqual(sale.status_code, 201, sale.get_data())
        method, path, sent = gateway.calls[0]
        self.assertEqual(path, '/v3/pay/transactions/codepay')
        self.assertEqual(sent['payer']['auth_code'], '134567890123456789')
        self.assertEqual(sale.json['total'], '50.00')

    def test_pickup_by_reference_and_phone(self):
        "An order picked up by reference and phone prints its tickets"
        import datetime as dt

        from scenic_ticket import reservation
        from scenic_ticket.tests.tools import create_slot

        from .. import window
        from .tools import SHANGHAI
        me = self.login('super1')
        state = self.get('/state', me).json
        if not state['shift']:
            self.assertEqual(self.post('/shift', me, {
                        'point': state['points'][0]['id'], 'float': '0'}
                    ).status_code, 201, self.get('/state', me).get_data())
            state = self.get('/state', me).json
        with Transaction().start(DB_NAME, 0) as transaction:
            Channel = Pool().get('scenic.channel')
            channel, = Channel.search([('code', '=', 'office')])
            with Transaction().set_context(company=channel.company.id):
                # Its own slot (tomorrow): today's 3 places are sold by
                # the other tests.
                zone, = Pool().get('scenic.zone').search([])
                slot = create_slot(channel.company, dt.datetime.now(
                        SHANGHAI).date() + dt.timedelta(days=1), (0, 0),
                    (23, 59), capacity=2, zone=zone)
                order_id, _ = reservation.book(channel, window._request(
                        slot.id, [{'ticket_type': 'CHILD',
                                'visitors': [person(12)]}],
                        contact_phone='13800138000'), 'pickup-by-ref-1')
                order = reservation.pay(order_id, 'simulated',
                    Pool().get('scenic.order')(order_id).total)
                reference = order.reference
                slot_id, zone_name = slot.id, zone.name
            transaction.commit()
        listed, = [s for s in self.get('/state', me).json['slots']
            if s['id'] == slot_id]
        self.assertEqual(listed['zone'], zone_name)
        self.assertIn('CHILD', listed['prices'])
        self.assertEqual(self.post('/pickup', me, {'reference': reference,
                    'phone': '13900139000'}).json['error']['code'],
            'not_found')
        self.assertEqual(self.post('/pickup', me, {'reference': reference}
                ).json['error']['field'], 'phone')
        picked = self.post('/pickup', me, {'reference': reference,
                'phone': '138 0013 8000'}).json
        self.assertEqual(picked['orders'], [reference])
        self.assertEqual(len(picked['jobs']), 1)

    def test_wallet_statement_download(self):
        "A supervisor downloads WeChat Pay's bill; a cashier cannot"
        import datetime as dt
        import hashlib
        import json

        from scenic_ticket.providers import PROVIDERS, register

        from .. import wallets
        from ..intent import RecordedProvider
        from .test_wallets import MERCHANT, FakeWeChat
        gateway = FakeWeChat(MERCHANT)
        previous = PROVIDERS.get('wechat')
        register(RecordedProvider(gateway.adapter()))
        self.addCleanup(lambda: register(previous) if previous
            else PROVIDERS.pop('wechat', None))
        rows = '交易时间,商户订单号\n`2026-12-03 10:00:00,`O1'
        text = json.dumps(rows).encode()
        gateway.script = {
            '/v3/bill/tradebill': [(200, {'hash_type': 'SHA1',
                        'hash_value': hashlib.sha1(text).hexdigest(),
                        'download_url': wallets.WeChatPay.base_url
                        + '/v3/billdownload/file?token=T2'})],
            '/v3/billdownload/file': [(200, rows)]}
        yesterday = (dt.date.today() - dt.timedelta(days=2)).isoformat()
        path = f'/statement?provider=wechat&date={yesterday}'
        cashier = self.get(path, self.login('cashier1'))
        self.assertEqual(cashier.json['error']['code'], 'forbidden')
        supervisor = self.login('super1')
        answer = self.get(path, supervisor)
        self.assertEqual(answer.status_code, 200, answer.get_data())
        self.assertEqual(answer.get_data(), text)
        self.assertIn(f'wechat-{yesterday}.csv',
            answer.headers['Content-Disposition'])
        self.assertEqual(self.get('/statement?provider=cash&date='
                f'{yesterday}', supervisor).json['error']['field'],
            'provider')
        self.assertEqual(self.get('/statement?provider=wechat&date=x',
                supervisor).json['error']['field'], 'date')
