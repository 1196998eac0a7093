"""Scenic control-room dashboards (Panel + HoloViews): Live, Today, Revenue.

One server-wide `Poller` thread reads the reporting layer every
SCENIC_DASHBOARD_POLL seconds (default 2) into a snapshot; every open page
checks the snapshot's version each second and redraws when it changed, so
ten wall screens cost the database one poll, not ten.

Configuration (environment):
  SCENIC_DASHBOARD_DB       database URL (sqlite:////abs/path.sqlite or
                            postgresql://scenic_report@host/db), required
  SCENIC_DASHBOARD_COMPANY  the area's company id (default: the first)
  SCENIC_DASHBOARD_POLL     seconds between polls (default 2, at most 5)

Serve with `python dashboards/serve.py` (login from a password file, loopback
only) or `panel serve dashboards/live.py dashboards/today.py
dashboards/revenue.py --basic-auth FILE --cookie-secret S`.
"""
import datetime as dt
import os
import threading
import time

import holoviews as hv
import pandas as pd
import panel as pn

from scenic_analytics import connect, reports

hv.extension('bokeh', logo=False)

COLOURS = {'none': '#3a7d44', 'yellow': '#e6c229', 'orange': '#f17105',
    'red': '#d11149'}
LEVEL_LABELS = {'none': "正常 Normal", 'yellow': "黄色预警 Yellow (80 %)",
    'orange': "橙色预警 Orange (90 %)", 'red': "红色预警 Red (95 %)"}
MAX_POLL = 5.0


def first_company(db):
    return db.scalar('SELECT MIN(id) FROM company_company')


class Snapshot:
    "What the Live and Today pages show, read in one poll."

    def __init__(self, db, company, now=None):
        now = now or dt.datetime.now(dt.timezone.utc)
        self.read_at = now
        tz = reports.area_timezone(db, company)
        self.tz = tz
        self.today = now.astimezone(tz).date()
        self.zones = reports.zone_headcount(db, company, self.today)
        self.instant_max = reports.area_instant_max(db, company)
        top = self.zones[self.zones['parent'].isna()]
        self.inside = int(top['inside'].sum())
        start = dt.datetime.combine(self.today, dt.time(), tz)
        flows = reports.gate_flows(db, company, start,
            start + dt.timedelta(days=1))
        self.flows = (flows.groupby('quarter', as_index=False)[
                ['entries', 'exits', 'refused']].sum()
            if not flows.empty else pd.DataFrame(
                {'quarter': pd.Series(dtype='datetime64[ns, UTC]'),
                    'entries': [], 'exits': [], 'refused': []}))
        self.boxes = reports.box_status(db, company, now)
        self.slots = reports.slots_of_day(db, company, self.today, now)
        self.sales = reports.sales_of_day(db, company, self.today)


class Poller:
    "The one thread that reads the database for every open page."

    _shared = None
    _lock = threading.Lock()

    def __init__(self, url, company=None, period=2.0):
        self.url = url
        self.period = min(float(period), MAX_POLL)
        self.db = connect(url)
        self.company = company or first_company(self.db)
        self.snapshot = None
        self.version = 0
        self.polls = 0
        self.error = None
        self._stop = threading.Event()
        self._thread = None
        self._db_lock = threading.Lock()

    @classmethod
    def shared(cls):
        "The server's poller, configured from the environment."
        with cls._lock:
            if cls._shared is None:
                url = os.environ.get('SCENIC_DASHBOARD_DB')
                if not url:
                    raise RuntimeError("SCENIC_DASHBOARD_DB is not set: "
                        "the dashboards need the database URL")
                company = os.environ.get('SCENIC_DASHBOARD_COMPANY')
                cls._shared = cls(url, int(company) if company else None,
                    os.environ.get('SCENIC_DASHBOARD_POLL', 2)).start()
            return cls._shared

    def poll(self, now=None):
        "Read a new snapshot now (the thread calls this every period)."
        with self._db_lock:
            try:
                snapshot = Snapshot(self.db, self.company, now)
            except Exception as e:   # keep serving the last snapshot
                self.error = f"{type(e).__name__}: {e}"
                raise
            self.error = None
            self.snapshot = snapshot
            self.version += 1
            self.polls += 1
        return snapshot

    def start(self):
        self.poll()
        self._thread = threading.Thread(target=self._run, daemon=True,
            name='scenic-dashboard-poller')
        self._thread.start()
        return self

    def _run(self):
        while not self._stop.wait(self.period):
            try:
                self.poll()
            except Exception:
                pass  # shown on the pages as the snapshot's age

    def stop(self):
        self._stop.set()
        if self._thread:
            self._thread.join(timeout=10)
        self.db.close()

    def db_call(self, function, *args):
        "Run a report on the poller's connection (Revenue's period query)."
        with self._db_lock:
            return function(self.db, self.company, *args)


