"""Read-only connections to a Scenic database, SQLite or PostgreSQL.

`connect(url)` takes `sqlite:////abs/path.sqlite` (opened with
`mode=ro`: this layer cannot write) or a libpq URL
`postgresql://user@host:port/db` (the session is set read only; in
production the URL names the `scenic_report` role, which has no grant on
the columns holding ID numbers and phones, see roles.py).
"""
import datetime as dt
import sqlite3
import urllib.parse

import pandas as pd

UTC = dt.timezone.utc


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
