"""Set-based reads and writes of many rows, fast on both backends.

The driver converts every value one by one in Python, and parses every
placeholder of a statement: a batch of 1000 scans written row by row, or
read with 1000-long IN lists, costs seconds. On PostgreSQL a batch goes as
one JSON parameter (an array of row arrays, read as jsonb), an IN list as
one array literal in a text parameter, and rows come back as one JSON value
(`json_agg`); on SQLite, whose driver is C, plain statements do.
"""
import datetime as dt
import json

from sql import Cast
from sql.operators import Any

from trytond import backend
from trytond.model.fields import SQL_OPERATORS
from trytond.transaction import Transaction


def _server():
    return backend.name == 'postgresql'


_BIGINT = range(-2 ** 63, 2 ** 63)


class _Any(Any):
    "ANY(an array expression): python-sql parenthesises only lists."
    __slots__ = ()

    def __str__(self):
        return f'ANY({self._format(self.operand)})'


def in_(column, values):
    """column IN values; on PostgreSQL one text parameter cast to an array:
    psycopg dumps a list element by element in Python."""
    values = list(values)
    if _server() and values:
        if all(type(v) is int and v in _BIGINT for v in values):
            return column == _Any(Cast(
                    '{' + ','.join(map(str, values)) + '}', 'BIGINT[]'))
        if all(type(v) is str for v in values):
            return column == _Any(Cast('{' + ','.join(
                        '"' + v.replace('\\', '\\\\').replace('"', '\\"')
                        + '"' for v in values) + '}', 'VARCHAR[]'))
    return SQL_OPERATORS['in'](column, values)


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


def _record(Model, names):
    """The columns of names read from the row arrays `r` of _json(): jsonb,
    as json's `->>` would parse each array from its start."""
    database = Transaction().database
    return ', '.join(
        f'(r->>{i})::{database.sql_type(Model._fields[n]._sql_type).base} '
        f'AS {_quote(n)}' for i, n in enumerate(names))


def _json(values):
    "Rows as arrays: objects would spell every column name 1000 times."
    return json.dumps(values, default=_default)


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
            f'SELECT {_record(Model, names)} '
            'FROM jsonb_array_elements(%s::jsonb) AS r')
        if conflict:
            sql += (' ON CONFLICT ('
                + ', '.join(_quote(c) for c in conflict) + ') DO NOTHING')
        cursor.execute(sql, (_json(values),))
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
            f'FROM (SELECT {_record(Model, ["id"] + names)} '
            'FROM jsonb_array_elements(%s::jsonb) AS r) AS r '
            'WHERE t."id" = r."id"')
        cursor.execute(sql, (_json(values),))
        return
    first = values[0]
    query = table.update([getattr(table, n) for n in names], first[1:],
        where=table.id == first[0])
    sql, _ = tuple(query)
    cursor.executemany(sql, [v[1:] + [v[0]] for v in values])