def _zone_bars(data):
    return hv.Bars(data, kdims=['label'], vdims=['inside', 'colour']).opts(
        color='colour', responsive=True, height=320, xlabel='',
        ylabel="在园人数 People inside", title="各区在园人数 Inside per zone",
        tools=['hover'])


def _flow_curves(data):
    arrivals = hv.Curve(data, 'time', 'entries', label="入园 Arrivals")
    exits = hv.Curve(data, 'time', 'exits', label="出园 Exits")
    # Points too: the first quarter of a day is a single point.
    marks = (hv.Scatter(data, 'time', 'entries', label="入园 Arrivals")
        * hv.Scatter(data, 'time', 'exits', label="出园 Exits"))
    return (arrivals * exits * marks).opts(
        hv.opts.Scatter(size=7, tools=['hover']),
        hv.opts.Curve(responsive=True, height=280, tools=['hover'],
            xlabel="时间 Time", ylabel="人次 / 15 分钟 per 15 min"),
        hv.opts.Overlay(title="每15分钟出入园 Arrivals and exits per 15 min",
            legend_position='top_left'))


class LivePage:
    "Headcount per zone, the area's gauge, flows, boxes offline."

    def __init__(self, poller):
        self.poller = poller
        self.version = -1
        self.total = pn.indicators.Number(
            label="全园在园 Area inside", value=0, format='{value:,}',
            default_color='#222', font_size='48pt', title_size='14pt',
            colors=[(80, COLOURS['none']), (90, COLOURS['yellow']),
                (95, COLOURS['orange']), (10 ** 9, COLOURS['red'])])
        # A gauge drawn in HTML: Panel's Gauge needs ECharts from a CDN.
        self.gauge = pn.pane.HTML('', width=460)
        self.zone_pipe = hv.streams.Pipe(data=self._zone_data(None))
        self.flow_pipe = hv.streams.Pipe(data=self._flow_data(None))
        self.zone_table = pn.pane.HTML('', sizing_mode='stretch_width')
        self.boxes = pn.pane.HTML('', sizing_mode='stretch_width')
        self.status = pn.pane.HTML('', sizing_mode='stretch_width')
        self.headline = pn.pane.HTML('')
        self.update()

    # --- data for the charts ---------------------------------------------

    @staticmethod
    def _zone_data(snapshot):
        columns = ['label', 'inside', 'colour']
        if snapshot is None or snapshot.zones.empty:
            return pd.DataFrame({c: [] for c in columns})
        z = snapshot.zones
        return pd.DataFrame({
                'label': [f"{n} ({c})" for n, c in zip(z['name'], z['code'])],
                'inside': z['inside'].astype(int),
                'colour': [COLOURS[level] for level in z['level']]})

    @staticmethod
    def _flow_data(snapshot):
        if snapshot is None or snapshot.flows.empty:
            return pd.DataFrame({'time': pd.Series(dtype='datetime64[ns]'),
                    'entries': pd.Series(dtype=int),
                    'exits': pd.Series(dtype=int)})
        f = snapshot.flows
        return pd.DataFrame({
                'time': f['quarter'].dt.tz_localize(None),
                'entries': f['entries'].astype(int),
                'exits': f['exits'].astype(int)})

    # --- refresh ----------------------------------------------------------

    def update(self):
        "Redraw from the poller's snapshot if it changed; True if redrawn."
        poller = self.poller
        if poller.version == self.version or poller.snapshot is None:
            return False
        snapshot = poller.snapshot
        self.version = poller.version
        load = (round(snapshot.inside * 100 / snapshot.instant_max, 1)
            if snapshot.instant_max else 0)
        self.total.value = snapshot.inside
        self.total.label = (
            f"全园在园 Area inside (max {snapshot.instant_max:,})")
        self.gauge.object = self._gauge_html(load)
        self.headline.object = (
            f'<div class="scenic-headline">全园在园 Area inside '
            f'<b>{snapshot.inside}</b> / {snapshot.instant_max} '
            f'({load} %)</div>')
        self.zone_pipe.send(self._zone_data(snapshot))
        self.flow_pipe.send(self._flow_data(snapshot))
        self.zone_table.object = self._zone_html(snapshot)
        self.boxes.object = self._boxes_html(snapshot)
        age = (dt.datetime.now(dt.timezone.utc)
            - snapshot.read_at).total_seconds()
        error = (f' — <b style="color:#d11149">{poller.error}</b>'
            if poller.error else '')
        read_at = snapshot.read_at.astimezone(snapshot.tz)
        self.status.object = (
            f'<small>更新于 Updated {read_at:%H:%M:%S} ({age:.0f} s)'
            f'{error}</small>')
        return True

    @staticmethod
    def _gauge_html(load):
        level = next((name for threshold, name in
                reports.THRESHOLDS if load >= threshold), 'none')
        marks = ''.join(
            f'<div style="position:absolute;left:{t}%;top:0;bottom:0;'
            f'border-left:2px dashed {COLOURS[n]}"></div>'
            for t, n in reports.THRESHOLDS)
        return (f'<div style="font-size:14pt">全园负荷 Area load '
            f'<b style="color:{COLOURS[level]}">{load} %</b> — '
            f'{LEVEL_LABELS[level]}</div>'
            '<div style="position:relative;height:28px;width:440px;'
            'background:#eee;border-radius:4px">'
            f'<div style="height:100%;width:{min(load, 100)}%;'
            f'background:{COLOURS[level]};border-radius:4px"></div>'
            f'{marks}</div>')

    @staticmethod
    def _zone_html(snapshot):
        rows = ''.join(
            f'<tr style="background:{COLOURS[r.level]}22">'
            f'<td>{r.name} ({r.code})</td><td class="inside" '
            f'data-zone="{r.code}">{r.inside}</td><td>{r.instant_max}</td>'
            f'<td>{"" if r.load != r.load else r.load}</td>'
            f'<td style="color:{COLOURS[r.level]}"><b>'
            f'{LEVEL_LABELS[r.level]}</b></td></tr>'
            for r in snapshot.zones.itertuples())
        return ('<table class="scenic-zones" style="width:100%">'
            '<tr><th>区域 Zone</th><th>在园 Inside</th>'
            '<th>瞬时最大承载量 Instant max</th><th>负荷 Load %</th>'
            '<th>预警 Level</th></tr>' + rows + '</table>')

    @staticmethod
    def _boxes_html(snapshot):
        boxes = snapshot.boxes
        if boxes.empty:
            return '<p>没有已登记的闸机盒 No enrolled boxes</p>'
        rows = []
        for b in boxes.itertuples():
            state = ('<b style="color:#d11149">离线 Offline</b>'
                if b.offline else '在线 Online')
            silent = '—' if b.silent_s != b.silent_s else f'{b.silent_s:.0f}'
            rows.append(f'<tr><td>{b.name}</td><td>{state}</td>'
                f'<td>{silent}</td><td>{b.sync_lag or 0}</td>'
                f'<td>{b.outbox or 0}</td></tr>')
        return ('<table style="width:100%"><tr><th>闸机盒 Box</th>'
            '<th>状态 State</th><th>静默秒数 Silent (s)</th>'
            '<th>同步延迟 Sync lag (s)</th><th>待上传 Outbox</th></tr>'
            + ''.join(rows) + '</table>')

    def view(self):
        return pn.Column(
            pn.pane.Markdown("# 实时监控 Live"),
            self.status,
            pn.Row(pn.Column(self.headline, self.total), self.gauge),
            hv.DynamicMap(_zone_bars, streams=[self.zone_pipe]),
            self.zone_table,
            hv.DynamicMap(_flow_curves, streams=[self.flow_pipe]),
            pn.pane.Markdown("## 闸机盒 Gate boxes"),
            self.boxes,
            sizing_mode='stretch_width')


