"""Rollups of the scan log the dashboards and notebooks read: people through
each zone per minute and through each gate per quarter hour.

They are kept current in the upload's own transaction (`add_scans`, one call
from upload.py), so a refresh reads a few hundred rows instead of grouping
millions of scans. Counts are what the gates physically let through:
admitted scans (the box opened) in and out, in persons; refused scans are
counted per gate. Buckets are UTC minutes / quarter hours (naive, like the
scan times); readers convert to the area's time zone.

`rebuild` recomputes them from the raw scans (after a set-based history load
or a repair); the tests check that both ways agree.
"""
import datetime as dt

from trytond.model import Index, ModelSQL, Unique, fields
from trytond.pool import Pool
from trytond.transaction import Transaction

from scenic_ticket.area import CompanyMixin

UTC = dt.timezone.utc
QUARTER = 15


def minute_of(at):
    "The naive UTC minute an aware or naive-UTC time falls in."
    if at.tzinfo is not None:
        at = at.astimezone(UTC).replace(tzinfo=None)
    return at.replace(second=0, microsecond=0)


def quarter_of(at):
    minute = minute_of(at)
    return minute.replace(minute=minute.minute - minute.minute % QUARTER)


class ZoneMinute(CompanyMixin, ModelSQL):
    "People the gates of a zone let in and out during one minute (UTC)."
    __name__ = 'scenic.zone.minute'
    zone = fields.Many2One(
        'scenic.zone', "Zone", required=True, ondelete='CASCADE')
    minute = fields.Timestamp("Minute", required=True)
    entries = fields.Integer("Entries", required=True)
    exits = fields.Integer("Exits", required=True)

    @classmethod
    def __setup__(cls):
        super().__setup__()
        t = cls.__table__()
        cls._sql_constraints += [
            ('zone_minute_unique', Unique(t, t.zone, t.minute),
                'scenic_gate.msg_rollup_unique'),
            ]
        cls._sql_indexes.add(
            Index(t, (t.company, Index.Equality()),
                (t.minute, Index.Range())))


class GateQuarter(CompanyMixin, ModelSQL):
    "People a gate let in and out, and scans it refused, per quarter hour."
    __name__ = 'scenic.gate.quarter'
    gate = fields.Many2One(
        'scenic.gate', "Gate", required=True, ondelete='CASCADE')
    quarter = fields.Timestamp("Quarter", required=True)
    entries = fields.Integer("Entries", required=True)
    exits = fields.Integer("Exits", required=True)
    refused = fields.Integer("Refused", required=True)

    @classmethod
    def __setup__(cls):
        super().__setup__()
        t = cls.__table__()
        cls._sql_constraints += [
            ('gate_quarter_unique', Unique(t, t.gate, t.quarter),
                'scenic_gate.msg_rollup_unique'),
            ]
        cls._sql_indexes.add(
            Index(t, (t.company, Index.Equality()),
                (t.quarter, Index.Range())))


def _counts(scans, gate_zones):
    "({(zone, minute): [in, out]}, {(gate, quarter): [in, out, refused]})"
    zones, gates = {}, {}
    for scan in scans:
        g = gates.setdefault((scan.gate, quarter_of(scan.at)), [0, 0, 0])
        if scan.decision != 'open':
            g[2] += 1
            continue
        column = 0 if scan.direction == 'in' else 1
        g[column] += scan.persons
        zone = gate_zones.get(scan.gate)
        if zone:
            z = zones.setdefault((zone, minute_of(scan.at)), [0, 0])
            z[column] += scan.persons
    return zones, gates


def _upsert(Model, keys, counters, rows, company_id, user, stamp):
    """Add `rows` [(key values..., counts...)] to the rollup in one
    statement (a batch touches a few dozen buckets), in key order, so that
    concurrent uploads lock the same rows in the same order."""
    if not rows:
        return
    from . import bulk
    cursor = Transaction().connection.cursor()
    q = bulk._quote
    names = ['company', *keys, *counters, 'create_uid', 'create_date']
    update = ', '.join(
        [f'{q(c)} = {q(Model._table)}.{q(c)} + excluded.{q(c)}'
            for c in counters]
        + [f'{q("write_date")} = excluded.{q("create_date")}',
            f'{q("write_uid")} = excluded.{q("create_uid")}'])
    head = (f'INSERT INTO {q(Model._table)} '
        f'({", ".join(q(n) for n in names)}) ')
    tail = (f' ON CONFLICT ({", ".join(q(k) for k in keys)}) '
        f'DO UPDATE SET {update}')
    values = [[company_id, *row, user, stamp] for row in sorted(rows)]
    if bulk._server():
        cursor.execute(head + f'SELECT {bulk._record(Model, names)} '
            'FROM jsonb_array_elements(%s::jsonb) AS r' + tail,
            (bulk._json(values),))
    else:
        marks = ', '.join('?' * len(names))
        cursor.executemany(head + f'VALUES ({marks})' + tail, values)


