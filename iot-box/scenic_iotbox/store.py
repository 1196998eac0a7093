"""The box's local SQLite store.

One file (``<data_dir>/box.sqlite``, mode 0600: it holds the box secret and
the area's gate-hash peppers), WAL journal, ``synchronous=FULL`` so that a committed
scan survives a power cut.  One connection and one lock: every write is a
``BEGIN IMMEDIATE`` transaction under the lock, so decisions are serialised
(SQLite has one writer anyway; a decision plus its fsync takes a few ms).

Tables
    meta          key/value: watermark, area, timezone, last sync, revoked,
                  gate_generations (the area's live gate-hash generations
                  with their peppers, JSON, current first).
    credentials   the box id, secret and area (one row; the old ID
                  look-up key column stays empty).
    keys          trusted Ed25519 public keys (key_id, raw bytes, retired).
    revoked       revoked ticket ids.
    ticket_types, rules, zones, gates, cards
                  the ERP's synced data (zones.inside is the ERP's count).
    tickets       today's and tomorrow's real-name tickets: holder_hash
                  (the holder's gate hash, scrypt under the current
                  generation's pepper) -> signed code, for "ID card as
                  ticket".
    partner_codes valid tickets whose code a partner issued: the code's
                  gate hash (scenic_common.partnercode, never the code)
                  -> the ticket and what a signed code would carry.
    usage         per ticket or card (kind, ref): entries, last entry/exit,
                  inside, binding (ref, method, template and photo files).
    outbox        every scan, by nonce, with the JSON payload to upload, its
                  effects (zone delta, count-card use) and upload state.
    pending       what the unreflected outbox rows add, per zone (Σ zone
                  delta) and per count card (uses); kept by triggers on
                  the outbox.

Times are stored as UTC ISO 8601 text (``_ts``), so they sort as text.

Local view of ERP counters: the ERP's zone headcount and count-card balance
lag behind this box's own scans until they are uploaded *and* a later sync
answer reflects them.  Outbox rows stay ``reflected = 0`` until then, and
the local view is the ERP's value plus the effects of unreflected rows.
Those effects are summed in ``pending`` by SQLite triggers on the outbox,
so every insert, reflection or delete updates them in its own transaction
(the decision's, the sync's, the purge's) and a decision reads one row
instead of re-adding a backlog of thousands of unsynced scans.
"""

import base64
import functools
import hashlib
import hmac
import json
import os
import secrets
import sqlite3
import threading
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from scenic_common import gate as gatelib
from scenic_common import partnercode, protocol
from scenic_common.ticketcode import revocation_message

__all__ = ['Store', 'StoreError', 'ts', 'parse_ts', 'normalize_uid']

