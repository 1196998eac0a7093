"""A small hand-made Scenic database (the tables and columns the reports
read, as Tryton names them), whose figures are checked by hand in
test_reports.py. Area time zone Asia/Shanghai (UTC+8); D = 2026-12-01, a
Tuesday; D+1 is a public holiday; D+4 a Saturday.
"""
import datetime as dt
import sqlite3

D = dt.date(2026, 12, 1)
SCHEMA = """
CREATE TABLE company_company (id INTEGER PRIMARY KEY, timezone VARCHAR,
    scenic_instant_max INTEGER);
CREATE TABLE scenic_zone (id INTEGER PRIMARY KEY, company INTEGER,
    code VARCHAR, name VARCHAR, parent INTEGER, instant_max INTEGER,
    active BOOLEAN);
CREATE TABLE scenic_zone_headcount (id INTEGER PRIMARY KEY, company INTEGER,
    zone INTEGER, date DATE, entries INTEGER, exits INTEGER);
CREATE TABLE scenic_gate (id INTEGER PRIMARY KEY, company INTEGER,
    code VARCHAR, zone INTEGER);
CREATE TABLE scenic_gate_quarter (id INTEGER PRIMARY KEY, company INTEGER,
    gate INTEGER, quarter TIMESTAMP, entries INTEGER, exits INTEGER,
    refused INTEGER);
CREATE TABLE scenic_zone_minute (id INTEGER PRIMARY KEY, company INTEGER,
    zone INTEGER, minute TIMESTAMP, entries INTEGER, exits INTEGER);
CREATE TABLE scenic_gate_box (id INTEGER PRIMARY KEY, company INTEGER,
    name VARCHAR, state VARCHAR, last_heartbeat TIMESTAMP, sync_lag INTEGER,
    outbox INTEGER, errors INTEGER);
CREATE TABLE scenic_time_slot (id INTEGER PRIMARY KEY, company INTEGER,
    date DATE, start_time TIME, end_time TIME, capacity INTEGER,
    booked INTEGER);
CREATE TABLE scenic_channel (id INTEGER PRIMARY KEY, company INTEGER,
    name VARCHAR, kind VARCHAR);
CREATE TABLE scenic_ticket_type (id INTEGER PRIMARY KEY, company INTEGER,
    code VARCHAR, base_price NUMERIC);
CREATE TABLE scenic_order (id INTEGER PRIMARY KEY, company INTEGER,
    channel INTEGER, state VARCHAR, create_date TIMESTAMP,
    paid_at TIMESTAMP, contact_phone VARCHAR);
CREATE TABLE scenic_order_line (id INTEGER PRIMARY KEY, "order" INTEGER,
    unit_price NUMERIC);
CREATE TABLE scenic_ticket (id INTEGER PRIMARY KEY, company INTEGER,
    "order" INTEGER, line INTEGER, ticket_type INTEGER, slot INTEGER,
    visit_date DATE, persons INTEGER, state VARCHAR);
CREATE TABLE scenic_ticket_usage (id INTEGER PRIMARY KEY, company INTEGER,
    ticket INTEGER, entries INTEGER, last_entry TIMESTAMP,
    last_exit TIMESTAMP);
CREATE TABLE scenic_payment (id INTEGER PRIMARY KEY, company INTEGER,
    "order" INTEGER, kind VARCHAR, provider VARCHAR, amount NUMERIC,
    date TIMESTAMP);
CREATE TABLE account_account (id INTEGER PRIMARY KEY, company INTEGER,
    code VARCHAR);
CREATE TABLE account_move (id INTEGER PRIMARY KEY, company INTEGER,
    date DATE, state VARCHAR);
CREATE TABLE account_move_line (id INTEGER PRIMARY KEY, move INTEGER,
    account INTEGER, debit NUMERIC, credit NUMERIC);
CREATE TABLE scenic_finance_rule (id INTEGER PRIMARY KEY, company INTEGER,
    deferred_account INTEGER, revenue_account INTEGER,
    other_revenue_account INTEGER);
CREATE TABLE scenic_finance_rule_method (id INTEGER PRIMARY KEY,
    rule INTEGER, method VARCHAR, account INTEGER);
CREATE TABLE scenic_finance_batch (id INTEGER PRIMARY KEY, company INTEGER,
    date DATE, kind VARCHAR, move INTEGER, day INTEGER);
CREATE TABLE scenic_finance_day (id INTEGER PRIMARY KEY, company INTEGER,
    date DATE);
CREATE TABLE scenic_finance_day_line (id INTEGER PRIMARY KEY, day INTEGER,
    channel INTEGER, method VARCHAR, ticket_type INTEGER,
    money_in NUMERIC, money_out NUMERIC);
CREATE TABLE scenic_finance_recognition (id INTEGER PRIMARY KEY,
    company INTEGER, batch INTEGER, ticket INTEGER, date DATE,
    kind VARCHAR, amount NUMERIC, ticket_type INTEGER, channel INTEGER,
    quantity INTEGER);
CREATE TABLE scenic_slot_sales (id INTEGER PRIMARY KEY, company INTEGER,
    slot INTEGER, date DATE, channel INTEGER, ticket_type INTEGER,
    tickets INTEGER, persons INTEGER, amount NUMERIC, refunded INTEGER,
    refunded_amount NUMERIC);
CREATE TABLE scenic_calendar_day (id INTEGER PRIMARY KEY, company INTEGER,
    date DATE, kind VARCHAR);
"""