def add_scans(company_id, scans, gates, stamp=None):
    """Count newly stored scans into the rollups, in the caller's
    transaction.

    scans: objects with gate, at (aware), direction, decision, persons;
    gates: {gate id: object with the gate's zone id as .zone}.
    """
    if not scans:
        return
    gate_zones = {g: info.zone for g, info in gates.items()}
    pool = Pool()
    user = Transaction().user
    stamp = stamp or dt.datetime.now(UTC).replace(tzinfo=None)
    zones, gates = _counts(scans, gate_zones)
    _upsert(pool.get('scenic.zone.minute'), ['zone', 'minute'],
        ['entries', 'exits'],
        [(z, m, i, o) for (z, m), (i, o) in zones.items() if i or o],
        company_id, user, stamp)
    _upsert(pool.get('scenic.gate.quarter'), ['gate', 'quarter'],
        ['entries', 'exits', 'refused'],
        [(g, q, *c) for (g, q), c in gates.items()],
        company_id, user, stamp)


class _Row:
    __slots__ = ('gate', 'at', 'direction', 'decision', 'persons')

    def __init__(self, gate, at, direction, decision, persons):
        self.gate, self.at, self.direction = gate, at, direction
        self.decision, self.persons = decision, persons


def rebuild(company_id, chunk=50_000):
    """Recompute an area's rollups from its raw scans (after a set-based
    load of history, or to repair them). Reads the scans in chunks."""
    pool = Pool()
    cursor = Transaction().connection.cursor()
    scan = pool.get('scenic.gate.scan').__table__()
    gate = pool.get('scenic.gate').__table__()
    for model in ['scenic.zone.minute', 'scenic.gate.quarter']:
        table = pool.get(model).__table__()
        cursor.execute(*table.delete(where=table.company == company_id))
    cursor.execute(*gate.select(gate.id, gate.zone,
            where=gate.company == company_id))
    gate_zones = dict(cursor)
    last = 0
    zones, gates = {}, {}
    while True:
        cursor.execute(*scan.select(
                scan.id, scan.gate, scan.time, scan.direction,
                scan.decision, scan.persons,
                where=(scan.company == company_id) & (scan.id > last),
                order_by=[scan.id], limit=chunk))
        rows = cursor.fetchall()
        if not rows:
            break
        last = rows[-1][0]
        z, g = _counts([_Row(r[1], _timestamp(r[2]), r[3], r[4], r[5])
                for r in rows], gate_zones)
        for key, counts in z.items():
            total = zones.setdefault(key, [0, 0])
            total[0] += counts[0]
            total[1] += counts[1]
        for key, counts in g.items():
            total = gates.setdefault(key, [0, 0, 0])
            for i in range(3):
                total[i] += counts[i]
    add_counts(company_id, zones, gates)


def add_counts(company_id, zones, gates):
    "Insert precomputed bucket counts (rebuild, set-based history loads)."
    pool = Pool()
    user = Transaction().user
    stamp = dt.datetime.now(UTC).replace(tzinfo=None)
    ZoneMinute = pool.get('scenic.zone.minute')
    GateQuarter = pool.get('scenic.gate.quarter')
    from . import bulk
    bulk.insert(ZoneMinute, ['company', 'zone', 'minute', 'entries',
            'exits', 'create_uid', 'create_date'],
        [[company_id, z, m, i, o, user, stamp]
            for (z, m), (i, o) in sorted(zones.items()) if i or o])
    bulk.insert(GateQuarter, ['company', 'gate', 'quarter', 'entries',
            'exits', 'refused', 'create_uid', 'create_date'],
        [[company_id, g, q, *c, user, stamp]
            for (g, q), c in sorted(gates.items())])


def _timestamp(value):
    if isinstance(value, str):
        value = dt.datetime.fromisoformat(value)
    return value