# 2: the ``pending`` counters (rebuilt from the outbox when an older
# store is opened)
# 3: gate hashes (iot-box/PROTOCOL.md, "Threat model"): the ID look-up key
# and every hash made with it are wiped; the next sync is a full one
# 4: ``partner_codes`` (codes partners issued, by gate hash); the next sync
# is a full one, which brings them
SCHEMA_VERSION = 4
SYNCED_TABLES = ('keys', 'revoked', 'ticket_types', 'rules', 'zones',
    'gates', 'cards', 'tickets', 'partner_codes')

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (
    key TEXT PRIMARY KEY,
    value TEXT
);
CREATE TABLE IF NOT EXISTS credentials (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    box INTEGER NOT NULL,
    secret TEXT NOT NULL,
    area INTEGER,
    lookup_key BLOB,
    enrolled_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS keys (
    key_id INTEGER PRIMARY KEY,
    public_key BLOB NOT NULL,
    retired INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS revoked (
    ticket INTEGER PRIMARY KEY,
    at TEXT
);
CREATE TABLE IF NOT EXISTS ticket_types (
    id INTEGER PRIMARY KEY,
    code TEXT,
    zones TEXT NOT NULL DEFAULT '[]',
    persons INTEGER NOT NULL DEFAULT 1,
    entries INTEGER NOT NULL DEFAULT 1,
    binding TEXT NOT NULL DEFAULT 'none',
    rule INTEGER
);
CREATE TABLE IF NOT EXISTS rules (
    id INTEGER PRIMARY KEY,
    early_minutes INTEGER NOT NULL DEFAULT 0,
    late_minutes INTEGER NOT NULL DEFAULT 0,
    min_interval_minutes INTEGER NOT NULL DEFAULT 0,
    anti_passback INTEGER NOT NULL DEFAULT 0,
    exit_counts INTEGER NOT NULL DEFAULT 0,
    is_default INTEGER NOT NULL DEFAULT 0   -- the area's default rule
);
CREATE TABLE IF NOT EXISTS zones (
    id INTEGER PRIMARY KEY,
    code TEXT,
    instant_max INTEGER,
    inside INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS gates (
    id INTEGER PRIMARY KEY,
    code TEXT NOT NULL,
    zone INTEGER,
    direction TEXT NOT NULL DEFAULT 'both',
    lanes INTEGER NOT NULL DEFAULT 1,
    ticket_types TEXT NOT NULL DEFAULT '[]',
    active INTEGER NOT NULL DEFAULT 1,
    rule INTEGER                   -- overrides the ticket type's rule
);
CREATE INDEX IF NOT EXISTS gates_code ON gates (code);
CREATE TABLE IF NOT EXISTS cards (
    uid TEXT PRIMARY KEY,
    card INTEGER NOT NULL,
    ticket_type INTEGER NOT NULL,
    state TEXT NOT NULL,
    holder_hash TEXT,
    holder_masked TEXT,
    valid_from TEXT,
    valid_until TEXT,
    remaining INTEGER,
    photo_url TEXT
);
CREATE INDEX IF NOT EXISTS cards_card ON cards (card);
CREATE TABLE IF NOT EXISTS tickets (
    ticket INTEGER PRIMARY KEY,
    holder_hash TEXT NOT NULL,
    code TEXT NOT NULL,
    valid_from TEXT,
    valid_until TEXT
);
CREATE INDEX IF NOT EXISTS tickets_holder ON tickets (holder_hash);
CREATE TABLE IF NOT EXISTS partner_codes (
    ticket INTEGER PRIMARY KEY,
    hash TEXT NOT NULL,            -- partnercode.code_hash, current generation
    ticket_type INTEGER NOT NULL,
    persons INTEGER NOT NULL DEFAULT 1,
    entries INTEGER NOT NULL DEFAULT 1,
    valid_from TEXT NOT NULL,
    valid_until TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS partner_codes_hash ON partner_codes (hash);
CREATE TABLE IF NOT EXISTS usage (
    kind TEXT NOT NULL,            -- 'ticket' | 'card'
    ref INTEGER NOT NULL,          -- ticket id | card id
    entries INTEGER NOT NULL DEFAULT 0,
    last_entry_at TEXT,
    last_exit_at TEXT,
    inside INTEGER NOT NULL DEFAULT 0,
    binding_ref TEXT,
    binding_method TEXT,
    template_path TEXT,
    photo_path TEXT,
    valid_until TEXT,
    updated_at TEXT,
    PRIMARY KEY (kind, ref)
);
CREATE TABLE IF NOT EXISTS outbox (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    nonce TEXT NOT NULL UNIQUE,
    created_at TEXT NOT NULL,
    payload TEXT NOT NULL,         -- the JSON scan of PROTOCOL.md
    ticket INTEGER,
    card INTEGER,
    zone INTEGER,
    zone_delta INTEGER NOT NULL DEFAULT 0,
    card_use INTEGER NOT NULL DEFAULT 0,
    entry_use INTEGER NOT NULL DEFAULT 0,
    sent INTEGER NOT NULL DEFAULT 0,
    sent_at TEXT,
    attempts INTEGER NOT NULL DEFAULT 0,
    last_error TEXT,
    result TEXT,                   -- accepted | duplicate | conflict:<reason>
    ack_seq INTEGER,
    reflected INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS outbox_unsent ON outbox (seq) WHERE sent = 0;
-- zones are summed in ``pending`` now: one index less to write per scan
DROP INDEX IF EXISTS outbox_unreflected_zone;
CREATE INDEX IF NOT EXISTS outbox_unreflected_card
    ON outbox (card) WHERE reflected = 0;
CREATE INDEX IF NOT EXISTS outbox_unreflected_ticket
    ON outbox (ticket) WHERE reflected = 0;
CREATE TABLE IF NOT EXISTS pending (
    kind TEXT NOT NULL,            -- 'zone' | 'card'
    ref INTEGER NOT NULL,          -- zone id | card id
    value INTEGER NOT NULL,        -- Σ zone_delta | count-card uses
    PRIMARY KEY (kind, ref)
) WITHOUT ROWID;
"""


def _pending_sql(row, sign):
    """Statements adding (sign '+') or taking back (sign '-') what the
    outbox row ``row`` (``new`` | ``old``) adds to ``pending``."""
    upsert = ('ON CONFLICT (kind, ref) DO UPDATE '
        'SET value = value + excluded.value;')
    return (f"INSERT INTO pending (kind, ref, value) SELECT 'zone', "
        f"{row}.zone, {sign}{row}.zone_delta WHERE {row}.zone IS NOT NULL "
        f"AND {row}.zone_delta != 0 {upsert} "
        f"INSERT INTO pending (kind, ref, value) SELECT 'card', "
        f"{row}.card, {sign}1 WHERE {row}.card IS NOT NULL "
        f"AND {row}.card_use != 0 {upsert} "
        # a counter back to 0 is dropped: absent means 0
        f"DELETE FROM pending WHERE value = 0 AND ((kind = 'zone' "
        f"AND ref = {row}.zone) OR (kind = 'card' AND ref = {row}.card));")


# Triggers, not Python: whatever writes the outbox (a decision, the sync's
# reflection, the purge, a future repair) keeps the counters exact, in the
# same transaction.  ``UPDATE OF`` lists the columns the counters read, so
# mark_sent (sent, ack_seq, …) does not fire them.
_COUNTED = 'reflected, zone, zone_delta, card, card_use'
PENDING_TRIGGERS = f"""
CREATE TRIGGER IF NOT EXISTS outbox_pending_insert AFTER INSERT ON outbox
WHEN new.reflected = 0 BEGIN {_pending_sql('new', '+')} END;
CREATE TRIGGER IF NOT EXISTS outbox_pending_update_old
AFTER UPDATE OF {_COUNTED} ON outbox
WHEN old.reflected = 0 BEGIN {_pending_sql('old', '-')} END;
CREATE TRIGGER IF NOT EXISTS outbox_pending_update_new
AFTER UPDATE OF {_COUNTED} ON outbox
WHEN new.reflected = 0 BEGIN {_pending_sql('new', '+')} END;
CREATE TRIGGER IF NOT EXISTS outbox_pending_delete AFTER DELETE ON outbox
WHEN old.reflected = 0 BEGIN {_pending_sql('old', '-')} END;
"""


class StoreError(ValueError):
    """A sync answer that cannot be applied (nothing was changed)."""


def ts(moment):
    """A datetime as sortable UTC text; None stays None."""
    if moment is None:
        return None
    return moment.astimezone(timezone.utc).isoformat(timespec='microseconds')


def parse_ts(text):
    if text is None or text == '':
        return None
    value = datetime.fromisoformat(text)
    if value.utcoffset() is None:
        raise ValueError(f'time without offset: {text!r}')
    return value


def normalize_uid(uid):
    """Card UIDs as upper-case hex without separators."""
    if not isinstance(uid, str):
        return ''
    return ''.join(c for c in uid.upper() if c not in ' :-\t\r\n')


def _json_ids(values):
    return json.dumps(sorted(int(v) for v in (values or [])))


def _bool(value):
    return 1 if value else 0


def _int_or_none(value):
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f'not an integer: {value!r}')
    return value


def _locked(method):
    "Run a read under the store's lock (the connection is shared)."
    @functools.wraps(method)
    def wrapper(self, *args, **kwargs):
        with self.lock:
            return method(self, *args, **kwargs)
    return wrapper


class _Revoked:
    """``ticket_id in revoked`` answered from the store (for verify)."""

    def __init__(self, store):
        self._store = store

    def __contains__(self, ticket_id):
        return self._store.query_one(
            'SELECT 1 FROM revoked WHERE ticket = ?', (ticket_id,)) is not None


class Store:
    """The local store; safe to share between threads."""

    def __init__(self, path):
        self.path = Path(path)
        if str(path) != ':memory:':
            self.path.parent.mkdir(parents=True, exist_ok=True)
            if not self.path.exists():
                # The file holds the box secret and the look-up key.
                fd = os.open(self.path, os.O_CREAT | os.O_WRONLY, 0o600)
                os.close(fd)
        self.lock = threading.RLock()
        self.conn = sqlite3.connect(str(path), check_same_thread=False,
            isolation_level=None, timeout=30)
        self.conn.row_factory = sqlite3.Row
        self.conn.execute('PRAGMA journal_mode=WAL')
        self.conn.execute('PRAGMA synchronous=FULL')
        self.conn.execute('PRAGMA foreign_keys=ON')
        with self.lock:
            self.conn.executescript(SCHEMA + PENDING_TRIGGERS)
            if int(self.get_meta('schema_version', '0')) < SCHEMA_VERSION:
                self._migrate()
        self.generation = 0     # bumped when synced data changes
        self.revoked = _Revoked(self)

    def close(self):
        with self.lock:
            self.conn.close()

    def _migrate(self):
        """A new store, or one written before ``pending`` existed: count
        the unreflected outbox rows once (checked again under the writer
        lock: another process may have done it)."""
        with self.transaction() as conn:
            if int(self.get_meta('schema_version', '0', conn)) \
                    >= SCHEMA_VERSION:
                return
            version = int(self.get_meta('schema_version', '0', conn))
            self.rebuild_pending(conn)
            if version < 3:
                self.wipe_lookup_hashes(conn)
            if version:
                # partner codes come with a full sync only
                conn.execute("DELETE FROM meta WHERE key = 'watermark'")
            self.set_meta('schema_version', SCHEMA_VERSION, conn)

    @staticmethod
    def wipe_lookup_hashes(conn):
        """Forget the ID look-up key of stores before gate hashes and all
        that was hashed with it; ask for a full sync (gate hashes)."""
        conn.execute('UPDATE credentials SET lookup_key = NULL')
        conn.execute('DELETE FROM tickets')
        conn.execute('UPDATE cards SET holder_hash = NULL')
        conn.execute("UPDATE usage SET binding_ref = NULL "
            "WHERE binding_ref LIKE 'id:%' AND binding_ref NOT LIKE 'id:g%'")
        conn.execute("DELETE FROM meta WHERE key = 'watermark'")

    def rebuild_pending(self, conn):
        """Recount ``pending`` from the outbox (inside a transaction)."""
        conn.execute('DELETE FROM pending')
        conn.execute("INSERT INTO pending (kind, ref, value) "
            "SELECT 'zone', zone, SUM(zone_delta) FROM outbox "
            "WHERE reflected = 0 AND zone IS NOT NULL GROUP BY zone "
            "HAVING SUM(zone_delta) != 0")
        conn.execute("INSERT INTO pending (kind, ref, value) "
            "SELECT 'card', card, COUNT(*) FROM outbox "
            "WHERE reflected = 0 AND card IS NOT NULL AND card_use != 0 "
            "GROUP BY card")

    # --- transactions ----------------------------------------------------

    @contextmanager
    def transaction(self):
        """``BEGIN IMMEDIATE`` … ``COMMIT`` under the store's lock: the
        writer lock is taken before the first read."""
        with self.lock:
            self.conn.execute('BEGIN IMMEDIATE')
            try:
                yield self.conn
            except BaseException:
                self.conn.execute('ROLLBACK')
                raise
            else:
                self.conn.execute('COMMIT')

    def query(self, sql, params=()):
        with self.lock:
            return self.conn.execute(sql, params).fetchall()

    def query_one(self, sql, params=()):
        with self.lock:
            return self.conn.execute(sql, params).fetchone()

    # --- meta ------------------------------------------------------------

    def get_meta(self, key, default=None, conn=None):
        with self.lock:
            row = (conn or self.conn).execute(
                'SELECT value FROM meta WHERE key = ?', (key,)).fetchone()
        return row[0] if row and row[0] is not None else default

    def set_meta(self, key, value, conn=None):
        sql = ('INSERT INTO meta (key, value) VALUES (?, ?) '
            'ON CONFLICT (key) DO UPDATE SET value = excluded.value')
        value = None if value is None else str(value)
        if conn is not None:
            conn.execute(sql, (key, value))
        else:
            with self.transaction() as c:
                c.execute(sql, (key, value))

    def photo_token(self, card_id):
        """The unguessable part of a card photo's local URL
        (``/photos/card-<id>-<token>``): a MAC of the card id under a key
        made once per store, so card ids cannot be walked."""
        key = self.get_meta('photo_key')
        if key is None:
            with self.transaction() as conn:
                key = self.get_meta('photo_key', conn=conn)
                if key is None:
                    key = secrets.token_hex(32)
                    self.set_meta('photo_key', key, conn=conn)
        return hmac.new(bytes.fromhex(key), f'card:{int(card_id)}'.encode(),
            hashlib.sha256).hexdigest()[:32]

    # --- credentials -----------------------------------------------------

    def credentials(self):
        row = self.query_one('SELECT box, secret, area '
            'FROM credentials WHERE id = 1')
        if row is None:
            return None
        return {'box': row['box'], 'secret': row['secret'],
            'area': row['area']}

    def save_credentials(self, box, secret, area, generations, now):
        """``generations``: the enrolment's ``gate_generations``."""
        parsed = protocol.parse_generations(generations)
        with self.transaction() as conn:
            conn.execute('DELETE FROM credentials')
            conn.execute('INSERT INTO credentials (id, box, secret, area, '
                'enrolled_at) VALUES (1, ?, ?, ?, ?)',
                (int(box), str(secret), area, ts(now)))
            conn.execute("DELETE FROM meta WHERE key IN ('revoked', "
                "'watermark')")
            self._set_generations(conn, parsed)
            if area is not None:
                conn.execute(
                    'INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT '
                    '(key) DO UPDATE SET value = excluded.value',
                    ('area_id', str(area)))
        self.generation += 1

    def _set_generations(self, conn, parsed):
        self.set_meta('gate_generations', json.dumps([dict(g,
                    pepper=base64.b64encode(g['pepper']).decode())
                for g in parsed]), conn)

    def gate_generations(self):
        """The area's live gate-hash generations, current first
        (``protocol.parse_generations``'s shape); [] before enrolment."""
        text = self.get_meta('gate_generations')
        if not text:
            return []
        cached = getattr(self, '_generations_cache', None)
        if cached is not None and cached[0] == text:
            return cached[1]
        parsed = protocol.parse_generations(json.loads(text))
        self._generations_cache = (text, parsed)
        return parsed

    def revoke_box(self):
        """The ERP revoked this box: forget everything synced and the
        credentials; scans keep going to the outbox (all denied)."""
        with self.transaction() as conn:
            for table in SYNCED_TABLES:
                conn.execute(f'DELETE FROM {table}')
            conn.execute('DELETE FROM credentials')
            conn.execute("DELETE FROM meta WHERE key = 'watermark'")
            self.set_meta('revoked', '1', conn)
        self.generation += 1

    # --- synced data, read -----------------------------------------------

    def keys(self):
        return [(r['key_id'], bytes(r['public_key']), bool(r['retired']))
            for r in self.query('SELECT key_id, public_key, retired '
                'FROM keys ORDER BY key_id')]

    def gate(self, code=None, id=None, conn=None):
        conn = conn or self.conn
        with self.lock:
            if id is not None:
                row = conn.execute('SELECT * FROM gates WHERE id = ?',
                    (id,)).fetchone()
            else:
                row = conn.execute('SELECT * FROM gates WHERE code = ? '
                    'ORDER BY active DESC, id LIMIT 1', (code,)).fetchone()
        if row is None:
            return None, None
        info = gatelib.GateInfo(id=row['id'], zone=row['zone'],
            direction=row['direction'],
            ticket_types=frozenset(json.loads(row['ticket_types'])),
            active=bool(row['active']), code=row['code'])
        return info, row['lanes']

    @_locked
    def ticket_type(self, type_id, conn=None):
        row = (conn or self.conn).execute(
            'SELECT * FROM ticket_types WHERE id = ?', (type_id,)).fetchone()
        if row is None:
            return None
        return gatelib.TicketTypeInfo(id=row['id'],
            zones=frozenset(json.loads(row['zones'])),
            persons=row['persons'], entries=row['entries'],
            binding=row['binding'], rule=row['rule'], code=row['code'] or '')

    @_locked
    def rule(self, rule_id, conn=None):
        if rule_id is None:
            return None
        row = (conn or self.conn).execute(
            'SELECT * FROM rules WHERE id = ?', (rule_id,)).fetchone()
        if row is None:
            return None
        return gatelib.AccessRule(id=row['id'],
            early_minutes=row['early_minutes'],
            late_minutes=row['late_minutes'],
            min_interval_minutes=row['min_interval_minutes'],
            anti_passback=bool(row['anti_passback']),
            exit_counts=bool(row['exit_counts']))

    @_locked
    @_locked
    def rule_for(self, gate_id, type_rule, conn=None):
        """The rule that applies (as the ERP's upload check does): the
        gate's, else the ticket type's, else the area's default."""
        conn = conn or self.conn
        gate = conn.execute('SELECT rule FROM gates WHERE id = ?',
            (gate_id,)).fetchone()
        default = conn.execute('SELECT id FROM rules WHERE is_default = 1 '
            'ORDER BY id LIMIT 1').fetchone()
        return self.rule(protocol.rule_id_for(
                gate[0] if gate else None, type_rule,
                default[0] if default else None,
                known=lambda rule_id: self.rule(rule_id, conn) is not None),
            conn)

    @_locked
    def pending(self, kind, ref, conn=None):
        """What this box's unreflected scans add to the ERP's counter:
        kind 'zone' (people inside) or 'card' (count-card uses)."""
        row = (conn or self.conn).execute('SELECT value FROM pending '
            'WHERE kind = ? AND ref = ?', (kind, ref)).fetchone()
        return row[0] if row else 0

    @_locked
    def zone_load(self, zone_id, conn=None):
        """The ERP's headcount plus this box's unreflected scans."""
        if zone_id is None:
            return None
        conn = conn or self.conn
        row = conn.execute('SELECT * FROM zones WHERE id = ?',
            (zone_id,)).fetchone()
        pending = self.pending('zone', zone_id, conn)
        if row is None:
            return gatelib.ZoneLoad(inside=max(pending, 0), instant_max=None,
                id=zone_id)
        return gatelib.ZoneLoad(inside=max(row['inside'] + pending, 0),
            instant_max=row['instant_max'], id=zone_id)

    @_locked
    def card(self, uid, conn=None):
        """(CardInfo with the local balance, row) or (None, None)."""
        conn = conn or self.conn
        row = conn.execute('SELECT * FROM cards WHERE uid = ?',
            (normalize_uid(uid),)).fetchone()
        if row is None:
            return None, None
        remaining = row['remaining']
        if remaining is not None:
            remaining -= self.pending('card', row['card'], conn)
        info = gatelib.CardInfo(uid=row['uid'], id=row['card'],
            ticket_type=row['ticket_type'], state=row['state'],
            valid_from=parse_ts(row['valid_from']),
            valid_until=parse_ts(row['valid_until']),
            remaining=remaining, holder_hash=row['holder_hash'])
        return info, row

    def card_photo_url(self, card_id):
        row = self.query_one('SELECT photo_url FROM cards WHERE card = ? '
            "AND photo_url IS NOT NULL AND photo_url != '' "
            "ORDER BY state = 'active' DESC LIMIT 1", (card_id,))
        return row[0] if row else None

    def tickets_for_holder(self, hashes, start, end, conn=None):
        """Real-name tickets of these holder hashes overlapping
        [start, end), earliest first: (ticket id, code)."""
        conn = conn or self.conn
        hashes = [h.lower() for h in hashes]
        # A code's holder hash is the first 8 bytes (16 hex digits).
        keys = sorted(set(hashes) | {h[:16] for h in hashes})
        if not keys:
            return []
        with self.lock:
            rows = conn.execute(self.holder_query(len(keys)),
                (*keys, ts(start), ts(end))).fetchall()
        return [(r['ticket'], r['code']) for r in rows]

    @staticmethod
    def holder_query(count):
        """The look-up of tickets_for_holder for `count` hashes. Hashes are
        stored lower-case (apply_sync): the column is compared as it is, so
        that its index serves (a function of it would read every ticket)."""
        marks = ','.join('?' * count)
        return (f'SELECT ticket, code FROM tickets WHERE holder_hash '
            f'IN ({marks}) AND (valid_until IS NULL OR valid_until > ?) '
            'AND (valid_from IS NULL OR valid_from < ?) '
            'ORDER BY valid_from, ticket')

    def partner_ticket(self, hashes, area_id, conn=None, ticket_id=None):
        """The PartnerTicket of area ``area_id`` whose code has one of
        these gate hashes (or whose id is ``ticket_id``), or None."""
        hashes = [h.lower() for h in hashes]
        if not (hashes or ticket_id) or not area_id:
            return None
        if ticket_id is not None:
            where, params = 'ticket = ?', [ticket_id]
        else:
            where = f'hash IN ({",".join("?" * len(hashes))})'
            params = hashes
        with self.lock:
            row = (conn or self.conn).execute(
                f'SELECT * FROM partner_codes WHERE {where} '
                'ORDER BY ticket LIMIT 1', params).fetchone()
        if row is None:
            return None
        return partnercode.PartnerTicket(ticket_id=row['ticket'],
            area_id=area_id,
            ticket_type_id=row['ticket_type'],
            valid_from=parse_ts(row['valid_from']),
            valid_until=parse_ts(row['valid_until']),
            persons=row['persons'], entries=row['entries'])

    def has_partner_codes(self):
        return self.query_one('SELECT 1 FROM partner_codes LIMIT 1') \
            is not None

    # --- usage -----------------------------------------------------------

    @_locked
    def usage(self, kind, ref, conn=None):
        """(Usage, row or None)."""
        row = (conn or self.conn).execute(
            'SELECT * FROM usage WHERE kind = ? AND ref = ?',
            (kind, ref)).fetchone()
        if row is None:
            return gatelib.Usage(), None
        return gatelib.Usage(entries=row['entries'],
            last_entry_at=parse_ts(row['last_entry_at']),
            last_exit_at=parse_ts(row['last_exit_at']),
            inside=bool(row['inside']),
            binding_ref=row['binding_ref']), row

    def binding_files(self, binding_ref):
        row = self.query_one('SELECT template_path, photo_path, '
            'binding_method FROM usage WHERE binding_ref = ? LIMIT 1',
            (binding_ref,))
        return dict(row) if row else None

    def save_usage(self, conn, kind, ref, usage, now, valid_until=None,
            binding=None):
        """Write the usage of (kind, ref); ``binding`` a dict of
        binding_method/template_path/photo_path to record with it."""
        binding = binding or {}
        conn.execute(
            'INSERT INTO usage (kind, ref, entries, last_entry_at, '
            'last_exit_at, inside, binding_ref, binding_method, '
            'template_path, photo_path, valid_until, updated_at) '
            'VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) '
            'ON CONFLICT (kind, ref) DO UPDATE SET '
            'entries = excluded.entries, '
            'last_entry_at = excluded.last_entry_at, '
            'last_exit_at = excluded.last_exit_at, '
            'inside = excluded.inside, binding_ref = excluded.binding_ref, '
            'binding_method = COALESCE(excluded.binding_method, '
            'usage.binding_method), '
            'template_path = COALESCE(excluded.template_path, '
            'usage.template_path), '
            'photo_path = COALESCE(excluded.photo_path, usage.photo_path), '
            'valid_until = COALESCE(excluded.valid_until, usage.valid_until), '
            'updated_at = excluded.updated_at',
            (kind, ref, usage.entries, ts(usage.last_entry_at),
                ts(usage.last_exit_at), _bool(usage.inside),
                usage.binding_ref, binding.get('binding_method'),
                binding.get('template_path'), binding.get('photo_path'),
                ts(valid_until), ts(now)))

    # --- outbox ----------------------------------------------------------

    def append_scan(self, conn, nonce, now, payload, *, ticket=None,
            card=None, zone=None, zone_delta=0, card_use=False,
            entry_use=False):
        opened = payload.get('decision') == 'open'
        conn.execute(
            'INSERT INTO outbox (nonce, created_at, payload, ticket, card, '
            'zone, zone_delta, card_use, entry_use, reflected) '
            'VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)',
            (nonce, ts(now), json.dumps(payload, separators=(',', ':')),
                ticket, card, zone, zone_delta, _bool(card_use),
                _bool(entry_use),
                # a denial changes no counter: nothing to wait for
                0 if opened and (zone_delta or card_use or entry_use)
                else 1))

    def pending_scans(self, limit=1000):
        rows = self.query('SELECT seq, nonce, payload FROM outbox '
            'WHERE sent = 0 ORDER BY seq LIMIT ?', (limit,))
        return [(r['seq'], r['nonce'], json.loads(r['payload']))
            for r in rows]

    def outbox_size(self):
        return self.query_one(
            'SELECT COUNT(*) FROM outbox WHERE sent = 0')[0]

    def scan_by_nonce(self, nonce):
        row = self.query_one('SELECT * FROM outbox WHERE nonce = ?',
            (nonce,))
        return dict(row) if row else None

    def mark_sent(self, results, now, failed=()):
        """Record the ERP's answer for a batch: ``results`` maps nonce ->
        'accepted' | 'duplicate' | 'conflict:<reason>'; ``failed`` nonces
        (not acknowledged) count an attempt and stay pending."""
        sent_at = ts(now)
        failed = [(nonce,) for nonce in failed]
        # executemany: decisions wait for this transaction, and it takes
        # ~40 % less time than one execute a row
        with self.transaction() as conn:
            ack = int(self.get_meta('ack_seq', '0', conn)) + 1
            self.set_meta('ack_seq', ack, conn)
            conn.executemany('UPDATE outbox SET sent = 1, sent_at = ?, '
                'attempts = attempts + 1, result = ?, ack_seq = ?, '
                'last_error = NULL WHERE nonce = ? AND sent = 0',
                [(sent_at, result, ack, nonce)
                    for nonce, result in results.items()])
            conn.executemany('UPDATE outbox SET attempts = attempts + 1, '
                "last_error = 'not acknowledged' WHERE nonce = ? "
                'AND sent = 0', failed)
        return ack

    def note_upload_error(self, seqs, message):
        with self.transaction() as conn:
            conn.executemany('UPDATE outbox SET attempts = attempts + 1, '
                'last_error = ? WHERE seq = ?',
                [(message[:500], s) for s in seqs])

    def ack_seq(self):
        return int(self.get_meta('ack_seq', '0'))

    # --- applying a sync answer ------------------------------------------

    def apply_sync(self, answer, now, acked_before=None):
        """Apply the ERP's sync answer in one transaction.

        A full answer replaces every synced table; an incremental one
        upserts (and deletes what ``deleted`` lists, an optional extension:
        ``{"ticket_types": [ids], "gates": [ids], "cards": [uids], …}``).
        Usage is merged, never replaced: the box's own scans may not have
        reached the ERP yet.  ``acked_before``: the outbox ack counter read
        before the request was sent; scans acknowledged up to it are now
        reflected in the ERP's counters.  Raises StoreError (and changes
        nothing) for an answer that does not follow PROTOCOL.md.
        """
        if not isinstance(answer, dict):
            raise StoreError('The sync answer is not a JSON object.')
        try:
            rows = _prepare(answer)
        except (KeyError, TypeError, ValueError) as error:
            raise StoreError(f'Bad sync answer: {error}') from None
        full = bool(answer.get('full'))
        with self.transaction() as conn:
            if full:
                for table in SYNCED_TABLES:
                    if table != 'keys':         # append-only, see _add_keys
                        conn.execute(f'DELETE FROM {table}')
            self._add_keys(conn, rows['keys'])
            for table, (sql, values) in rows['upserts'].items():
                conn.executemany(sql, values)
            for table, column, values in rows['deletes']:
                conn.executemany(
                    f'DELETE FROM {table} WHERE {column} = ?',
                    [(v,) for v in values])
            if acked_before is not None:
                conn.execute('UPDATE outbox SET reflected = 1 WHERE '
                    'reflected = 0 AND sent = 1 AND ack_seq <= ?',
                    (acked_before,))
            for usage in rows['usage']:
                self._merge_usage(conn, usage, now)
            area = answer.get('area') or {}
            if area.get('id') is not None:
                self.set_meta('area_id', int(area['id']), conn)
            if area.get('timezone'):
                self.set_meta('timezone', str(area['timezone']), conn)
            if rows['generations'] is not None:
                self._set_generations(conn, rows['generations'])
            self.set_meta('watermark', answer.get('watermark'), conn)
            self.set_meta('last_sync_at', ts(now), conn)
            if full:
                self.set_meta('last_full_sync_at', ts(now), conn)
        self.generation += 1
        return {'full': full, 'rows': sum(
            len(v) for _, v in rows['upserts'].values()) + len(rows['keys'])}

    def _add_keys(self, conn, keys):
        """Trusted keys are append-only: a key id keeps its first public
        key (a sync that brings another one is refused whole), and a key
        is retired only by its own signed revocation
        (ticketcode.revocation_message): whoever can answer a sync can
        neither swap the keys codes are checked with nor silently disable
        them."""
        for key_id, raw, revocation in keys:
            row = conn.execute('SELECT public_key FROM keys WHERE '
                'key_id = ?', (key_id,)).fetchone()
            if row is None:
                conn.execute('INSERT INTO keys (key_id, public_key, '
                    'retired) VALUES (?, ?, 0)', (key_id, raw))
            elif bytes(row[0]) != raw:
                raise StoreError(f'The sync answer replaces signing key '
                    f'{key_id}: refused (keys are append-only).')
            if revocation is None:
                continue
            try:
                Ed25519PublicKey.from_public_bytes(raw).verify(revocation,
                    revocation_message(key_id, raw))
            except InvalidSignature:
                raise StoreError(f'The revocation of key {key_id} is not '
                    'signed by that key: refused.') from None
            conn.execute('UPDATE keys SET retired = 1 WHERE key_id = ?',
                (key_id,))

    def _merge_usage(self, conn, erp, now):
        """The ERP's view of a ticket's/card's use, merged with ours as
        scenic_common.protocol.merge_usage does, counting our scans the
        ERP has not seen yet."""
        kind, ref = erp['kind'], erp['ref']
        local, row = self.usage(kind, ref, conn)
        column = 'ticket' if kind == 'ticket' else 'card'
        # at sync time, once per usage row, on the partial index of this
        # ticket's/card's unreflected rows: not on the decision path
        unseen = conn.execute(
            f'SELECT COUNT(*) FROM outbox WHERE reflected = 0 AND '
            f'{column} = ? AND entry_use = 1', (ref,)).fetchone()[0]
        theirs = gatelib.Usage(entries=erp['entries'],
            last_entry_at=erp['last_entry'], last_exit_at=erp['last_exit'],
            inside=erp['inside'], binding_ref=erp['binding'])
        merged = protocol.merge_usage(local, theirs, unseen,
            local_known=row is not None)
        extra = {}
        if erp['binding'] and not local.binding_ref:
            extra['binding_method'] = 'erp'
        self.save_usage(conn, kind, ref, merged, now, binding=extra)

    # --- maintenance -----------------------------------------------------

    def purge(self, now, keep_days=7):
        """Drop uploaded scans older than ``keep_days``, past real-name
        tickets, and usage (with its binding files: personal data) of
        tickets expired for more than a day."""
        from datetime import timedelta
        old = ts(now - timedelta(days=keep_days))
        day = ts(now - timedelta(days=1))
        files = []
        with self.transaction() as conn:
            conn.execute('DELETE FROM outbox WHERE sent = 1 AND '
                'reflected = 1 AND created_at < ?', (old,))
            conn.execute('DELETE FROM tickets WHERE valid_until < ?', (day,))
            conn.execute('DELETE FROM partner_codes WHERE valid_until < ?',
                (day,))
            for row in conn.execute("SELECT template_path, photo_path FROM "
                    "usage WHERE kind = 'ticket' AND valid_until < ?",
                    (day,)):
                files += [p for p in row if p]
            conn.execute("DELETE FROM usage WHERE kind = 'ticket' AND "
                'valid_until < ?', (day,))
        for path in files:
            try:
                os.unlink(path)
            except OSError:
                pass
        return len(files)

    # --- status ----------------------------------------------------------

    def counts(self):
        with self.lock:
            result = {}
            for table in SYNCED_TABLES + ('usage',):
                result[table] = self.conn.execute(
                    f'SELECT COUNT(*) FROM {table}').fetchone()[0]
            result['outbox_pending'] = self.conn.execute(
                'SELECT COUNT(*) FROM outbox WHERE sent = 0').fetchone()[0]
            result['outbox_total'] = self.conn.execute(
                'SELECT COUNT(*) FROM outbox').fetchone()[0]
            result['conflicts'] = self.conn.execute(
                "SELECT COUNT(*) FROM outbox WHERE result LIKE 'conflict%'"
                ).fetchone()[0]
        return result


def _time_text(value):
    """An ERP time (ISO 8601 with offset) as our UTC text."""
    if value is None or value == '':
        return None
    return ts(parse_ts(value))


def _int(value):
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f'not an integer: {value!r}')
    return value


def _prepare(answer):
    """Rows to write, checked before the transaction starts."""
    def upsert(table, columns, key):
        cols = ', '.join(columns)
        marks = ', '.join('?' * len(columns))
        updates = ', '.join(f'{c} = excluded.{c}' for c in columns
            if c != key)
        return (f'INSERT INTO {table} ({cols}) VALUES ({marks}) '
            f'ON CONFLICT ({key}) DO UPDATE SET {updates}')

    def items(name):
        value = answer.get(name) or []
        if not isinstance(value, list):
            raise ValueError(f'"{name}" must be a list')
        for item in value:
            if not isinstance(item, dict):
                raise ValueError(f'"{name}" holds a non-object')
        return value

    upserts = {}
    keys = []
    for k in items('keys'):
        raw = base64.b64decode(k['public_key'], validate=True)
        if len(raw) != 32:
            raise ValueError(f'key {k["key_id"]} is not 32 bytes')
        revocation = k.get('revocation')
        if revocation is not None:
            revocation = base64.b64decode(revocation, validate=True)
        keys.append((_int(k['key_id']), raw, revocation))
    upserts['revoked'] = (upsert('revoked', ['ticket', 'at'], 'ticket'),
        [(_int(r['ticket']), _time_text(r.get('at')))
            for r in items('revoked')])
    types = []
    for t in items('ticket_types'):
        binding = t.get('binding') or 'none'
        if binding not in gatelib.BINDINGS:
            raise ValueError(f'ticket type {t["id"]}: binding {binding!r}')
        persons = _int(t.get('persons', 1))
        entries = _int(t.get('entries', 1))
        if persons < 1 or entries < 0:
            raise ValueError(f'ticket type {t["id"]}: persons/entries')
        types.append((_int(t['id']), t.get('code'), _json_ids(t.get('zones')),
            persons, entries, binding, _int_or_none(t.get('rule'))))
    upserts['ticket_types'] = (upsert('ticket_types', ['id', 'code', 'zones',
        'persons', 'entries', 'binding', 'rule'], 'id'), types)
    rules = []
    for r in items('rules'):
        values = [_int(r.get(n, 0)) for n in ('early_minutes',
            'late_minutes', 'min_interval_minutes')]
        if min(values) < 0:
            raise ValueError(f'rule {r["id"]}: negative minutes')
        rules.append((_int(r['id']), *values, _bool(r.get('anti_passback')),
            _bool(r.get('exit_counts')), _bool(r.get('default'))))
    upserts['rules'] = (upsert('rules', ['id', 'early_minutes',
        'late_minutes', 'min_interval_minutes', 'anti_passback',
        'exit_counts', 'is_default'], 'id'), rules)
    upserts['zones'] = (upsert('zones', ['id', 'code', 'instant_max',
        'inside'], 'id'), [(_int(z['id']), z.get('code'),
            _int_or_none(z.get('instant_max')), _int(z.get('inside') or 0))
        for z in items('zones')])
    gates = []
    for g in items('gates'):
        direction = g.get('direction') or 'both'
        if direction not in gatelib.GATE_DIRECTIONS:
            raise ValueError(f'gate {g["id"]}: direction {direction!r}')
        gates.append((_int(g['id']), str(g['code']),
            _int_or_none(g.get('zone')), direction,
            _int(g.get('lanes') or 1), _json_ids(g.get('ticket_types')),
            _bool(g.get('active', True)), _int_or_none(g.get('rule'))))
    upserts['gates'] = (upsert('gates', ['id', 'code', 'zone', 'direction',
        'lanes', 'ticket_types', 'active', 'rule'], 'id'), gates)
    cards = []
    for c in items('cards'):
        state = c.get('state') or 'active'
        if state not in gatelib.CARD_STATES:
            raise ValueError(f'card {c.get("card")}: state {state!r}')
        uid = normalize_uid(c['uid'])
        if not uid:
            raise ValueError('card without uid')
        cards.append((uid, _int(c['card']), _int(c['ticket_type']), state,
            c.get('holder_hash'), c.get('holder_masked'),
            _time_text(c.get('valid_from')), _time_text(c.get('valid_until')),
            _int_or_none(c.get('remaining')), c.get('photo_url')))
    upserts['cards'] = (upsert('cards', ['uid', 'card', 'ticket_type',
        'state', 'holder_hash', 'holder_masked', 'valid_from', 'valid_until',
        'remaining', 'photo_url'], 'uid'), cards)
    upserts['tickets'] = (upsert('tickets', ['ticket', 'holder_hash', 'code',
        'valid_from', 'valid_until'], 'ticket'), [(_int(t['ticket']),
            # no signed code: a partner's (its row in partner_codes)
            str(t['holder_hash']).lower(), str(t.get('code') or ''),
            _time_text(t.get('valid_from')), _time_text(t.get('valid_until')))
        for t in items('tickets')])
    codes = []
    for c in items('partner_codes'):
        code_hash = str(c['hash']).lower()
        if len(code_hash) != 64 or any(
                ch not in '0123456789abcdef' for ch in code_hash):
            raise ValueError(f'partner code of ticket {c.get("ticket")}: '
                'hash')
        persons, entries = _int(c.get('persons', 1)), _int(
            c.get('entries', 1))
        if persons < 1 or entries < 0:
            raise ValueError(f'partner code of ticket {c["ticket"]}: '
                'persons/entries')
        valid_from = _time_text(c['valid_from'])
        valid_until = _time_text(c['valid_until'])
        if valid_from is None or valid_until is None:
            raise ValueError(f'partner code of ticket {c["ticket"]}: '
                'validity')
        codes.append((_int(c['ticket']), code_hash, _int(c['ticket_type']),
            persons, entries, valid_from, valid_until))
    upserts['partner_codes'] = (upsert('partner_codes', ['ticket', 'hash',
        'ticket_type', 'persons', 'entries', 'valid_from', 'valid_until'],
        'ticket'), codes)

    usage = []
    for u in items('usage'):
        if u.get('ticket') is not None:
            kind, ref = 'ticket', _int(u['ticket'])
        else:
            kind, ref = 'card', _int(u['card'])
        last_entry = u.get('last_entry')
        last_exit = u.get('last_exit')
        usage.append({'kind': kind, 'ref': ref,
            'entries': _int(u.get('entries') or 0),
            'last_entry': parse_ts(last_entry) if last_entry else None,
            'last_exit': parse_ts(last_exit) if last_exit else None,
            'inside': bool(u.get('inside')),
            'binding': u.get('binding') or None})

    deletes = []
    deleted = answer.get('deleted') or {}
    if not isinstance(deleted, dict):
        raise ValueError('"deleted" must be an object')
    columns = {'keys': 'key_id', 'revoked': 'ticket', 'ticket_types': 'id',
        'rules': 'id', 'zones': 'id', 'gates': 'id', 'cards': 'uid',
        'tickets': 'ticket', 'partner_codes': 'ticket'}
    for table, values in deleted.items():
        if table not in columns or table == 'keys' or not isinstance(
                values, list):
            continue
        if table == 'cards':
            values = [normalize_uid(v) for v in values]
        deletes.append((table, columns[table], values))
    generations = answer.get('gate_generations')
    if generations is not None:
        generations = protocol.parse_generations(generations)
    return {'upserts': upserts, 'deletes': deletes, 'usage': usage,
        'keys': keys, 'generations': generations}
