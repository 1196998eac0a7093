"""The site role: a box at a remote site sells at its ticket window while
cut off (PROTOCOL.md, "Sites").

The ERP makes a box a site (``box.site``); its sync answer then carries a
``site`` section: the Ed25519 keys the ERP delegated to this box (private
halves: this box signs with the newest), its **site allotments** (places
of a slot claimed from the central capacity, with the ticket ids reserved
for them and the release time) and the prices its window sells at.

:meth:`SiteDesk.sell` takes places from an allotment, signs the code and
writes the sale to the ``sales`` outbox in one transaction (fsync'd, as a
scan): a sale never outruns the allotment, is never signed twice with one
ticket id, and is never lost.  :meth:`SiteDesk.upload` sends the outbox
oldest first, gzip-compressed, in batches the ERP stores once by nonce:
an interrupted upload resumes where the last acknowledged batch ended,
and a batch whose answer was lost is sent again and answered as
``duplicates``.  The last batch carries ``through``: the ERP releases an
allotment's unsold places only once a site has uploaded its sales up to
the release time, so a sale made offline always finds its place.

The gates of the area (this box's and every other box's) verify the codes
with the delegated key's public half, synced as any key of the area.
"""

import base64
import json
import logging
import uuid
from datetime import datetime, timedelta, timezone
from decimal import Decimal, InvalidOperation

from scenic_common import ticketcode

from .store import StoreError, parse_ts, ts

__all__ = ['SiteDesk', 'SiteError', 'SALES_BATCH']

logger = logging.getLogger(__name__)

SALES_BATCH = 1000              # the ERP's limit per call (MAX_SALES)
THROUGH_EVERY = timedelta(minutes=1)

SCHEMA = """
CREATE TABLE IF NOT EXISTS site_keys (
    key_id INTEGER PRIMARY KEY,
    private_key BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS site_allotments (
    slot INTEGER PRIMARY KEY,
    id INTEGER NOT NULL,
    date TEXT NOT NULL,
    start TEXT NOT NULL,
    "end" TEXT NOT NULL,
    quota INTEGER NOT NULL,
    release_at TEXT NOT NULL,
    ticket_ids TEXT NOT NULL          -- JSON [[first, last], ...]
);
CREATE TABLE IF NOT EXISTS site_prices (
    ticket_type INTEGER PRIMARY KEY,
    price TEXT NOT NULL,
    persons INTEGER NOT NULL,
    entries INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS sales (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    nonce TEXT NOT NULL UNIQUE,
    created_at TEXT NOT NULL,
    slot INTEGER NOT NULL,
    ticket INTEGER NOT NULL UNIQUE,   -- one code per reserved id
    persons INTEGER NOT NULL,
    payload TEXT NOT NULL,            -- the JSON sale of PROTOCOL.md
    code TEXT NOT NULL,
    sent INTEGER NOT NULL DEFAULT 0,
    sent_at TEXT,
    result TEXT                       -- accepted | duplicate | conflict:<r>
);
CREATE INDEX IF NOT EXISTS sales_unsent ON sales (seq) WHERE sent = 0;
CREATE INDEX IF NOT EXISTS sales_slot ON sales (slot);
"""


class SiteError(Exception):
    """A sale the window cannot make; ``code`` is stable for the screen."""

    def __init__(self, code, message, field=None):
        super().__init__(message)
        self.code = code
        self.message = message
        self.field = field


