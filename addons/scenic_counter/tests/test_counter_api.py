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
        with Transaction().start(DB_NAME, 0, readonly=True):
            Event = Pool().get('scenic.counter.event')
            kinds = sorted(e.kind for e in Event.search([]))
        self.assertEqual(kinds,
            ['close', 'drawer', 'open', 'print', 'sale'])
