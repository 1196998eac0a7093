"""The module's PostgreSQL functions (sql/engine.sql): installed and
upgraded with the module.

`install()` runs from scenic.order's `__register__` (`trytond-admin -u
scenic_ticket`, and every test database's set-up): when the database's
`scenic_engine_version()` is not the file's `-- version: N`, the file runs
(it drops and re-creates its functions) and the version function is set to
N, in the registering transaction. SQLite has none: its paths are Python.
"""
import re
from pathlib import Path

from trytond import backend

SQL_FILE = Path(__file__).parent / 'sql' / 'engine.sql'
_VERSION = re.compile(r'^-- version: (\d+)$', re.M)


def file_version(text=None):
    "The version the file declares."
    text = SQL_FILE.read_text() if text is None else text
    match = _VERSION.search(text)
    if not match:
        raise ValueError(f"{SQL_FILE}: no '-- version: N' line")
    return int(match.group(1))


def installed_version(cursor):
    "The version installed in the database (None: none)."
    cursor.execute("SELECT 1 FROM pg_proc "
        "WHERE proname = 'scenic_engine_version'")
    if not cursor.fetchone():
        return None
    cursor.execute('SELECT scenic_engine_version()')
    return cursor.fetchone()[0]


def install(cursor, force=False):
    """Install or upgrade the functions if the database's version is not
    the file's; return whether it ran."""
    if backend.name != 'postgresql':
        return False
    text = SQL_FILE.read_text()
    version = file_version(text)
    if not force and installed_version(cursor) == version:
        return False
    cursor.execute(text)
    cursor.execute('CREATE OR REPLACE FUNCTION scenic_engine_version() '
        f'RETURNS integer LANGUAGE sql IMMUTABLE AS $$SELECT {version}$$')
    return True


def check(cursor):
    "Raise unless the database holds the functions this code calls."
    version = file_version()
    installed = installed_version(cursor)
    if installed != version:
        raise RuntimeError(f"The database's scenic_ticket functions are "
            f"version {installed}, this code needs {version}: update the "
            "module (trytond-admin -u scenic_ticket).")
