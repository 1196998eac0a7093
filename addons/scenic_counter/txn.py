"""One unit of window work in its own transaction, as trytond's RPC does.

Tryton 8 asks for table and record locks to be taken when a transaction
starts: a lock asked later (sale_point's strict receipt sequence, the
shift table when a shift opens) raises a TransactionError that says which,
and the work is started again holding it. Writes run READ COMMITTED like
every booking (dbtools.use_read_committed), which ends the first
database transaction: the locks are taken again after it.
"""
import random
import time

from scenic_ticket.dbtools import use_read_committed

from trytond import backend
from trytond.transaction import Transaction, TransactionError

# A window's receipt sequence is locked NOWAIT by sale_point: a sale that
# finds it taken waits a little and starts again.
RETRIES = 30


def _relock(transaction, extras):
    for table in extras.get('_lock_tables', []):
        transaction.database.lock(transaction.connection, table)
    for table, ids in extras.get('_lock_records', {}).items():
        transaction.database.lock_records(transaction.connection, table, ids)


def run(database_name, user, func, readonly=False, context=None):
    "func() in a transaction as user; committed when it returns."
    extras = {}
    for attempt in range(RETRIES + 1):
        try:
            with Transaction().start(database_name, user,
                    readonly=readonly, context=context, **extras) \
                    as transaction:
                if not readonly:
                    use_read_committed()
                    _relock(transaction, extras)
                result = func()
                if not readonly:
                    transaction.commit()
                return result
        except TransactionError as error:
            if attempt == RETRIES:
                raise
            error.fix(extras)
        except backend.DatabaseOperationalError:
            # A lock not available, a serialization failure or deadlock:
            # start again; nothing was committed.
            if attempt == RETRIES:
                raise
            time.sleep(random.uniform(0.005, 0.02) * (1 + attempt))
