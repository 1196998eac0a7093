"""The PostgreSQL role the reporting layer logs in as: read only, and blind
to personal data.

    python -m scenic_analytics.roles 'postgresql://admin@host/db' \\
        --role scenic_report --password-file /etc/scenic/report.pass

grants CONNECT and SELECT, column by column, on the tables the reports may
read, leaving out every column that holds personal data or secrets (ID
numbers and their hashes, phones, names of people, bindings, keys); of the
ledger (account_account, account_move, account_move_line) only amounts,
accounts, dates and states. Tables of
people (visitors, parties, users) get no grant at all. Run it again after a
module update adds tables or columns: grants are computed from the catalog.
"""
import argparse
import re
import sys

# Tables readable at all: Scenic's own, the area's settings and the ledger
# (whose columns are listed in LEDGER_COLUMNS).
TABLE = re.compile(r'^(scenic_|company_company$|currency_currency$|'
    r'account_account$|account_move$|account_move_line$)')
# The ledger's tables: only these columns (amounts by account and date; no
# party, no free-text description).
LEDGER_COLUMNS = {
    'account_account': {'id', 'company', 'code', 'name', 'type', 'parent',
        'closed'},
    'account_move': {'id', 'company', 'date', 'state', 'journal', 'period',
        'number', 'post_date', 'origin'},
    'account_move_line': {'id', 'move', 'account', 'debit', 'credit'},
    }
# Never granted, whatever their columns.
TABLES_DENIED = {
    'scenic_visitor', 'scenic_signing_key', 'scenic_id_day_usage',
    }
# Columns never granted, in any table (names or parts of names).
COLUMN_DENIED = re.compile(
    r'(phone|id_number|id_masked|id_encrypted|id_hash|holder|contact_|'
    r'binding_|secret|token|password|api_key|idempotency|request_hash|'
    r'^visitor$|email|photo|template)')
# Credentials: the signed ticket codes and the cards' RFID UIDs.
COLUMNS_DENIED = {
    'scenic_ticket': {'code'},
    'scenic_card': {'number'},
    'scenic_gate_scan': {'nonce'},
    }


def grants(cursor, role):
    "The GRANT statements for `role` from the database's catalog."
    cursor.execute(
        "SELECT table_name, column_name FROM information_schema.columns "
        "WHERE table_schema = 'public' ORDER BY table_name, ordinal_position")
    columns = {}
    for table, column in cursor.fetchall():
        if TABLE.match(table) and table not in TABLES_DENIED:
            columns.setdefault(table, []).append(column)
    statements = []
    for table, names in sorted(columns.items()):
        allowed = [n for n in names if not COLUMN_DENIED.search(n)
            and n not in COLUMNS_DENIED.get(table, ())
            and n in LEDGER_COLUMNS.get(table, {n})]
        if allowed:
            statements.append(
                f'GRANT SELECT ({", ".join(_quote(n) for n in allowed)}) '
                f'ON {_quote(table)} TO {_quote(role)}')
    return statements


def _quote(name):
    return '"' + name.replace('"', '""') + '"'


def create_role(admin_url, role='scenic_report', password=None):
    """Create (or update) the read-only role on the database of
    `admin_url` (a superuser or the database owner); returns the number of
    tables granted."""
    import psycopg
    from psycopg import sql
    with psycopg.connect(admin_url, autocommit=True) as con:
        cur = con.cursor()
        cur.execute('SELECT 1 FROM pg_roles WHERE rolname = %s', (role,))
        verb = 'ALTER' if cur.fetchone() else 'CREATE'
        statement = sql.SQL(verb + ' ROLE {} LOGIN NOSUPERUSER NOCREATEDB '
            'NOCREATEROLE').format(sql.Identifier(role))
        if password:
            statement += sql.SQL(' PASSWORD {}').format(
                sql.Literal(password))
        cur.execute(statement)
        cur.execute('SELECT current_database()')
        database, = cur.fetchone()
        # Start from nothing: a column renamed to a personal one loses its
        # grant.
        cur.execute(sql.SQL('REVOKE ALL ON ALL TABLES IN SCHEMA public '
                'FROM {}').format(sql.Identifier(role)))
        cur.execute(sql.SQL('GRANT CONNECT ON DATABASE {} TO {}').format(
                sql.Identifier(database), sql.Identifier(role)))
        cur.execute(sql.SQL('GRANT USAGE ON SCHEMA public TO {}').format(
                sql.Identifier(role)))
        cur.execute(sql.SQL('ALTER ROLE {} SET default_transaction_read_only '
                '= on').format(sql.Identifier(role)))
        statements = grants(cur, role)
        for statement in statements:
            cur.execute(statement)
    return len(statements)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('admin_url')
    parser.add_argument('--role', default='scenic_report')
    parser.add_argument('--password-file',
        help="file whose first line is the role's password")
    args = parser.parse_args(argv)
    password = None
    if args.password_file:
        with open(args.password_file) as f:
            password = f.readline().strip()
    count = create_role(args.admin_url, args.role, password)
    print(f"role {args.role}: SELECT granted on {count} tables "
        "(personal-data columns left out)")


if __name__ == '__main__':
    sys.exit(main())
