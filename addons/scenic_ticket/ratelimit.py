"""Rate limits of public look-ups, counted in the database (SQLite in the
demo, PostgreSQL in production: every server process sees the same
counts; no other store needed).

A limit counts events per key in fixed windows (`scenic.rate_limit` rows:
key, window start, count). Keys never hold a phone or an address in clear:
they are HMACs under the vault's look-up key. Over the limit,
`RateLimited` carries the seconds until the window ends (the
`Retry-After` of the 429 answer).
"""
import datetime as dt
import hashlib
import hmac

from sql import Literal

from trytond import backend
from trytond.model import ModelSQL, Unique, fields
from trytond.pool import Pool
from trytond.transaction import Transaction

from .dbtools import cursor as db_cursor
from .dbtools import insert, naive, now_utc, rendered, user
from .dbtools import table as sql_table
from .errors import ApiError
from .vault import pii_vault


class RateLimit(ModelSQL):
    "Rate Limit Counter"
    __name__ = 'scenic.rate_limit'
    key = fields.Char("Key", required=True, readonly=True)
    window = fields.DateTime("Window", required=True, readonly=True)
    count = fields.Integer("Count", required=True, readonly=True)

    @classmethod
    def __setup__(cls):
        super().__setup__()
        t = cls.__table__()
        cls._sql_constraints = [
            ('key_window_unique', Unique(t, t.key, t.window),
                'scenic_ticket.msg_rate_limit_unique'),
            ]


class RateLimited(ApiError):
    "429 too_many_requests, with the seconds to wait."

    def __init__(self, message, retry_after):
        super().__init__('too_many_requests', message)
        self.retry_after = max(1, int(retry_after))


def _key(kind, value):
    digest = hmac.new(pii_vault().lookup_key(),
        f'rate:{kind}:{value}'.encode(), hashlib.sha256).hexdigest()
    return f'{kind}:{digest[:40]}'


def _window(now, seconds):
    epoch = int(now.timestamp()) // seconds * seconds
    return dt.datetime.fromtimestamp(epoch, dt.timezone.utc)


def select_count(rate_key, window):
    "The query of a key's count in a window (see `window_of`)."
    table = sql_table('scenic.rate_limit')
    return table.select(table.count,
        where=(table.key == rate_key) & (table.window == window))


def _update_count(rate_key, window):
    table = sql_table('scenic.rate_limit')
    return table.update([table.count], [table.count + Literal(1)],
        where=(table.key == rate_key) & (table.window == window))


def window_of(kind, value, seconds, now):
    "(key, window as stored, the window's end) of an event now."
    window = _window(now, seconds)
    return (_key(kind, value), naive(window),
        window + dt.timedelta(seconds=seconds))


def count(kind, value, seconds, now=None):
    "(events in the current window, its end) for this key."
    now = now or now_utc()
    key, window, end = window_of(kind, value, seconds, now)
    cursor = db_cursor()
    cursor.execute(*rendered('rate_count', select_count,
            rate_key=key, window=window))
    row = cursor.fetchone()
    return (row[0] if row else 0), end


def refuse(events, limit, end, message, now):
    "Raise RateLimited when `limit` events are already counted."
    if events >= limit:
        raise RateLimited(message, (end - now).total_seconds())


def check(kind, value, limit, seconds, message, now=None):
    "Raise RateLimited when `limit` events are already counted."
    now = now or now_utc()
    events, end = count(kind, value, seconds, now)
    refuse(events, limit, end, message, now)


def add(kind, value, seconds, now=None, durable=True):
    """Count one event for this key in the current window. `durable`
    False (PostgreSQL): the transaction's commit does not wait for the
    disk; the caller commits the count on its own."""
    table = sql_table('scenic.rate_limit')
    now = now or now_utc()
    window = naive(_window(now, seconds))
    key = _key(kind, value)
    cursor = db_cursor()
    if backend.name == 'postgresql':
        # one statement (sql/engine.sql): update, else insert
        cursor.execute('SELECT scenic_rate_add(%s, %s, %s, %s, %s)',
            (key, window, user(), naive(now_utc()), durable))
        return
    cursor.execute(*rendered('rate_add', _update_count,
            rate_key=key, window=window))
    if not cursor.rowcount:
        # a racing first event hits the unique key: the endpoint retries
        insert(table, [{'key': key, 'window': window, 'count': 1}])


def purge(before_days=2):
    "Drop the counters of windows that ended long ago (cron)."
    table = Pool().get('scenic.rate_limit').__table__()
    cursor = Transaction().connection.cursor()
    cursor.execute(*table.delete(where=table.window < naive(
                now_utc() - dt.timedelta(days=before_days))))
