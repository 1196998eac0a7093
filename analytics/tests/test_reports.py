"""The reports against the hand-checked fixture (fixture.py)."""
import datetime as dt
import sqlite3
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest

from scenic_analytics import connect, reports

from .fixture import D, build

TZ = ZoneInfo('Asia/Shanghai')
NOW = dt.datetime.combine(D, dt.time(12, 0), TZ)   # noon of D
day = dt.timedelta(days=1)


@pytest.fixture(scope='module')
def db(tmp_path_factory):
    path = build(tmp_path_factory.mktemp('fixture') / 'scenic.sqlite', NOW)
    with connect(f'sqlite:///{path}') as database:
        yield database


def test_read_only(db):
    with pytest.raises(sqlite3.OperationalError, match='readonly'):
        db.connection.execute('DELETE FROM scenic_zone')


def test_bad_url():
    with pytest.raises(ValueError, match='mysql'):
        connect('mysql://x/y')


def test_zone_headcount(db):
    frame = reports.zone_headcount(db, 1, D)
    assert frame[['code', 'inside', 'load', 'level']].values.tolist() == [
        ['MAIN', 85, 85.0, 'yellow'], ['MUSEUM', 10, 100.0, 'red']]
    assert reports.area_instant_max(db, 1) == 150


def test_gate_flows_local_quarters(db):
    start = dt.datetime.combine(D, dt.time(0), TZ)
    frame = reports.gate_flows(db, 1, start, start + day)
    assert [(r.code, r.quarter.strftime('%H:%M'), r.entries, r.exits,
            r.refused) for r in frame.itertuples()] == [
        ('MAIN-IN', '09:00', 5, 0, 1), ('MAIN-OUT', '09:15', 0, 3, 0)]


def test_box_status(db):
    frame = reports.box_status(db, 1, NOW)
    assert frame[['name', 'silent_s', 'offline', 'outbox']].values.tolist() \
        == [['Box A', 30, False, 0], ['Box B', 600, True, 37]]


def test_slots_of_day(db):
    frame = reports.slots_of_day(db, 1, D, now=NOW)
    assert frame[['capacity', 'booked', 'sold', 'arrived', 'no_show']
        ].values.tolist() == [[10, 4, 3, 2, 1], [2, 2, 1, 0, 0]]
    assert frame['start'][1].strftime('%H:%M') == '14:00'


def test_sales_of_day(db):
    frame = reports.sales_of_day(db, 1, D)
    assert [(r.channel, r.ticket_type, r.tickets, r.amount, r.refunded)
        for r in frame.itertuples()] == [
        ('Box Office', 'ADULT', 1, Decimal('120.00'), 1),
        ('Box Office', 'CHILD', 1, Decimal('60.00'), 0),
        ('Web', 'ADULT', 2, Decimal('240.00'), 0)]


def test_cash_from_payments_by_local_day(db):
    frame = reports.cash_from_payments(db, 1, D - 3 * day, D)
    assert [(r.day, r.channel, r.provider, r.payments, r.refunds, r.net)
        for r in frame.itertuples()] == CASH
    assert all(isinstance(v, Decimal) for v in frame['net'])
    by_type = reports.revenue_by_ticket_type(db, 1, D, D)
    assert by_type[['ticket_type', 'channel', 'tickets']].values.tolist() \
        == [['ADULT', 'Box Office', 1], ['ADULT', 'Web', 2],
            ['CHILD', 'Box Office', 1]]


CASH = [(D - 3 * day, 'Web', 'wechat', 240, 0, 240),
    (D - day, 'Box Office', 'wechat', 100, 0, 100),
    (D, 'Box Office', 'alipay', 180, 0, 180),
    (D, 'Box Office', 'wechat', 0, 100, -100)]


def test_cash_received_from_the_ledger(db):
    "Posted receipts split by channel: the payments' figures, day by day."
    frame = reports.cash_received(db, 1, D - 3 * day, D)
    assert [(r.day, r.channel, r.provider, r.payments, r.refunds, r.net)
        for r in frame.itertuples()] == CASH
    ledger = reports.ledger_totals(db, 1, D - 3 * day, D)
    methods = ledger[ledger['account'].isin(['101201', '101202'])]
    assert sum(frame['net']) == sum(methods['debit']) - sum(methods['credit'])


def test_revenue_is_the_ledgers(db):
    frame = reports.revenue(db, 1, D - 3 * day, D)
    assert [(r.day, r.channel, r.ticket_type, r.source, r.revenue)
        for r in frame.itertuples()] == [
        (D, 'Box Office', 'ADULT', 'recognition', Decimal('120.00')),
        (D, 'Box Office', 'CHILD', 'recognition', Decimal('60.00')),
        (D, 'Web', 'ADULT', 'recognition', Decimal('240.00')),
        (D, '-', '-', 'refunds', Decimal('-5.00'))]
    # = the posted 5001 + 5051 credits less debits (the draft move is out)
    ledger = reports.ledger_totals(db, 1, D - 3 * day, D)
    revenue = ledger[ledger['account'].isin(['5001', '5051'])]
    assert sum(frame['revenue']) == Decimal('415.00') \
        == sum(revenue['credit']) - sum(revenue['debit'])
    assert reports.revenue(db, 1, D + day, D + day).empty
    assert reports.ledger_period(db, 1, 4) == (D - 3 * day, D)


