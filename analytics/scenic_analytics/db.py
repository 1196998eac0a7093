"""Read-only connections to a Scenic database, SQLite or PostgreSQL.

`connect(url)` takes `sqlite:////abs/path.sqlite` (opened with
`mode=ro`: this layer cannot write) or a libpq URL
`postgresql://user@host:port/db` (the session is set read only; in
production the URL names the `scenic_report` role, which has no grant on
the columns holding ID numbers and phones, see roles.py).
"""
import datetime as dt
import re
import sqlite3
import urllib.parse
from zoneinfo import ZoneInfo

import pandas as pd

UTC = dt.timezone.utc
TZ_NAME = re.compile(r'^[A-Za-z0-9_+/-]+$')


def _sqlite_local_date(value, tz):
    "SQLite function: the local date (ISO text) of a naive UTC timestamp."
    if value is None:
        return None
    moment = dt.datetime.fromisoformat(value).replace(tzinfo=UTC)
    return moment.astimezone(ZoneInfo(tz)).date().isoformat()


class Database:
    "One read-only connection and the SQL dialect it speaks."

    def __init__(self, url):
        self.url = url
        parsed = urllib.parse.urlsplit(url)
        if parsed.scheme == 'sqlite':
            path = urllib.parse.unquote(parsed.path)
            if url.startswith('sqlite:////'):
                path = '/' + path.lstrip('/')
            self.connection = sqlite3.connect(
                f'file:{urllib.parse.quote(path)}?mode=ro', uri=True,
                check_same_thread=False)
            self.connection.create_function('scenic_local_date', 2,
                _sqlite_local_date, deterministic=True)
            self.kind = 'sqlite'
        elif parsed.scheme in {'postgresql', 'postgres'}:
            import psycopg
            self.connection = psycopg.connect(url, autocommit=True)
            self.connection.execute(
                'SET SESSION CHARACTERISTICS AS TRANSACTION READ ONLY')
            self.kind = 'postgresql'
        else:
            raise ValueError(f"unsupported database URL scheme "
                f"{parsed.scheme!r}: use sqlite:////path or postgresql://")

    def close(self):
        self.connection.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def param(self, value):
        """A query parameter: datetimes go as naive UTC (as Tryton stores
        them); SQLite compares them as ISO text."""
        if isinstance(value, dt.datetime):
            if value.tzinfo is not None:
                value = value.astimezone(UTC).replace(tzinfo=None)
            if self.kind == 'sqlite':
                return value.isoformat(sep=' ')
        elif isinstance(value, dt.date) and self.kind == 'sqlite':
            return value.isoformat()
        return value

    def local_date(self, column, tz):
        """SQL: the date in `tz` (a ZoneInfo) of a naive UTC timestamp
        column, so that the database can group by local day."""
        if not TZ_NAME.match(tz.key):
            raise ValueError(f"bad time zone name {tz.key!r}")
        if self.kind == 'sqlite':
            return f"scenic_local_date({column}, '{tz.key}')"
        return (f"CAST(({column} AT TIME ZONE 'UTC') "
            f"AT TIME ZONE '{tz.key}' AS DATE)")

    def seconds_between(self, start, end):
        "SQL: whole seconds from timestamp column `start` to `end`."
        if self.kind == 'sqlite':
            return (f"CAST(ROUND((julianday({end}) - julianday({start})) "
                f"* 86400) AS INTEGER)")
        return f"CAST(EXTRACT(EPOCH FROM ({end} - {start})) AS INTEGER)"

    def rows(self, sql, params=()):
        if self.kind == 'sqlite':
            sql = sql.replace('%s', '?')
        cursor = self.connection.cursor()
        try:
            cursor.execute(sql, [self.param(p) for p in params])
            names = [d[0] for d in cursor.description]
            rows = cursor.fetchall()
            if self.kind == 'sqlite':
                # Tryton stores Decimals in SQLite as text blobs.
                rows = [tuple(v.decode() if type(v) is bytes else v
                        for v in row) for row in rows]
            return names, rows
        finally:
            cursor.close()

    def frame(self, sql, params=(), dates=(), timestamps=(), tz=None):
        """The query's rows as a DataFrame; `timestamps` columns (naive
        UTC in the database) become aware in `tz`, `dates` become
        datetime.date."""
        names, rows = self.rows(sql, params)
        frame = pd.DataFrame.from_records(rows, columns=names)
        for name in timestamps:
            values = pd.to_datetime(frame[name], format='ISO8601')
            values = values.dt.tz_localize('UTC')
            frame[name] = values.dt.tz_convert(tz) if tz else values
        for name in dates:
            frame[name] = pd.to_datetime(frame[name]).dt.date
        return frame

    def scalar(self, sql, params=()):
        _, rows = self.rows(sql, params)
        return rows[0][0] if rows else None


def connect(url):
    return Database(url)