class SiteDesk:
    """The ticket window of a site box, on the box's store."""

    def __init__(self, store, clock=None):
        self.store = store
        self.clock = clock or (lambda: datetime.now(timezone.utc))
        with store.lock:
            store.conn.executescript(SCHEMA)
        self._signers = {}
        self.uploaded = 0

    # --- the ERP's section ---------------------------------------------

    @property
    def active(self):
        "True once the ERP has made this box a site."
        return self.store.get_meta('site') == '1'

    def apply(self, section, conn=None):
        """Apply the sync answer's ``site`` section (or None: the box is no
        longer a site; its outbox still goes up). Raises StoreError and
        changes nothing for a section that does not follow PROTOCOL.md."""
        if section is None:
            with self.store.transaction() as conn:
                conn.execute('DELETE FROM site_keys')
                conn.execute('DELETE FROM site_allotments')
                self.store.set_meta('site', '0', conn)
            return
        try:
            keys = [(int(k['key_id']), base64.b64decode(k['private_key'],
                        validate=True)) for k in section.get('keys') or []]
            for key_id, raw in keys:
                ticketcode.SigningKey.from_private_bytes(key_id, raw)
            allotments = []
            for a in section.get('allotments') or []:
                runs = [[int(x), int(y)] for x, y in a['ticket_ids']]
                allotments.append((int(a['slot']), int(a['id']),
                        str(a['date']), ts(_aware(a['start'])),
                        ts(_aware(a['end'])), int(a['quota']),
                        ts(_aware(a['release_at'])), json.dumps(runs)))
            prices = [(int(p['ticket_type']), str(Decimal(p['price'])),
                    int(p.get('persons') or 1), int(p.get('entries') or 1))
                for p in section.get('prices') or []]
        except (KeyError, TypeError, ValueError, InvalidOperation) as error:
            raise StoreError(f'Bad site section: {error!r}') from None
        with self.store.transaction() as conn:
            conn.execute('DELETE FROM site_keys')
            conn.executemany('INSERT INTO site_keys (key_id, private_key) '
                'VALUES (?, ?)', keys)
            conn.execute('DELETE FROM site_allotments')
            conn.executemany('INSERT INTO site_allotments (slot, id, date, '
                'start, "end", quota, release_at, ticket_ids) '
                'VALUES (?, ?, ?, ?, ?, ?, ?, ?)', allotments)
            conn.execute('DELETE FROM site_prices')
            conn.executemany('INSERT INTO site_prices (ticket_type, price, '
                'persons, entries) VALUES (?, ?, ?, ?)', prices)
            self.store.set_meta('site', '1', conn)

    # --- selling -----------------------------------------------------------

    def _signer(self, conn):
        row = conn.execute('SELECT key_id, private_key FROM site_keys '
            'ORDER BY key_id DESC LIMIT 1').fetchone()
        if row is None:
            raise SiteError('no_key', 'The ERP has not delegated a signing '
                'key to this site yet: sync first.')
        key_id, raw = row[0], bytes(row[1])
        signer = self._signers.get((key_id, raw))
        if signer is None:
            signer = ticketcode.SigningKey.from_private_bytes(key_id, raw)
            self._signers[(key_id, raw)] = signer
        return signer

    def sell(self, ticket_type, slot, payment='cash', now=None):
        """Sell one ticket of a type on a slot from the site allotment:
        returns ``{"nonce", "ticket", "code", "persons", "amount",
        "valid_from", "valid_until"}``; raises SiteError."""
        now = now or self.clock()
        area = self.store.get_meta('area_id')
        if not area:
            raise SiteError('not_synced', 'The box has not synced yet.')
        with self.store.transaction() as conn:
            allotment = conn.execute('SELECT * FROM site_allotments '
                'WHERE slot = ?', (slot,)).fetchone()
            if allotment is None:
                raise SiteError('no_allotment', f'This site has no '
                    f'allotment of time slot {slot}.', 'slot')
            if now >= parse_ts(allotment['release_at']):
                raise SiteError('allotment_released', 'This time slot\'s '
                    'site allotment is released: sell it centrally.', 'slot')
            price = conn.execute('SELECT * FROM site_prices WHERE '
                'ticket_type = ?', (ticket_type,)).fetchone()
            if price is None:
                raise SiteError('unknown_ticket_type', f'Ticket type '
                    f'{ticket_type} is not sold at this site.',
                    'ticket_type')
            persons = price['persons']
            used, tickets = conn.execute('SELECT COALESCE(SUM(persons), 0), '
                'COUNT(*) FROM sales WHERE slot = ?', (slot,)).fetchone()
            if used + persons > allotment['quota']:
                raise SiteError('allotment_exhausted', f'The site '
                    f'allotment of this time slot has '
                    f'{allotment["quota"] - used} places left.', 'slot')
            ticket = _nth_id(json.loads(allotment['ticket_ids']), tickets)
            if ticket is None:
                raise SiteError('allotment_exhausted', 'The ticket ids '
                    'reserved for this allotment are used up.', 'slot')
            signer = self._signer(conn)
            valid_from = parse_ts(allotment['start']).replace(microsecond=0)
            valid_until = parse_ts(allotment['end']).replace(microsecond=0)
            code = ticketcode.encode(ticketcode.TicketPayload(
                    ticket_id=ticket, area_id=int(area),
                    ticket_type_id=ticket_type, valid_from=valid_from,
                    valid_until=valid_until, persons=persons,
                    entries=price['entries'], key_id=signer.key_id),
                signer)
            nonce = uuid.uuid4().hex
            sale = {'nonce': nonce, 'at': now.isoformat(), 'slot': slot,
                'ticket_type': ticket_type, 'ticket': ticket,
                'persons': persons, 'amount': price['price'],
                'payment': payment, 'key_id': signer.key_id}
            conn.execute('INSERT INTO sales (nonce, created_at, slot, '
                'ticket, persons, payload, code) VALUES (?, ?, ?, ?, ?, ?, '
                '?)', (nonce, ts(now), slot, ticket, persons,
                    json.dumps(sale, separators=(',', ':')), code))
        return {'nonce': nonce, 'ticket': ticket, 'code': code,
            'persons': persons, 'amount': price['price'],
            'valid_from': valid_from.isoformat(),
            'valid_until': valid_until.isoformat()}

    def allotments(self):
        "The window's view: per slot, quota, sold here, left, release."
        rows = self.store.query('SELECT a.slot, a.date, a.start, a."end", '
            'a.quota, a.release_at, COALESCE(SUM(s.persons), 0) AS sold '
            'FROM site_allotments a LEFT JOIN sales s ON s.slot = a.slot '
            'GROUP BY a.slot ORDER BY a.start')
        return [{'slot': r['slot'], 'date': r['date'], 'start': r['start'],
                'end': r['end'], 'quota': r['quota'], 'sold': r['sold'],
                'left': r['quota'] - r['sold'],
                'release_at': r['release_at']} for r in rows]

    # --- the outbox --------------------------------------------------------

    def pending(self, limit=SALES_BATCH):
        rows = self.store.query('SELECT seq, nonce, payload FROM sales '
            'WHERE sent = 0 ORDER BY seq LIMIT ?', (limit,))
        return [(r['seq'], r['nonce'], json.loads(r['payload']))
            for r in rows]

    def outbox_size(self):
        return self.store.query_one(
            'SELECT COUNT(*) FROM sales WHERE sent = 0')[0]

    def mark_sent(self, results, now):
        with self.store.transaction() as conn:
            conn.executemany('UPDATE sales SET sent = 1, sent_at = ?, '
                'result = ? WHERE nonce = ? AND sent = 0',
                [(ts(now), result, nonce)
                    for nonce, result in results.items()])

    def upload(self, client, acknowledged):
        """Upload the sales outbox oldest first until it is empty.  The
        last call says ``through``: every sale made up to then is
        uploaded (an empty call says it when there was nothing to send,
        at most every THROUGH_EVERY, so that the ERP can release the
        allotments of a site that sold nothing more).
        ``acknowledged(answer)`` reads the ERP's answer (nonce -> result).
        Returns how many sales were acknowledged; raises ErpError."""
        total = 0
        while True:
            # Read the clock before the batch: a sale after it is in a
            # later batch, so "through" never claims more than was sent.
            through = self.clock()
            batch = self.pending(SALES_BATCH)
            if not batch:
                said = parse_ts(self.store.get_meta('sales_through_sent'))
                if self.active and (total or said is None
                        or through - said >= THROUGH_EVERY):
                    client.upload_sales([], through)
                    self.store.set_meta('sales_through_sent', ts(through))
                return total
            last = len(batch) < SALES_BATCH
            answer = client.upload_sales([p for _, _, p in batch],
                through if last else None)
            results = acknowledged(answer)
            sent = {n: results[n] for _, n, _ in batch if n in results}
            self.mark_sent(sent, self.clock())
            total += len(sent)
            self.uploaded += len(sent)
            for nonce, result in sent.items():
                if result.startswith('conflict'):
                    logger.warning('Sale %s: ERP flagged %s', nonce, result)
            if len(sent) < len(batch):
                from .sync import ErpUnavailable
                raise ErpUnavailable(f'The ERP acknowledged {len(sent)} of '
                    f'{len(batch)} sales.')
            if last:
                self.store.set_meta('sales_through_sent', ts(through))
                return total

    def counts(self):
        row = self.store.query_one('SELECT COUNT(*), '
            'COALESCE(SUM(sent), 0) FROM sales')
        return {'sales': row[0], 'sales_sent': row[1]}


def _nth_id(runs, n):
    "The n-th id (0-based) of runs [[first, last], ...], or None."
    for first, last in runs:
        size = last - first + 1
        if n < size:
            return first + n
        n -= size
    return None


def _aware(text):
    value = datetime.fromisoformat(text)
    if value.utcoffset() is None:
        raise ValueError(f'{text!r} has no UTC offset')
    return value