class TodayPage:
    "Slots (capacity, booked, arrived, no-shows) and sales by channel."

    def __init__(self, poller):
        self.poller = poller
        self.version = -1
        self.slots = pn.pane.HTML('', sizing_mode='stretch_width')
        self.sales = pn.pane.HTML('', sizing_mode='stretch_width')
        self.slot_pipe = hv.streams.Pipe(data=self._slot_data(None))
        self.update()

    @staticmethod
    def _slot_data(snapshot):
        if snapshot is None or snapshot.slots.empty:
            return pd.DataFrame({'slot': [], 'measure': [], 'count': []})
        s = snapshot.slots
        labels = [f"{a:%H:%M}" for a in s['start']]
        rows = []
        for name, column in [("容量 Capacity", 'capacity'),
                ("已订 Booked", 'booked'), ("已入园 Arrived", 'arrived')]:
            rows += [(label, name, int(v)) for label, v in
                zip(labels, s[column])]
        return pd.DataFrame(rows, columns=['slot', 'measure', 'count'])

    def update(self):
        poller = self.poller
        if poller.version == self.version or poller.snapshot is None:
            return False
        snapshot = poller.snapshot
        self.version = poller.version
        self.slot_pipe.send(self._slot_data(snapshot))
        rows = ''.join(
            f'<tr><td>{s.start:%H:%M}–{s.end:%H:%M}</td><td>{s.capacity}</td>'
            f'<td>{s.booked}</td><td>{s.sold}</td><td>{s.arrived}</td>'
            f'<td>{s.no_show}</td></tr>'
            for s in snapshot.slots.itertuples())
        self.slots.object = (
            '<table style="width:100%"><tr><th>时段 Slot</th>'
            '<th>容量 Capacity</th><th>已订 Booked</th><th>已售 Sold</th>'
            '<th>已入园 Arrived</th><th>未到 No-show</th></tr>'
            + rows + '</table>')
        rows = ''.join(
            f'<tr><td>{s.channel}</td><td>{s.ticket_type}</td>'
            f'<td>{s.tickets}</td><td>{s.persons}</td><td>¥{s.amount}</td>'
            f'<td>{s.refunded}</td></tr>'
            for s in snapshot.sales.itertuples())
        self.sales.object = (
            '<table style="width:100%"><tr><th>渠道 Channel</th>'
            '<th>票种 Ticket type</th><th>张数 Tickets</th>'
            '<th>人数 Persons</th><th>金额 Amount</th>'
            '<th>退票 Refunded</th></tr>' + rows + '</table>'
            '<small>按分钟刷新 Refreshed every minute by the ERP</small>')
        return True

    def view(self):
        bars = hv.DynamicMap(lambda data: hv.Bars(
                data, kdims=['slot', 'measure'], vdims=['count']).opts(
                responsive=True, height=320, multi_level=False,
                xlabel="时段 Slot", ylabel="人次 Tickets",
                title="今日各时段 Today's slots", tools=['hover']),
            streams=[self.slot_pipe])
        return pn.Column(pn.pane.Markdown("# 今日 Today"), bars, self.slots,
            pn.pane.Markdown("## 今日销售 Sales by channel and type"),
            self.sales, sizing_mode='stretch_width')


