"""The dashboards on the demo database: the Live page built in-process
follows the demo box's scans after one poll; served, they demand a login."""
import sys
import urllib.error
from pathlib import Path

import pytest

from demo_box import until

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / 'dashboards'))

pytestmark = pytest.mark.filterwarnings(
    # Bokeh 3.9 under pandas 3.1 (see panel-facts.md)
    'ignore:The inplace keyword in DataFrame.reset_index:DeprecationWarning')


def tap(demo_box):
    "An admitted scan of the demo annual card, in or else out."
    answer = demo_box.tap_annual_card('MAIN-IN')
    if answer['decision'] != 'open':
        answer = demo_box.tap_annual_card('MAIN-OUT')
    assert answer['decision'] == 'open', answer
    return answer


def test_live_page_follows_scans_after_one_poll(demo_server, demo_box):
    import scenic_dashboards as sd
    from scenic_analytics import connect, reports
    poller = sd.Poller(f'sqlite:///{demo_server.db}')
    try:
        poller.poll()
        live = sd.LivePage(poller)
        today = sd.TodayPage(poller)
        revenue = sd.RevenuePage(poller)
        for page in [live, today, revenue]:
            assert page.view().get_root() is not None
        before = live.total.value
        bars_before = live.zone_pipe.data.set_index('label')['inside'].sum()
        assert not live.update()      # nothing new: nothing redrawn

        with connect(f'sqlite:///{demo_server.db}') as db:
            company = poller.company
            main = lambda: int(reports.zone_headcount(db, company)  # noqa
                .set_index('code').loc['MAIN', 'inside'])
            stored = main()
            tap(demo_box)
            # the box uploads within its sync interval (0.5 s)
            assert until(lambda: main() != stored, timeout=20), main()
            after = main()

        poller.poll()
        assert live.update()
        assert live.total.value == before + (after - stored)
        assert live.zone_pipe.data.set_index('label')['inside'].sum() \
            == bars_before + (after - stored)
        assert f'data-zone="MAIN">{after}<' in live.zone_table.object
        assert poller.polls == 2
        assert today.update()
    finally:
        poller.stop()


def test_served_dashboards_demand_a_login(demo_server, tmp_path):
    import dashboards_server
    from pgcluster import free_port
    served = dashboards_server.start(demo_server.db, tmp_path, free_port())
    try:
        anonymous = served.opener()
        for path in ['/', '/live', '/today', '/revenue']:
            with anonymous.open(served.url + path, timeout=30) as answer:
                body = answer.read().decode()
            # redirected to the login form: no data, no Bokeh document
            assert '/login' in answer.geturl(), (path, answer.geturl())
            assert 'password' in body and 'scenic-zones' not in body
        bad = served.opener()
        with bad.open(f'{served.url}/login', data=b'username=duty&'
                b'password=wrong', timeout=30) as answer:
            assert '/login' in answer.geturl()
        good = served.opener()
        served.login(good)
        with good.open(f'{served.url}/live', timeout=30) as answer:
            assert '/login' not in answer.geturl()
            assert 'bokeh' in answer.read().decode().lower()
    finally:
        dashboards_server.stop(served)
    # loopback only by default
    import serve
    argv, _ = serve.command('sqlite:////x', '127.0.0.1:5006', 'u.json')
    assert argv[argv.index('--address') + 1] == '127.0.0.1'