def test_day_types_and_arrival_curve(db):
    types = reports.day_types(db, 1, D, D + 4 * day)
    assert types['day_type'].tolist() == [
        'weekday', 'holiday', 'weekday', 'weekday', 'weekend']
    curve = reports.arrival_curve(db, 1, D, D + 4 * day)
    got = {(r.day_type, r.time): round(r.arrivals, 4)
        for r in curve.itertuples()}
    # 3 weekdays in the period: 4 and 2 arrivals on one of them
    assert got == {('weekday', '09:00'): round(4 / 3, 4),
        ('weekday', '09:15'): round(2 / 3, 4), ('weekend', '10:00'): 6.0}


def test_dwell_times(db):
    frame = reports.dwell_times(db, 1, D, D)
    # a histogram counted in the database: one visit of 45 min, one of
    # 150 (the card's usage is not a ticket's)
    assert frame[['day', 'day_type', 'minutes', 'visits']].values.tolist(
        ) == [[D, 'weekday', 45, 1], [D, 'weekday', 150, 1]]
    assert reports.dwell_quantile(frame).to_dict() == {'weekday': 45.0}
    assert reports.dwell_quantile(frame, 0.9).to_dict() == {
        'weekday': 150.0}
    assert reports.dwell_times(db, 1, D + 2 * day, D + 3 * day).empty


def test_dwell_quantile_weighs_visits():
    import pandas as pd
    frame = pd.DataFrame({'day_type': ['weekday'] * 3 + ['weekend'],
            'minutes': [150, 60, 90, 30], 'visits': [1, 5, 3, 2]})
    # weekday: 9 visits, the 5th (median) is at 60, the 7th at 90
    assert reports.dwell_quantile(frame).to_dict() == {
        'weekday': 60.0, 'weekend': 30.0}
    assert reports.dwell_quantile(frame, 0.7).to_dict()['weekday'] == 90.0


def test_no_shows_by_channel_and_lead(db):
    frame = reports.no_shows(db, 1, D, D)
    assert frame.values.tolist() == [
        ['Box Office', 'same day', 2, 1, 0.5],
        ['Web', '2-3 days', 2, 1, 0.5]]


def test_demand_pricing(db):
    frame = reports.demand_pricing(db, 1, D, D)
    first, second = frame.itertuples()
    assert (first.fill, first.avg_price, first.uplift_pct) == (0.4, 120, 20)
    assert first.sold_out_hours_before != first.sold_out_hours_before  # NaN
    assert (second.fill, second.sold_out_hours_before) == (1.0, 6.0)


def test_channel_mix_and_recognised(db):
    mix = reports.channel_mix(db, 1, D, D)
    assert mix[['channel', 'tickets', 'share']].values.tolist() == [
        ['Box Office', 2, 0.5], ['Web', 2, 0.5]]
    frame = reports.recognised_vs_cash(db, 1, D - day, D)
    assert frame[['day', 'recognised', 'cash']].values.tolist() == [
        [D - day, Decimal('0.00'), Decimal('100.00')],
        [D, Decimal('415.00'), Decimal('80.00')]]
    # Cash equals the payments' net day by day (nothing posted late);
    # recognised equals the tickets' value of D (slot sales) less the 5
    # given back beyond the deferral.
    payments = reports.cash_from_payments(db, 1, D - day, D)
    assert [sum(payments[payments['day'] == d]['net'])
        for d in [D - day, D]] == frame['cash'].tolist()
    sold = reports.revenue_by_ticket_type(db, 1, D, D)
    assert sum(sold['amount']) - 5 == frame['recognised'].iloc[1]


def test_forecast(db):
    frame = reports.forecast_arrivals(db, 1, D + day)
    assert frame.values.tolist() == [['Web', 10, 0.5, 5.0]]


def test_history_period_ends_with_arrivals(db):
    "D+1 has sales but no arrivals yet: the period ends on D."
    assert reports.history_period(db, 1, 2, now=NOW + 3 * day) == (D - day, D)


def test_local_date_and_seconds_in_sql(db):
    # 17:30 UTC is 01:30 the next day in Shanghai
    moment = "'2026-01-01 17:30:00'"
    assert db.scalar(f'SELECT {db.local_date(moment, TZ)}') == '2026-01-02'
    assert db.scalar('SELECT ' + db.local_date(moment, ZoneInfo('UTC'))
        ) == '2026-01-01'
    assert db.scalar('SELECT ' + db.seconds_between(moment,
            "'2026-01-01 19:05:30'")) == 5730
    with pytest.raises(ValueError, match='time zone'):
        db.local_date(moment, type('Zone', (), {'key': "UTC'; --"})())