class RevenuePage:
    """Revenue for a period from the posted ledger: recognised revenue
    (5001 + 5051) by day, channel and ticket type, and cash received by
    payment method. The ledger posts a day after it ends: today's cash is
    shown apart, from the payments themselves."""

    def __init__(self, poller, today=None):
        self.poller = poller
        today = today or (poller.snapshot.today if poller.snapshot
            else dt.date.today())
        self.today = today
        self.period = pn.widgets.DateRangePicker(
            label="期间 Period", value=(today - dt.timedelta(days=6), today))
        self.period.param.watch(lambda event: self.refresh(), 'value')
        self.chart = pn.pane.HoloViews(sizing_mode='stretch_width')
        self.methods = pn.pane.HTML('', sizing_mode='stretch_width')
        self.types = pn.pane.HTML('', sizing_mode='stretch_width')
        self.totals = pn.pane.HTML('')
        self.refresh()

    def refresh(self):
        start, end = self.period.value
        earned = self.poller.db_call(reports.revenue, start, end)
        cash = self.poller.db_call(reports.cash_received, start, end)
        unposted = (self.poller.db_call(reports.cash_from_payments,
                self.today, self.today)
            if start <= self.today <= end else None)
        recognised = sum(earned['revenue'], 0) if not earned.empty else 0
        net = sum(cash['net'], 0) if not cash.empty else 0
        today_net = (sum(unposted['net'], 0)
            if unposted is not None and not unposted.empty else 0)
        self.totals.object = (
            f'<h3>确认收入 Revenue recognised: ¥{recognised} · '
            f'净收款 Net cash received: ¥{net} ({start} – {end})</h3>'
            '<small>总账口径 From the posted ledger (5001 + 5051; '
            'payment methods\' accounts), posted after each day ends'
            + (f'; today so far (not posted yet): ¥{today_net}'
                if unposted is not None else '') + '</small>')
        if earned.empty:
            self.chart.object = hv.Bars([], kdims=['day', 'channel'],
                vdims=['revenue'])
        else:
            daily = earned.assign(revenue=earned['revenue'].astype(float),
                day=earned['day'].astype(str)).groupby(
                ['day', 'channel'], as_index=False)['revenue'].sum()
            self.chart.object = hv.Bars(daily, kdims=['day', 'channel'],
                vdims=['revenue']).opts(stacked=True, responsive=True,
                height=320, xlabel="日期 Day", ylabel="确认收入 Revenue (¥)",
                title="每日确认收入 Revenue recognised per day by channel",
                tools=['hover'])
        methods = (cash.groupby('provider')[['payments', 'refunds', 'net']]
            .agg(lambda s: sum(s, 0)) if not cash.empty else None)
        self.methods.object = '<table style="width:100%"><tr>' \
            '<th>支付方式 Method</th><th>收款 Payments</th>' \
            '<th>退款 Refunds</th><th>净额 Net</th></tr>' + ''.join(
                f'<tr><td>{p}</td><td>¥{r.payments}</td><td>¥{r.refunds}'
                f'</td><td>¥{r.net}</td></tr>'
                for p, r in (methods.iterrows() if methods is not None
                    else [])) + '</table>'
        types = (earned.groupby(['ticket_type', 'channel'], as_index=False)[
                'revenue'].agg(lambda s: sum(s, 0))
            if not earned.empty else earned)
        self.types.object = '<table style="width:100%"><tr>' \
            '<th>票种 Ticket type</th><th>渠道 Channel</th>' \
            '<th>确认收入 Revenue</th></tr>' + ''.join(
                f'<tr><td>{r.ticket_type}</td><td>{r.channel}</td>'
                f'<td>¥{r.revenue}</td></tr>'
                for r in types.itertuples()) + '</table>'

    def view(self):
        return pn.Column(pn.pane.Markdown("# 收入 Revenue"), self.period,
            self.totals, self.chart,
            pn.pane.Markdown("## 按支付方式 By payment method"), self.methods,
            pn.pane.Markdown("## 按票种 By ticket type (recognised)"),
            self.types, sizing_mode='stretch_width')


NAV = ('<nav style="font-size:14pt"><a href="./live">实时 Live</a> · '
    '<a href="./today">今日 Today</a> · <a href="./revenue">收入 Revenue</a>'
    ' · <a href="./logout">退出 Log out</a></nav>')


def page(kind):
    """A page of the current session, fed by the server's poller."""
    poller = Poller.shared()
    if kind == 'revenue':
        content = RevenuePage(poller)
    else:
        content = (LivePage if kind == 'live' else TodayPage)(poller)
        # Cheap: compares a version number; the database is read by the
        # poller thread only.
        pn.state.add_periodic_callback(content.update, period=1000)
    titles = {'live': "实时监控 Live", 'today': "今日 Today",
        'revenue': "收入 Revenue"}
    return pn.template.BootstrapTemplate(
        title=f"景区数据看板 Scenic dashboards — {titles[kind]}",
        header=[pn.pane.HTML(NAV)], main=[content.view()])