def test_live_page_on_postgresql_through_the_report_role(pg_history):
    """The same pages on the demo's copy in PostgreSQL, read as the
    read-only role: built, and one poll after the ERP's headcount moves
    (3 more entries in MAIN, written as the owner) updates them."""
    import psycopg
    import scenic_dashboards as sd
    from scenic_analytics import connect, reports
    with psycopg.connect(pg_history.url, autocommit=True) as con, \
            pytest.raises(psycopg.errors.InsufficientPrivilege):
        con.execute('SELECT contact_phone FROM scenic_order')
    poller = sd.Poller(pg_history.url)
    try:
        assert poller.db.kind == 'postgresql'
        poller.poll()
        live = sd.LivePage(poller)
        today = sd.TodayPage(poller)
        revenue = sd.RevenuePage(poller)
        for page in [live, today, revenue]:
            assert page.view().get_root() is not None
        before = live.total.value
        with connect(pg_history.url) as db:
            company = poller.company
            zones = reports.zone_headcount(db, company).set_index('code')
            zone, inside = int(zones.loc['MAIN', 'zone']), \
                int(zones.loc['MAIN', 'inside'])
            day = reports._today(reports.area_timezone(db, company))
        with psycopg.connect(pg_history.admin, autocommit=True) as con:
            updated = con.execute('UPDATE scenic_zone_headcount '
                'SET entries = entries + 3 WHERE zone = %s AND date = %s',
                (zone, day)).rowcount
            if not updated:
                con.execute('INSERT INTO scenic_zone_headcount '
                    '(id, company, zone, date, entries, exits) '
                    'SELECT COALESCE(MAX(id), 0) + 1, %s, %s, %s, 3, 0 '
                    'FROM scenic_zone_headcount', (company, zone, day))
        poller.poll()
        assert live.update()
        assert live.total.value == before + 3
        assert f'data-zone="MAIN">{inside + 3}<' in live.zone_table.object
        # the reports of the notebooks not executed on PostgreSQL
        with connect(pg_history.url) as db:
            start, end = reports.history_period(db, company, 28)
            for report in [reports.no_shows, reports.demand_pricing,
                    reports.channel_mix]:
                assert not report(db, company, start, end).empty, report
    finally:
        poller.stop()


def test_revenue_from_the_ledger_on_postgresql(pg_history):
    """On the demo's copy, through the read-only role: revenue is the
    posted ledger's 5001 + 5051 credits less debits, cash received is what
    the posted receipt and refund batches carry (the payments' own figures
    for the payments posted on their day), and the role reads the ledger's
    amounts but not its parties or descriptions."""
    import psycopg
    from scenic_analytics import connect, reports
    with psycopg.connect(pg_history.url, autocommit=True) as con:
        for column in ['party', 'description']:
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                con.execute(f'SELECT {column} FROM account_move_line')
    with psycopg.connect(pg_history.admin, autocommit=True) as con:
        company, start, end = con.execute(
            "SELECT company, MIN(date), MAX(date) FROM account_move "
            "WHERE state = 'posted' GROUP BY company").fetchone()
        ledger, = con.execute(
            'SELECT SUM(l.credit) - SUM(l.debit) FROM account_move_line l '
            'JOIN account_move m ON m.id = l.move JOIN account_account a '
            "ON a.id = l.account WHERE m.state = 'posted' "
            "AND a.code IN ('5001', '5051')").fetchone()
        # what each posted day's receipts and refunds put on the payment
        # methods' accounts, per batch date
        posted = dict(con.execute(
            'SELECT b.date, SUM(l.debit - l.credit) '
            'FROM scenic_finance_batch b '
            'JOIN account_move_line l ON l.move = b.move '
            "WHERE b.kind IN ('receipts', 'refunds') AND l.account IN "
            '(SELECT account FROM scenic_finance_rule_method) '
            'GROUP BY b.date').fetchall())
    assert ledger > 0
    with connect(pg_history.url) as db:
        revenue = reports.revenue(db, company, start, end)
        assert sum(revenue['revenue']) == ledger
        assert set(revenue['source']) <= {'recognition', 'refunds', 'adjustments'}
        cash = reports.cash_received(db, company, start, end)
        by_day = cash.groupby('day')['net'].agg(lambda s: sum(s, 0))
        assert {d: v for d, v in by_day.items() if v} == {
            d: v for d, v in posted.items() if v}
        daily = reports.recognised_vs_cash(db, company, start, end)
        assert sum(daily['recognised']) == ledger
        assert sum(daily['cash']) == sum(posted.values())
