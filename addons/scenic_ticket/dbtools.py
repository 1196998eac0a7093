"""What the lean SQL paths (bookings, gate uploads, box sync) share.

Tryton stores timestamps as naive UTC; the domain code works with aware
datetimes. Rows written in SQL carry the audit columns the ORM would have
set, take row locks the same way on every path, and tell the ORM's caches
that what they read before is stale.
"""
import contextvars
import datetime as dt

from sql import Expression, Flavor, For, Table

from trytond import backend
from trytond.transaction import Transaction, TransactionError

UTC = dt.timezone.utc

# The booking engine (engine.py) runs the same SQL paths on its own psycopg
# connection, outside any Tryton transaction: it sets a session for the
# request and these helpers answer from it instead of Transaction().
_session = contextvars.ContextVar('scenic_sql_session', default=None)


class Session:
    "A psycopg connection and the user the rows are written as."

    def __init__(self, connection, user=0):
        self.connection = connection
        self.user = user


def use_session(session):
    "Run the SQL paths on session (a Session) until reset(token)."
    return _session.set(session)


def end_session(token):
    _session.reset(token)


def in_session():
    return _session.get() is not None


def cursor():
    "The cursor of the engine's session, else of the Tryton transaction."
    session = _session.get()
    if session is not None:
        return session.connection.cursor()
    return Transaction().connection.cursor()


def user():
    session = _session.get()
    if session is not None:
        return session.user
    return Transaction().user


def table(model_name):
    "The SQL table of a model (Tryton's ModelSQL._table: dots → _)."
    return Table(model_name.replace('.', '_'))


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
    values[f'{prefix}_uid'] = user()
    values[f'{prefix}_date'] = utcnow()
    return values


# Inserts of up to this many rows are built once per shape (`rendered`);
# larger ones (imports, history) each time, so the shapes kept stay few.
RENDERED_ROWS = 16


def insert(table, rows):
    "Insert dict rows sharing keys, with audit columns; return their ids."
    if not rows:
        return []
    rows = [audit(r) for r in rows]
    names = list(rows[0])
    cursor_ = cursor()
    columns = [getattr(table, n) for n in names]
    values = [[r[n] for n in names] for r in rows]
    if backend.name == 'postgresql':
        if len(values) > RENDERED_ROWS or any(
                isinstance(v, Expression) for r in values for v in r):
            cursor_.execute(*table.insert(
                    columns, values, returning=[table.id]))
        else:
            # a few rows of plain values (the booking's): built once per
            # table, columns and row count
            def build(**marks):
                return table.insert(columns,
                    [[marks[f'v{i}_{j}'] for j in range(len(names))]
                        for i in range(len(values))],
                    returning=[table.id])
            cursor_.execute(*rendered(
                    ('insert', table._name, tuple(names), len(values)),
                    build, **{f'v{i}_{j}': v
                        for i, r in enumerate(values)
                        for j, v in enumerate(r)}))
        return [r[0] for r in cursor_.fetchall()]
    # SQLite refuses RETURNING on the aliased table python-sql writes.
    ids = []
    for row in values:
        cursor_.execute(*table.insert(columns, [row]))
        ids.append(cursor_.lastrowid)
    return ids


class _For(For):
    "python-sql's FOR clause, with SKIP LOCKED (which python-sql ignores)."
    __slots__ = ('skip_locked',)

    def __init__(self, type_, *tables, skip_locked=False, **kwargs):
        super().__init__(type_, *tables, **kwargs)
        self.skip_locked = skip_locked

    def __str__(self):
        return super().__str__() + (' SKIP LOCKED' if self.skip_locked else '')


class _Mark:
    "A named parameter of a statement rendered once (`rendered`)."
    __slots__ = ('name',)

    def __init__(self, name):
        self.name = name


_rendered = {}


def rendered(key, build, /, **values):
    """(SQL, parameters) of the python-sql query `build(**marks)` for
    `values`, built once per key and backend and then only filled in:
    building queries was a third of the booking engine's Python time
    (bench/README.md, "The booking engine"). The query's text must depend
    on `key` only; `build` may use the marks only as values (no arithmetic
    on them in Python)."""
    flavor = Flavor.get()
    cache_key = (key, backend.name, flavor.paramstyle)
    entry = _rendered.get(cache_key)
    if entry is None:
        text, params = tuple(build(**{n: _Mark(n) for n in values}))
        entry = text, tuple((p.name, None) if isinstance(p, _Mark)
            else (None, p) for p in params)
        _rendered[cache_key] = entry
    text, params = entry
    return text, tuple(values[n] if n is not None else p for n, p in params)


def lock(query, skip_locked=False):
    "Make a select lock its rows (PostgreSQL; SQLite locks the database)."
    if backend.name == 'postgresql':
        query.for_ = _For('UPDATE', skip_locked=skip_locked)
    return query


def forget(*model_names):
    """After writes in SQL: the ORM reads these models' records again (all
    models when none is named)."""
    if in_session():
        return      # no ORM cache outside a Tryton transaction
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
    transaction = Transaction()
    connection = transaction.connection
    connection.rollback()
    connection.isolation_level = IsolationLevel.READ_COMMITTED
    _lock_again(transaction)


def _lock_again(transaction):
    """Take again the locks the transaction was started with (the rollback
    above released them). Tryton trusts them: e.g. a strict sequence (the
    ledger's post numbers) reads and bumps its row under its lock alone.
    Blocking (not NOWAIT as at start): under READ COMMITTED a wait ends in
    the latest row, not a serialization error; taken in a fixed order."""
    cursor = transaction.connection.cursor()
    for name in sorted(transaction._locked_tables):
        cursor.execute(f'LOCK "{name}" IN EXCLUSIVE MODE')
    for name, ids in sorted(transaction._locked_records.items()):
        if ids:
            table = Table(name)
            cursor.execute(*table.select(table.id,
                    where=table.id.in_(sorted(ids)),
                    order_by=[table.id], for_=For('UPDATE')))


def read_committed_transaction(function, attempts=5):
    """Run function() in a new transaction under READ COMMITTED and commit.

    Started again with the locks Tryton asks for (TransactionError: e.g.
    posting a move takes a number from the ledger's strict sequence), as
    trytond's dispatcher does for its own transactions.
    """
    extras = {}
    for attempt in range(attempts):
        try:
            with Transaction().new_transaction(**extras) as transaction:
                use_read_committed()
                result = function()
                transaction.commit()
                return result
        except TransactionError as error:
            if attempt == attempts - 1:
                raise
            error.fix(extras)
