"""The demo's history on PostgreSQL, read through the `scenic_report` role.

The dashboards and notebooks run on SQLite against the demo (whose ERP and
box make the data move) and, to check the reporting layer's PostgreSQL
dialect end to end, on a copy of the same demo database in a throwaway
PostgreSQL server (the ``pg_uri`` fixture): every table the reporting role
may read (scenic_*, company_company, currency_currency and the ledger's
account_account, account_move, account_move_line; see
scenic_analytics.roles) is copied with PostgreSQL column types, then the
read-only role is created by scenic_analytics.roles and the tests connect as
that role only.

``pg_history`` (session): a PgHistory with ``url`` (the role's URL) and
``admin`` (the owner's URL, for tests that add rows as the ERP would).
"""
import os
import sqlite3
from dataclasses import dataclass

import pytest

# Tryton's SQLite column types -> PostgreSQL (others are copied as text).
TYPES = {
    # as Tryton declares them on PostgreSQL (SUM(integer) is bigint there)
    'INTEGER': 'integer', 'BIGINT': 'bigint', 'VARCHAR': 'varchar',
    'TEXT': 'text', 'NUMERIC': 'numeric', 'TIMESTAMP': 'timestamp',
    'DATETIME': 'timestamp', 'DATE': 'date', 'TIME': 'time',
    'BOOLEAN': 'boolean', 'FLOAT': 'double precision', 'BLOB': 'bytea',
    }


@dataclass
class PgHistory:
    url: str
    admin: str


def _pg_type(declared):
    return TYPES.get((declared or '').split('(')[0].upper(), 'text')


def copy_database(sqlite_path, admin_url):
    """Copy the tables the reporting role may read from the SQLite file to
    the (empty) PostgreSQL database of `admin_url`; returns the table count.
    """
    import psycopg
    from psycopg import sql
    from scenic_analytics.roles import TABLE
    source = sqlite3.connect(f'file:{sqlite_path}?mode=ro', uri=True)
    tables = [name for name, in source.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' "
            "ORDER BY name") if TABLE.match(name)]
    with psycopg.connect(admin_url, autocommit=True) as target:
        for table in tables:
            columns = [(name, _pg_type(declared)) for _, name, declared, *_
                in source.execute(f'PRAGMA table_info("{table}")')]
            target.execute(sql.SQL('CREATE TABLE {} ({})').format(
                    sql.Identifier(table), sql.SQL(', ').join(
                        sql.SQL('{} ' + kind + (
                                ' PRIMARY KEY' if name == 'id' else ''))
                        .format(sql.Identifier(name))
                        for name, kind in columns)))
            names = sql.SQL(', ').join(sql.Identifier(n) for n, _ in columns)
            with target.cursor().copy(sql.SQL('COPY {} ({}) FROM STDIN')
                    .format(sql.Identifier(table), names)) as copy:
                for row in source.execute(
                        f'SELECT * FROM "{table}"'):
                    copy.write_row([_value(v, kind)
                            for v, (_, kind) in zip(row, columns)])
    source.close()
    return len(tables)


def _value(value, kind):
    # Tryton keeps Decimals in SQLite as text blobs, Booleans as 0/1.
    if type(value) is bytes and kind != 'bytea':
        return value.decode()
    if kind == 'boolean' and value is not None:
        return bool(value)
    return value


@pytest.fixture(scope='session')
def pg_history(pg_uri, demo_server):
    "The demo database's copy on PostgreSQL and the reporting role's URL."
    import psycopg
    from scenic_analytics.roles import create_role
    if demo_server.db is None:
        pytest.skip("needs the demo's SQLite file")
    server = pg_uri.rstrip('/')
    name = f'scenic_history_{os.getpid()}'
    role = f'scenic_report_{os.getpid()}'
    with psycopg.connect(f'{server}/postgres', autocommit=True) as con:
        con.execute(f'DROP DATABASE IF EXISTS {name}')
        con.execute(f'CREATE DATABASE {name}')
    admin = f'{server}/{name}'
    assert copy_database(demo_server.db, admin) > 10
    create_role(admin, role, password='report-pass')
    host = server.split('://', 1)[1].split('@')[-1]
    try:
        yield PgHistory(f'postgresql://{role}:report-pass@{host}/{name}',
            admin)
    finally:
        with psycopg.connect(f'{server}/postgres', autocommit=True) as con:
            con.execute(f'DROP DATABASE IF EXISTS {name} WITH (FORCE)')
            con.execute(f'DROP ROLE IF EXISTS {role}')
