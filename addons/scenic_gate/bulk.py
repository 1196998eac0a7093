"""Set-based reads and writes of many rows, fast on both backends.

The driver converts every value one by one in Python, and parses every
placeholder of a statement: a batch of 1000 scans written row by row, or
read with 1000-long IN lists, costs seconds. On PostgreSQL a batch goes as
one JSON parameter (`json_to_recordset`) and comes back as one JSON value
(`json_agg`); on SQLite, whose driver is C, plain statements do.
"""
import datetime as dt
import json

from trytond import backend
from trytond.model.fields import SQL_OPERATORS
from trytond.transaction import Transaction


def _server():
    return backend.name == 'postgresql'


def in_(column, values):
    "column IN values, as one array parameter on PostgreSQL."
    return SQL_OPERATORS['in'](column, list(values))


def _default(value):
    if isinstance(value, (dt.datetime, dt.date)):
        return value.isoformat()
    raise TypeError(f"{value!r} is not JSON serializable")


def _quote(name):
    return '"' + name.replace('"', '""') + '"'


def rows(query):
    """The rows of a python-sql SELECT as dicts keyed by column names
    (use `.as_()` for expressions). Timestamps may come back as ISO text."""
    cursor = Transaction().connection.cursor()
    if _server():
        sql, params = tuple(query)
        cursor.execute(
            "SELECT COALESCE(json_agg(q), '[]')::text "
            f"FROM ({sql}) AS q", params)
        return json.loads(cursor.fetchone()[0])
    cursor.execute(*query)
    names = [d[0] for d in cursor.description]
    return [dict(zip(names, row)) for row in cursor]


def _record_type(Model, names):
    database = Transaction().database
    columns = []
    for name in names:
        field = Model._fields[name]
        columns.append(
            f'{_quote(name)} {database.sql_type(field._sql_type).base}')
    return ', '.join(columns)


def insert(Model, names, values, conflict=None):
    """Insert rows (lists of values in the order of names); with
    `conflict` (column names of a unique constraint), rows that would
    break it are skipped."""
    if not values:
        return
    table = Model.__table__()
    cursor = Transaction().connection.cursor()
    if _server():
        columns = ', '.join(_quote(n) for n in names)
        sql = (f'INSERT INTO {_quote(Model._table)} ({columns}) '
            f'SELECT {columns} FROM json_to_recordset(%s::json) '
            f'AS r({_record_type(Model, names)})')
        if conflict:
            sql += (' ON CONFLICT ('
                + ', '.join(_quote(c) for c in conflict) + ') DO NOTHING')
        cursor.execute(sql, (json.dumps(
                    [dict(zip(names, v)) for v in values],
                    default=_default),))
        return
    from sql import Conflict
    on_conflict = None
    if conflict:
        on_conflict = Conflict(table,
            indexed_columns=[getattr(table, c) for c in conflict])
    query = table.insert([getattr(table, n) for n in names], values[:1],
        on_conflict=on_conflict)
    sql, _ = tuple(query)
    cursor.executemany(sql, values)


def update(Model, names, values):
    """Update rows by id: each of values is [id] + the new values of
    names."""
    if not values:
        return
    table = Model.__table__()
    cursor = Transaction().connection.cursor()
    if _server():
        assignments = ', '.join(
            f'{_quote(n)} = r.{_quote(n)}' for n in names)
        sql = (f'UPDATE {_quote(Model._table)} AS t SET {assignments} '
            'FROM json_to_recordset(%s::json) '
            f'AS r({_record_type(Model, ["id"] + names)}) '
            'WHERE t."id" = r."id"')
        cursor.execute(sql, (json.dumps(
                    [dict(zip(['id'] + names, v)) for v in values],
                    default=_default),))
        return
    first = values[0]
    query = table.update([getattr(table, n) for n in names], first[1:],
        where=table.id == first[0])
    sql, _ = tuple(query)
    cursor.executemany(sql, [v[1:] + [v[0]] for v in values])
