"""What the lean SQL paths (bookings, gate uploads, box sync) share.

Tryton stores timestamps as naive UTC; the domain code works with aware
datetimes. Rows written in SQL carry the audit columns the ORM would have
set, take row locks the same way on every path, and tell the ORM's caches
that what they read before is stale.
"""
import datetime as dt

from sql import For

from trytond import backend
from trytond.transaction import Transaction

UTC = dt.timezone.utc


def now_utc():
    "Now, timezone-aware."
    return dt.datetime.now(UTC)


def utcnow():
    "Now as naive UTC, as Tryton stores (and the ORM hands back) timestamps."
    return naive(now_utc())


def naive(value):
    "An aware datetime as Tryton stores it: naive UTC."
    if value is None:
        return None
    return value.astimezone(UTC).replace(tzinfo=None)


def from_db(value):
    "A timestamp as read in SQL: naive UTC (SQLite may hand text back)."
    if isinstance(value, str):
        return dt.datetime.fromisoformat(value)
    return value


def aware(value):
    "A timestamp from the database (naive UTC) as an aware datetime."
    if value is None:
        return None
    return from_db(value).replace(tzinfo=UTC)


def audit(values=None, write=False):
    "The columns every Tryton row carries, added to values."
    values = dict(values or {})
    prefix = 'write' if write else 'create'
    values[f'{prefix}_uid'] = Transaction().user
    values[f'{prefix}_date'] = utcnow()
    return values


def insert(table, rows):
    "Insert dict rows sharing keys, with audit columns; return their ids."
    if not rows:
        return []
    rows = [audit(r) for r in rows]
    names = list(rows[0])
    cursor = Transaction().connection.cursor()
    columns = [getattr(table, n) for n in names]
    values = [[r[n] for n in names] for r in rows]
    if backend.name == 'postgresql':
        cursor.execute(*table.insert(
                columns, values, returning=[table.id]))
        return [r[0] for r in cursor.fetchall()]
    # SQLite refuses RETURNING on the aliased table python-sql writes.
    ids = []
    for row in values:
        cursor.execute(*table.insert(columns, [row]))
        ids.append(cursor.lastrowid)
    return ids


def lock(query, skip_locked=False):
    "Make a select lock its rows (PostgreSQL; SQLite locks the database)."
    if backend.name == 'postgresql':
        query.for_ = For('UPDATE', skip_locked=skip_locked)
    return query


def forget(*model_names):
    """After writes in SQL: the ORM reads these models' records again (all
    models when none is named)."""
    transaction = Transaction()
    if not model_names:
        transaction.cache.clear()
        return
    transaction.counter += 1
    for cache in transaction.cache.values():
        for name in model_names:
            cache.pop(name, None)


def use_read_committed():
    """Let conditional writes see the latest committed row.

    Tryton opens PostgreSQL transactions REPEATABLE READ, where two bookings
    updating the same counter make one fail with a serialization error;
    under READ COMMITTED the second re-checks its WHERE against the first's
    result instead. Only cache syncing has run in the transaction so far,
    so ending it here loses nothing.
    """
    if backend.name != 'postgresql':
        return
    from psycopg import IsolationLevel
    connection = Transaction().connection
    connection.rollback()
    connection.isolation_level = IsolationLevel.READ_COMMITTED