def utc(day, hour, minute=0, days=0):
    "The naive UTC text of a local Shanghai time, as Tryton stores it."
    local = dt.datetime.combine(day + dt.timedelta(days=days),
        dt.time(hour, minute))
    return str(local - dt.timedelta(hours=8))


def build(path, now):
    """Write the fixture to `path`; `now` (aware) places the boxes'
    heartbeats."""
    con = sqlite3.connect(path)
    con.executescript(SCHEMA)
    beat = lambda seconds: str((now - dt.timedelta(seconds=seconds))  # noqa
        .astimezone(dt.timezone.utc).replace(tzinfo=None))
    d = D.isoformat()
    rows = {
        'company_company': [(1, 'Asia/Shanghai', 150)],
        'scenic_zone': [(1, 1, 'MAIN', 'Main Park', None, 100, 1),
            (2, 1, 'MUSEUM', 'Museum', 1, 10, 1)],
        'scenic_zone_headcount': [(1, 1, 1, d, 90, 5), (2, 1, 2, d, 10, 0)],
        'scenic_gate': [(1, 1, 'MAIN-IN', 1), (2, 1, 'MAIN-OUT', 1)],
        'scenic_gate_quarter': [(1, 1, 1, utc(D, 9), 5, 0, 1),
            (2, 1, 2, utc(D, 9, 15), 0, 3, 0)],
        'scenic_zone_minute': [(1, 1, 1, utc(D, 9, 5), 4, 0),
            (2, 1, 1, utc(D, 9, 20), 2, 0),
            (3, 1, 1, utc(D, 10, 0, days=4), 6, 1),
            (4, 1, 2, utc(D, 9, 5), 9, 0)],   # museum: not top level
        'scenic_gate_box': [(1, 1, 'Box A', 'enrolled', beat(30), 2, 0, 0),
            (2, 1, 'Box B', 'enrolled', beat(600), 640, 37, 0),
            (3, 1, 'Box C', 'revoked', beat(9000), 0, 0, 0)],
        'scenic_time_slot': [(1, 1, d, '09:00:00', '10:00:00', 10, 4),
            (2, 1, d, '14:00:00', '15:00:00', 2, 2)],
        'scenic_channel': [(1, 1, 'Web', 'online'),
            (2, 1, 'Box Office', 'box_office')],
        'scenic_ticket_type': [(1, 1, 'ADULT', 100), (2, 1, 'CHILD', 50)],
        'scenic_order': [
            (1, 1, 1, 'partly_used', utc(D, 10, days=-3),
                utc(D, 10, days=-3), '13800138000'),
            (2, 1, 2, 'partly_used', utc(D, 8), utc(D, 8), None),
            (3, 1, 2, 'refunded', utc(D, 23, days=-1),
                utc(D, 23, 30, days=-1), None)],
        'scenic_order_line': [(1, 1, 120), (2, 2, 120), (3, 2, 60),
            (4, 3, 100)],
        'scenic_ticket': [(1, 1, 1, 1, 1, 1, d, 1, 'used'),
            (2, 1, 1, 1, 1, 1, d, 1, 'valid'),
            (3, 1, 2, 2, 1, 1, d, 1, 'used'),
            (4, 1, 2, 3, 2, 2, d, 2, 'valid'),
            (5, 1, 3, 4, 1, 1, d, 1, 'revoked')],
        'scenic_ticket_usage': [
            (1, 1, 1, 1, utc(D, 9, 10), utc(D, 11, 40)),
            (2, 1, 3, 1, utc(D, 9, 30), utc(D, 10, 15)),
            (3, 1, None, 3, utc(D, 9, 0), utc(D, 12, 0))],  # a card
        'scenic_payment': [
            (1, 1, 1, 'payment', 'wechat', 240, utc(D, 10, days=-3)),
            (2, 1, 2, 'payment', 'alipay', 180, utc(D, 8)),
            (3, 1, 3, 'payment', 'wechat', 100, utc(D, 23, 30, days=-1)),
            # 00:30 local on D is still D-1 in UTC
            (4, 1, 3, 'refund', 'wechat', 100, utc(D, 0, 30))],
        # The ledger as scenic_finance posts it (no VAT in this area):
        # receipts into 2203, recognition out of it into 5001 / 5051 (the
        # CHILD type's category goes to 5051), and a refund that gave back
        # 5 beyond the deferral (debited to 5051). Move 6 is a draft.
        'account_account': [(1, 1, '101201'), (2, 1, '101202'),
            (3, 1, '2203'), (4, 1, '5001'), (5, 1, '5051')],
        'scenic_finance_rule': [(1, 1, 3, 4, 5)],
        'scenic_finance_rule_method': [(1, 1, 'wechat', 1),
            (2, 1, 'alipay', 2)],
        'account_move': [(1, 1, (D - dt.timedelta(days=3)).isoformat(),
                'posted'),
            (2, 1, (D - dt.timedelta(days=1)).isoformat(), 'posted'),
            (3, 1, d, 'posted'), (4, 1, d, 'posted'), (5, 1, d, 'posted'),
            (6, 1, d, 'draft')],
        'account_move_line': [(1, 1, 1, 240, 0), (2, 1, 3, 0, 240),
            (3, 2, 1, 100, 0), (4, 2, 3, 0, 100),
            (5, 3, 2, 180, 0), (6, 3, 3, 0, 180),
            (7, 4, 3, 95, 0), (8, 4, 5, 5, 0), (9, 4, 1, 0, 100),
            (10, 5, 3, 420, 0), (11, 5, 4, 0, 360), (12, 5, 5, 0, 60),
            (13, 6, 3, 999, 0), (14, 6, 4, 0, 999)],
        'scenic_finance_batch': [
            (1, 1, (D - dt.timedelta(days=3)).isoformat(), 'receipts', 1, 1),
            (2, 1, (D - dt.timedelta(days=1)).isoformat(), 'receipts', 2, 2),
            (3, 1, d, 'receipts', 3, 3), (4, 1, d, 'refunds', 4, 3),
            (5, 1, d, 'recognition', 5, 3)],
        'scenic_finance_day': [(1, 1, (D - dt.timedelta(days=3)).isoformat()),
            (2, 1, (D - dt.timedelta(days=1)).isoformat()), (3, 1, d)],
        # the settlement's money rows: the payments each day's batches
        # carried, per channel and method (and ticket rows without one)
        'scenic_finance_day_line': [(1, 1, 1, 'wechat', None, 240, 0),
            (2, 1, 1, None, 1, 0, 0),
            (3, 2, 2, 'wechat', None, 100, 0),
            (4, 3, 2, 'alipay', None, 180, 0),
            (5, 3, 2, 'wechat', None, 0, 100)],
        # tickets earned whole: one row per kind, ticket type and channel
        'scenic_finance_recognition': [
            (1, 1, 5, None, d, 'use', 120, 1, 1, 1),
            (2, 1, 5, None, d, 'use', 120, 1, 2, 1),
            (3, 1, 5, None, d, 'expiry', 120, 1, 1, 1),
            (4, 1, 5, None, d, 'expiry', 60, 2, 2, 1)],
        'scenic_slot_sales': [(1, 1, 1, d, 1, 1, 2, 2, 240, 0, 0),
            (2, 1, 1, d, 2, 1, 1, 1, 120, 1, 100),
            (3, 1, 2, d, 2, 2, 1, 2, 60, 0, 0),
            (4, 1, 3, (D + dt.timedelta(days=1)).isoformat(), 1, 1, 10, 10,
                1200, 0, 0)],
        'scenic_calendar_day': [(1, 1, (D + dt.timedelta(days=1)).isoformat(),
                'holiday')],
        }
    for table, values in rows.items():
        marks = ', '.join('?' * len(values[0]))
        con.executemany(f'INSERT INTO {table} VALUES ({marks})', values)
    con.commit()
    con.close()
    return path
