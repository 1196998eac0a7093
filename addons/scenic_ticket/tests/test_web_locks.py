"""An endpoint whose work asks Tryton for a lock it must take at the start
of the transaction (TransactionError, e.g. posting a move numbers it from
the ledger's strict sequence) is started again with that lock, as
trytond's dispatcher does, and keeps it under READ COMMITTED."""
import unittest

from trytond import backend
from trytond.pool import Pool
from trytond.tests.test_tryton import RouteTestCase
from trytond.transaction import Transaction

from .. import web

PREFIX = '/<database_name>/scenic/test-locks'
_tries = []


def _held_elsewhere(table, id_):
    "Whether another connection finds the row locked."
    database = backend.Database(Transaction().database.name).connect()
    connection = database.get_connection()
    try:
        cursor = connection.cursor()
        try:
            cursor.execute(f'SELECT 1 FROM "{table}" WHERE id = %s '
                'FOR UPDATE NOWAIT', (id_,))
        except backend.DatabaseOperationalError:
            return True
        return False
    finally:
        connection.rollback()
        database.put_connection(connection)


@web.endpoint('/lock', ['POST'], prefix=PREFIX)
def post_lock(request, caller):
    User = Pool().get('res.user')
    _tries.append(1)
    User.lock([User(0)])
    held = (_held_elsewhere(User._table, 0)
        if backend.name == 'postgresql' else None)
    return web.json_response({'held': held})


class LocksTestCase(RouteTestCase):
    "Test the endpoint's start again with Tryton's locks"
    module = 'scenic_ticket'

    def test_started_again_with_the_lock(self):
        "A lock asked for mid-transaction: started again with it"
        del _tries[:]
        response = self.client().post(
            f'/{self.db_name}/scenic/test-locks/lock', json={})
        self.assertEqual(response.status_code, 200, response.get_data())
        self.assertEqual(len(_tries), 2)
        if backend.name == 'postgresql':
            # still held after use_read_committed's rollback
            self.assertTrue(response.json['held'])

    @unittest.skipIf(backend.name != 'postgresql', 'row locks of PostgreSQL')
    def test_lock_taken_again_under_read_committed(self):
        "use_read_committed takes the start locks again"
        from ..dbtools import use_read_committed
        with Transaction().start(self.db_name, 0, _lock_records={
                    'res_user': [0]}):
            use_read_committed()
            self.assertTrue(_held_elsewhere('res_user', 0))
