"""A request whose database connection is cut (a failover, a restart)
answers 503 unavailable with Retry-After, not 500 (issue 12).

Without Patroni: on PostgreSQL the handler terminates its own backend
(`pg_terminate_backend(pg_backend_pid())`), which is what a crashed or
demoted primary does to its sessions; on both backends the driver's
OperationalError stands in for it.
"""
import itertools
import unittest

from trytond import backend
from trytond.tests.test_tryton import RouteTestCase
from trytond.transaction import Transaction

from .. import web
from ..errors import ApiError

PREFIX = '/<database_name>/scenic/test-unavailable'
_calls = itertools.count()
_state = {'cut_first': 0}


def _terminate_own_backend():
    cursor = Transaction().connection.cursor()
    cursor.execute('SELECT pg_terminate_backend(pg_backend_pid())')


@web.endpoint('/cut', ['POST'], prefix=PREFIX)
def post_cut(request, caller):
    "Always cut: the retries meet a dead database too."
    next(_calls)
    _terminate_own_backend()
    return web.json_response({'ok': True})


@web.endpoint('/cut-once', ['POST'], prefix=PREFIX)
def post_cut_once(request, caller):
    "Cut on the first try only: the retry on a new connection succeeds."
    if _state['cut_first']:
        _state['cut_first'] -= 1
        _terminate_own_backend()
    return web.json_response({'ok': True})


@web.endpoint('/operational', ['POST'], prefix=PREFIX)
def post_operational(request, caller):
    raise backend.DatabaseOperationalError('server closed the connection '
        'unexpectedly')


@web.endpoint('/bug', ['POST'], prefix=PREFIX)
def post_bug(request, caller):
    raise ZeroDivisionError('a bug')


@web.endpoint('/refused', ['POST'], prefix=PREFIX)
def post_refused(request, caller):
    raise ApiError('sold_out', "Sold out.")


class UnavailableTestCase(RouteTestCase):
    "Test 503 on a database cut away"
    module = 'scenic_ticket'

    def url(self, path):
        return f'/{self.db_name}/scenic/test-unavailable{path}'

    def assertUnavailable(self, response):
        self.assertEqual(response.status_code, 503, response.get_data())
        self.assertEqual(response.headers.get('Retry-After'),
            str(web.RETRY_AFTER_UNAVAILABLE))
        error = response.json['error']
        self.assertEqual(error['code'], 'unavailable')
        self.assertIn('Idempotency-Key', error['message'])

    def test_driver_error_is_503(self):
        "A database error the driver raises is 503 + Retry-After"
        self.assertUnavailable(self.client().post(self.url('/operational'),
                json={}))
        # a bug stays a 500, a refusal its own code
        response = self.client().post(self.url('/bug'), json={})
        self.assertEqual(response.status_code, 500)
        self.assertEqual(response.json['error']['code'], 'internal_error')
        self.assertNotIn('Retry-After', response.headers)
        response = self.client().post(self.url('/refused'), json={})
        self.assertEqual(response.status_code, 409)

    @unittest.skipIf(backend.name != 'postgresql',
        'terminating a backend needs PostgreSQL')
    def test_terminated_backend_is_503(self):
        "A session terminated under the request: retried, then 503"
        before = next(_calls)
        self.assertUnavailable(self.client().post(self.url('/cut'),
                json={}))
        # the first try and the endpoint's retries, each on a new
        # connection (the pool dropped the dead ones)
        self.assertEqual(next(_calls) - before - 1, web.RETRIES + 1)

    @unittest.skipIf(backend.name != 'postgresql',
        'terminating a backend needs PostgreSQL')
    def test_terminated_once_is_retried(self):
        "A session cut once: the retry on a fresh connection answers 200"
        _state['cut_first'] = 1
        response = self.client().post(self.url('/cut-once'), json={})
        self.assertEqual(response.status_code, 200, response.get_data())
        self.assertEqual(_state['cut_first'], 0)
