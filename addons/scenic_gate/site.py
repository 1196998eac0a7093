"""Remote sites: a box in the site role sells and admits while cut off.

A site (a back gate, a cable-car station, a ticket window far from the data
center) runs the IoT box with ``site`` set. Three things let it sell
offline without ever overselling a slot or minting codes the ERP cannot
account for:

- a **site allotment** per slot: places claimed from the slot's capacity
  (the same `booked + n <= capacity` claim as a partner's allotment,
  scenic_group.partner.Allotment), so no central channel sells them; the
  site sells from it offline, and at ``release_at`` the unsold places go
  back to the general pool, but only once the site has uploaded its sales
  up to that time (``box.sales_through``): a sale made offline before the
  release and uploaded later always finds its place;
- **ticket ids** reserved for the allotment from scenic.ticket's own id
  sequence (one per place), so a site's codes never collide with central
  tickets at the gates;
- a **delegated signing key** (scenic.signing_key with ``delegated_to``):
  an Ed25519 key of the area the ERP never signs with, whose private half
  only this box receives (in its sync answer, over the pinned TLS line);
  every gate of the area verifies it like any other key, and retiring it
  (or revoking the box) makes the gates refuse its codes.

Sales come back with ``POST /sales`` (PROTOCOL.md): stored once by nonce,
counted against the allotment; a sale the allotment cannot hold, outside
the reserved ids or signed with another key is stored as a conflict,
never dropped. An accepted sale becomes, in the same transaction, a paid
order of the site's channel (its own, code ``SITE-<box id>``) with its
line, a `scenic.payment` of the method taken at the site's window, and
its ticket: valid, with the reserved id and the very code the site signed
(Ed25519 signatures are deterministic: the ERP signs the same payload
with the delegated key and gets the same code). It is written by the
booking path's `write_booking` with ``held=True``: the allotment already
holds the places on the slot. A refund is the booking path's `cancel`:
the place goes back to the slot's general pool (the site cannot sell it
again: its ticket id is spent).
"""
import base64
import datetime as dt
from decimal import Decimal, InvalidOperation

from sql import Null
from sql.aggregate import Count, Sum

from scenic_common import ticketcode
from scenic_ticket import reservation
from scenic_ticket.allotment import AllotmentMixin
from scenic_ticket.area import CompanyMixin
from scenic_ticket.catalogue import Catalogue
from scenic_ticket.dbtools import forget, insert, lock, naive, now_utc
from scenic_ticket.errors import ApiError
from scenic_ticket.slot import area_timezone
from scenic_ticket.vault import pii_vault
from scenic_ticket.workflow import sql_transition

from trytond import backend
from trytond.i18n import gettext
from trytond.model import Index, ModelSQL, ModelView, Unique, fields
from trytond.pool import Pool, PoolMeta
from trytond.pyson import Eval
from trytond.transaction import Transaction

from .exceptions import SiteError

MAX_SALES = 1000                # a batch, as scans
SALE_STATES = [
    ('accepted', "Accepted"),
    ('conflict', "Conflict"),
    ]
UTC = dt.timezone.utc
# What a site's window takes (scenic_counter's window methods but the
# simulated one); finance posts them as the box office's.
SITE_METHODS = ('cash', 'unionpay')


def window_entries(ticket_type):
    "The entries a site signs into a code of this ticket type."
    return getattr(ticket_type, 'entries_allowed', None) or 1


def site_channel(box):
    "The channel a site's sales are orders of: its own, made once."
    Channel = Pool().get('scenic.channel')
    code = f'SITE-{box.id}'
    with Transaction().set_context(active_test=False):
        channels = Channel.search([('company', '=', box.company.id),
                ('code', '=', code)], limit=1)
    if channels:
        return channels[0]
    channel, = Channel.create([{'company': box.company.id,
                'name': box.name, 'code': code, 'kind': 'box_office'}])
    return channel


def reserve_ticket_ids(count):
    """Take `count` ids from scenic.ticket's id sequence; return them as
    runs [[first, last], …] (contiguous on SQLite, where writers are
    serialised; PostgreSQL may interleave other bookings' ids)."""
    transaction = Transaction()
    table = Pool().get('scenic.ticket')._table
    if backend.name == 'postgresql':
        ids = transaction.database.nextid(
            transaction.connection, table, count)
        if count == 1:
            ids = [ids]
    else:
        cursor = transaction.connection.cursor()
        cursor.execute(
            'SELECT seq FROM sqlite_sequence WHERE name = ?', (table,))
        row = cursor.fetchone()
        last = row[0] if row else 0
        if row:
            cursor.execute('UPDATE sqlite_sequence SET seq = ? '
                'WHERE name = ?', (last + count, table))
        else:
            cursor.execute('INSERT INTO sqlite_sequence (name, seq) '
                'VALUES (?, ?)', (table, last + count))
        ids = range(last + 1, last + count + 1)
    runs = []
    for id_ in sorted(ids):
        if runs and runs[-1][1] + 1 == id_:
            runs[-1][1] = id_
        else:
            runs.append([id_, id_])
    return runs


def format_runs(runs):
    return ','.join(f'{a}-{b}' for a, b in runs)


def parse_runs(text):
    runs = []
    for part in (text or '').split(','):
        if part:
            first, _, last = part.partition('-')
            runs.append((int(first), int(last)))
    return runs


def in_runs(id_, runs):
    return any(first <= id_ <= last for first, last in runs)


class Box(metaclass=PoolMeta):
    __name__ = 'scenic.gate.box'
    site = fields.Boolean(
        "Site",
        help="The box runs a remote site: it sells from its site "
        "allotments with a delegated signing key while cut off.")
    sales_through = fields.DateTime(
        "Sales Uploaded Through", readonly=True,
        help="The box had uploaded every sale it made up to this time.")
    site_allotments = fields.One2Many(
        'scenic.gate.site_allotment', 'box', "Site Allotments",
        readonly=True)
    delegated_keys = fields.One2Many(
        'scenic.signing_key', 'delegated_to', "Delegated Keys",
        readonly=True)

    @classmethod
    def __setup__(cls):
        super().__setup__()
        cls._buttons.update({
                'delegate_key': {
                    'invisible': ~Eval('site') | (Eval('state') == 'revoked'),
                    'depends': ['site', 'state'],
                    },
                })

    @staticmethod
    def default_site():
        return False

    @classmethod
    @ModelView.button
    def delegate_key(cls, boxes):
        SigningKey = Pool().get('scenic.signing_key')
        for box in boxes:
            SigningKey.delegate(box)

    @classmethod
    def revoke(cls, boxes):
        super().revoke(boxes)
        SigningKey = Pool().get('scenic.signing_key')
        keys = SigningKey.search([
                ('delegated_to', 'in', [b.id for b in boxes]),
                ('state', '!=', 'retired')])
        if keys:
            SigningKey.write(keys, {'state': 'retired'})


class SigningKey(metaclass=PoolMeta):
    __name__ = 'scenic.signing_key'
    delegated_to = fields.Many2One(
        'scenic.gate.box', "Delegated To", readonly=True,
        ondelete='RESTRICT',
        help="The site box that signs with this key; the ERP never does.")

    @classmethod
    def delegate(cls, box):
        """A new key of the box's area for the site box to sign with; the
        box's other delegated keys only verify from now on (the box keeps
        signing with the newest)."""
        if not box.site:
            raise SiteError(gettext(
                    'scenic_gate.msg_site_not_site', box=box.rec_name))
        if box.state == 'revoked':
            raise SiteError(gettext(
                    'scenic_gate.msg_site_revoked', box=box.rec_name))
        last = cls.search([('company', '=', box.company.id)], limit=1)
        key_id = (last[0].key_id + 1) if last else 1
        signer = ticketcode.SigningKey.generate(key_id)
        key, = cls.create([{
                    'company': box.company.id, 'key_id': key_id,
                    # 'verify': the ERP's active_signer never picks it
                    'state': 'verify',
                    'delegated_to': box.id,
                    'public_key': base64.b64encode(
                        signer.public_bytes()).decode(),
                    'private_key_encrypted': pii_vault().encrypt(
                        base64.b64encode(signer.private_bytes()).decode(),
                        purpose='signing'),
                    }])
        return key


class SiteAllotment(AllotmentMixin, CompanyMixin, ModelSQL, ModelView):
    """Places of a time slot held for a site box until the release time.

    The held places count as booked on the slot, so no other channel sells
    them; the site sells them offline and uploads its sales."""
    __name__ = 'scenic.gate.site_allotment'
    box = fields.Many2One(
        'scenic.gate.box', "Site", required=True, ondelete='RESTRICT',
        readonly=True, domain=[('company', '=', Eval('company', -1)),
            ('site', '=', True)])
    ticket_ids = fields.Text(
        "Ticket IDs", readonly=True,
        help="The ticket ids reserved for the site's codes (runs).")

    @classmethod
    def __setup__(cls):
        super().__setup__()
        t = cls.__table__()
        cls._sql_constraints += [
            ('slot_box_unique', Unique(t, t.slot, t.box),
                'scenic_gate.msg_site_allotment_unique'),
            ]

    @classmethod
    def allot(cls, box, slot, quota, release_at=None):
        """Hold `quota` places of a slot for a site box and reserve as many
        ticket ids; release at the slot's end unless told otherwise.
        Refused when the slot has fewer places left."""
        if not box.site or box.state == 'revoked':
            raise SiteError(gettext(
                    'scenic_gate.msg_site_not_site', box=box.rec_name))
        if quota < 1:
            raise SiteError(gettext('scenic_gate.msg_site_allotment_quota'))
        if release_at is None:
            end = dt.datetime.combine(slot.date, slot.end_time,
                tzinfo=area_timezone(slot.company))
            release_at = naive(end.astimezone(UTC))
        if not cls.hold_places(slot.id, quota):
            raise SiteError(gettext(
                    'scenic_gate.msg_site_allotment_capacity',
                    slot=slot.rec_name, quota=quota))
        forget('scenic.time_slot')
        site_channel(box)
        allotment, = cls.create([{
                    'company': slot.company.id, 'box': box.id,
                    'slot': slot.id, 'date': slot.date, 'quota': quota,
                    'release_at': release_at,
                    'ticket_ids': format_runs(reserve_ticket_ids(quota)),
                    }])
        return allotment

    @classmethod
    def release_due(cls, now=None):
        """Give the unsold places of site allotments back to the slot once
        their release time has passed and the site has uploaded its sales
        up to it (or was revoked); return how many were released."""
        pool = Pool()
        table = cls.__table__()
        box = pool.get('scenic.gate.box').__table__()
        slot = pool.get('scenic.time_slot').__table__()
        cursor = Transaction().connection.cursor()
        now = naive(now or now_utc())
        cursor.execute(*table.join(box, condition=box.id == table.box
                ).select(table.id, table.slot,
                where=(table.released == False)  # noqa: E712
                & (table.release_at <= now)
                & ((box.state == 'revoked')
                    | ((box.sales_through != Null)
                        & (box.sales_through >= table.release_at))),
                order_by=[table.id]))
        found = cursor.fetchall()
        released = 0
        for allotment_id, slot_id in found:
            # Lock order as the sales upload: the allotment, then its slot.
            cursor.execute(*table.update([table.released], [True],
                    where=(table.id == allotment_id)
                    & (table.released == False)))  # noqa: E712
            if cursor.rowcount != 1:
                continue
            cursor.execute(*table.select(table.quota - table.sold,
                    where=table.id == allotment_id))
            unsold, = cursor.fetchone()
            if unsold:
                cursor.execute(*slot.update(
                        [slot.booked], [slot.booked - unsold],
                        where=slot.id == slot_id))
            released += 1
        forget('scenic.time_slot')
        forget(cls.__name__)
        return released

    @classmethod
    def release_cron(cls):
        "Cron: release site allotments past their release time."
        from scenic_ticket.dbtools import use_read_committed
        with Transaction().new_transaction() as transaction:
            use_read_committed()
            cls.release_due()
            transaction.commit()


class SiteSale(CompanyMixin, ModelSQL, ModelView):
    "A ticket a site sold while it decided alone, as it uploaded it."
    __name__ = 'scenic.gate.site_sale'
    box = fields.Many2One(
        'scenic.gate.box', "Site", required=True, ondelete='RESTRICT',
        readonly=True)
    allotment = fields.Many2One(
        'scenic.gate.site_allotment', "Site Allotment", readonly=True,
        ondelete='RESTRICT')
    nonce = fields.Char("Nonce", required=True, readonly=True)
    sold_at = fields.DateTime("Sold At", required=True, readonly=True)
    slot = fields.Many2One(
        'scenic.time_slot', "Time Slot", readonly=True, ondelete='RESTRICT')
    ticket_type = fields.Many2One(
        'scenic.ticket.type', "Ticket Type", readonly=True,
        ondelete='RESTRICT')
    ticket_id = fields.Integer("Ticket ID", required=True, readonly=True)
    key_id = fields.Integer("Signing Key", readonly=True)
    persons = fields.Integer("Persons", required=True, readonly=True)
    amount = fields.Numeric("Amount", digits=(16, 2), required=True,
        readonly=True)
    payment = fields.Char("Payment", readonly=True)
    order = fields.Many2One('scenic.order', "Order", readonly=True,
        ondelete='RESTRICT',
        help="The paid order an accepted sale became.")
    state = fields.Selection(SALE_STATES, "State", required=True,
        readonly=True)
    conflict = fields.Char("Conflict", readonly=True,
        help="Why the ERP could not count the sale (the visitor holds a "
        "ticket: settle it by hand).")

    @classmethod
    def __setup__(cls):
        super().__setup__()
        t = cls.__table__()
        cls._sql_constraints += [
            ('box_nonce_unique', Unique(t, t.box, t.nonce),
                'scenic_gate.msg_site_sale_unique'),
            ]
        cls._sql_indexes.add(Index(t, (t.ticket_id, Index.Equality())))
        cls._order = [('sold_at', 'DESC'), ('id', 'DESC')]


class Cron(metaclass=PoolMeta):
    __name__ = 'ir.cron'

    @classmethod
    def __setup__(cls):
        super().__setup__()
        cls.method.selection.append(
            ('scenic.gate.site_allotment|release_cron',
                "Release Unsold Site Allotments"))


# --- the site's sync section and its sales upload ----------------------------

def site_section(box_id, company, now=None):
    """What only a site box receives in its sync answer: its delegated
    private keys, its open allotments with their ticket ids, and the
    prices its window sells at. None for a box that is not a site."""
    pool = Pool()
    Box = pool.get('scenic.gate.box')
    SigningKey = pool.get('scenic.signing_key')
    Allotment = pool.get('scenic.gate.site_allotment')
    TicketType = pool.get('scenic.ticket.type')
    box = Box(box_id)
    if not box.site:
        return None
    now = now or now_utc()
    tz = area_timezone(company)
    keys = []
    for key in SigningKey.search([('delegated_to', '=', box.id),
                ('state', '!=', 'retired')], order=[('key_id', 'ASC')]):
        keys.append({'key_id': key.key_id,
                'private_key': pii_vault().decrypt(
                    key.private_key_encrypted, purpose='signing')})
    today = now.astimezone(tz).date()
    allotments = []
    for allotment in Allotment.search([('box', '=', box.id),
                ('released', '=', False),
                ('date', '>=', today - dt.timedelta(days=1))],
            order=[('id', 'ASC')]):
        slot = allotment.slot
        start = dt.datetime.combine(slot.date, slot.start_time, tzinfo=tz)
        end = dt.datetime.combine(slot.date, slot.end_time, tzinfo=tz)
        allotments.append({'id': allotment.id, 'slot': slot.id,
                'date': slot.date.isoformat(),
                'start': start.isoformat(), 'end': end.isoformat(),
                'quota': allotment.quota, 'sold': allotment.sold,
                'release_at': allotment.release_at.replace(
                    tzinfo=UTC).astimezone(tz).isoformat(),
                'ticket_ids': [list(r)
                    for r in parse_runs(allotment.ticket_ids)]})
    prices = []
    for ttype in TicketType.search([('company', '=', company.id)],
            order=[('id', 'ASC')]):
        if getattr(ttype, 'active', True) is False:
            continue
        prices.append({'ticket_type': ttype.id,
                'price': str(ttype.base_price or Decimal(0)),
                'persons': ttype.persons or 1,
                'entries': window_entries(ttype)})
    return {'keys': keys, 'allotments': allotments, 'prices': prices}


def _invalid(message, field):
    return ApiError('invalid_request', message, field)


def _aware(text, field):
    try:
        value = dt.datetime.fromisoformat(text)
    except (TypeError, ValueError):
        raise _invalid(f"'{field}' must be an ISO 8601 time.", field) \
            from None
    if value.tzinfo is None:
        raise _invalid(f"'{field}' must have a UTC offset.", field)
    return value


def parse_sales(data):
    "The body of POST /sales, checked: (sales, through or None)."
    sales = data.get('sales')
    if not isinstance(sales, list):
        raise _invalid("'sales' must be a list.", 'sales')
    if len(sales) > MAX_SALES:
        raise _invalid(f"At most {MAX_SALES} sales a call.", 'sales')
    parsed = []
    for index, raw in enumerate(sales):
        where = f'sales[{index}]'
        if not isinstance(raw, dict):
            raise _invalid("A sale must be an object.", where)
        nonce = raw.get('nonce')
        if not isinstance(nonce, str) or not 8 <= len(nonce) <= 64:
            raise _invalid("'nonce' must be a string of 8 to 64 "
                "characters.", f'{where}.nonce')
        values = {'nonce': nonce,
            'at': _aware(raw.get('at'), f'{where}.at')}
        for name in ('slot', 'ticket_type', 'ticket', 'persons', 'key_id'):
            value = raw.get(name)
            if isinstance(value, bool) or not isinstance(value, int) \
                    or value < (0 if name == 'key_id' else 1) \
                    or value > 2 ** 31 - 1:
                raise _invalid(f"'{name}' must be a positive integer.",
                    f'{where}.{name}')
            values[name] = value
        try:
            amount = Decimal(str(raw.get('amount')))
        except (InvalidOperation, ValueError):
            amount = None
        if amount is None or not amount.is_finite() or amount < 0 \
                or amount != amount.quantize(Decimal('0.01')):
            raise _invalid("'amount' must be a decimal string with at most "
                "2 places, not negative.", f'{where}.amount')
        values['amount'] = amount
        payment = raw.get('payment')
        if payment is not None and (not isinstance(payment, str)
                or len(payment) > 30):
            raise _invalid("'payment' must be a short string.",
                f'{where}.payment')
        values['payment'] = payment
        parsed.append(values)
    through = data.get('through')
    if through is not None:
        through = _aware(through, 'through')
    return parsed, through


def upload_sales(box_id, company, sales, through=None):
    """Store a site's sales once by nonce and count them against its
    allotments; answer as the scan upload does."""
    pool = Pool()
    Box = pool.get('scenic.gate.box')
    SigningKey = pool.get('scenic.signing_key')
    Sale = pool.get('scenic.gate.site_sale')
    allot_table = pool.get('scenic.gate.site_allotment').__table__()
    sale_table = Sale.__table__()
    box_table = Box.__table__()
    cursor = Transaction().connection.cursor()
    box = Box(box_id)
    if not box.site:
        raise ApiError('not_a_site', "This box is not a site: it cannot "
            "upload sales. Set 'Site' on the box in the back office.")
    nonces = [s['nonce'] for s in sales]
    seen = set()
    for start in range(0, len(nonces), 500):
        cursor.execute(*sale_table.select(sale_table.nonce,
                where=(sale_table.box == box_id)
                & sale_table.nonce.in_(nonces[start:start + 500])))
        seen.update(n for n, in cursor)
    keys = {k.key_id: k for k in SigningKey.search([
                ('delegated_to', '=', box_id)])}
    Ticket = pool.get('scenic.ticket')
    ticket_table = Ticket.__table__()
    used_ids = set()
    ticket_ids = sorted({s['ticket'] for s in sales})
    for start in range(0, len(ticket_ids), 500):
        cursor.execute(*ticket_table.select(ticket_table.id,
                where=ticket_table.id.in_(ticket_ids[start:start + 500])))
        used_ids.update(i for i, in cursor)
    slots = sorted({s['slot'] for s in sales})
    allotments = {}
    if slots:
        # Lock the box's allotments of these slots, in id order.
        cursor.execute(*lock(allot_table.select(allot_table.id,
                    allot_table.slot, allot_table.quota, allot_table.sold,
                    allot_table.ticket_ids,
                    where=(allot_table.box == box_id)
                    & allot_table.slot.in_(slots),
                    order_by=[allot_table.id])))
        for id_, slot, quota, sold, ids in cursor.fetchall():
            allotments[slot] = {'id': id_, 'left': quota - sold,
                'runs': parse_runs(ids), 'taken': 0}
    accepted, duplicates, conflicts, rows = [], [], [], []
    stamp = naive(now_utc())
    user = Transaction().user
    for sale in sales:
        if sale['nonce'] in seen:
            duplicates.append(sale['nonce'])
            continue
        seen.add(sale['nonce'])
        allotment = allotments.get(sale['slot'])
        reason = None
        if allotment is None:
            reason = 'no_allotment'
        elif not in_runs(sale['ticket'], allotment['runs']):
            reason = 'foreign_ticket_id'
        elif sale['key_id'] not in keys:
            reason = 'foreign_key'
        elif allotment['left'] < sale['persons']:
            reason = 'allotment_exhausted'
        elif sale['ticket'] in used_ids:
            reason = 'ticket_id_used'
        elif (sale['payment'] or 'cash') not in SITE_METHODS:
            reason = 'unknown_payment'
        else:
            allotment['left'] -= sale['persons']
            allotment['taken'] += sale['persons']
            used_ids.add(sale['ticket'])
        if reason:
            conflicts.append({'nonce': sale['nonce'], 'reason': reason})
        else:
            accepted.append(sale['nonce'])
        rows.append([company.id, box_id,
                allotment['id'] if allotment else None, sale['nonce'],
                naive(sale['at']), sale['slot'] if allotment else None,
                sale['ticket_type'], sale['ticket'], sale['key_id'],
                sale['persons'], sale['amount'], sale['payment'],
                'conflict' if reason else 'accepted', reason, user, stamp,
                None if reason else sale])
    for allotment in sorted(allotments.values(), key=lambda a: a['id']):
        if allotment['taken']:
            cursor.execute(*allot_table.update(
                    [allot_table.sold],
                    [allot_table.sold + allotment['taken']],
                    where=(allot_table.id == allotment['id'])
                    & (allot_table.sold + allotment['taken']
                        <= allot_table.quota)))
            if cursor.rowcount != 1:
                # read under the row lock above: only a bug gets here
                raise RuntimeError('Site allotment %s changed under its '
                    'lock' % allotment['id'])
    if rows:
        types = {r[6] for r in rows}
        TicketType = pool.get('scenic.ticket.type')
        known = {t.id for t in TicketType.search([
                    ('id', 'in', list(types)),
                    ('company', '=', company.id)])}
        for row in rows:
            if row[6] not in known:
                raise _invalid(f"Ticket type {row[6]} is not a ticket type "
                    "of this area.", 'sales')
        if any(row[-1] for row in rows):
            orders = _write_orders(box, company, keys,
                [row[-1] for row in rows if row[-1]])
        for row in rows:
            row[-1] = orders[row[-1]['nonce']] if row[-1] else None
        cursor.execute(*sale_table.insert(
                [sale_table.company, sale_table.box, sale_table.allotment,
                    sale_table.nonce, sale_table.sold_at, sale_table.slot,
                    sale_table.ticket_type, sale_table.ticket_id,
                    sale_table.key_id, sale_table.persons,
                    sale_table.amount, sale_table.payment, sale_table.state,
                    sale_table.conflict, sale_table.create_uid,
                    sale_table.create_date, sale_table.order], rows))
    if through is not None:
        through = naive(through)
        cursor.execute(*box_table.update(
                [box_table.sales_through], [through],
                where=(box_table.id == box_id)
                & ((box_table.sales_through == Null)
                    | (box_table.sales_through < through))))
    forget('scenic.gate.site_allotment', 'scenic.gate.box')
    return {'accepted': accepted, 'duplicates': duplicates,
        'conflicts': conflicts}


def _write_orders(box, company, keys, sales):
    """Make each accepted sale a paid order of the site's channel, with
    its line, payment and valid ticket (the reserved id, the site's code),
    through the booking path's write step; return {nonce: order id}."""
    pool = Pool()
    Order = pool.get('scenic.order')
    Ticket = pool.get('scenic.ticket')
    TicketType = pool.get('scenic.ticket.type')
    order_table = Order.__table__()
    ticket_table = Ticket.__table__()
    payment_table = pool.get('scenic.payment').__table__()
    channel = site_channel(box)
    catalogue = Catalogue(company.id)
    infos = {t.id: t for t in catalogue.snapshot.types}
    records = {t.id: t for t in TicketType.browse(
            list({s['ticket_type'] for s in sales}))}
    vault = pii_vault()
    signers = {}
    slots = {}
    orders = {}
    for sale in sales:
        key_id = sale['key_id']
        if key_id not in signers:
            signers[key_id] = ticketcode.SigningKey.from_private_bytes(
                key_id, base64.b64decode(vault.decrypt(
                        keys[key_id].private_key_encrypted,
                        purpose='signing')))
        if sale['slot'] not in slots:
            slots[sale['slot']] = catalogue.slot(sale['slot'])
        slot = slots[sale['slot']]
        info = infos[sale['ticket_type']]
        entries = window_entries(records[sale['ticket_type']])
        # As the box signs it: the slot's times to the second.
        valid_from = slot.aware(slot.start_time).replace(microsecond=0)
        valid_until = slot.aware(slot.end_time).replace(microsecond=0)
        plan = reservation.BookingPlan(company=company.id,
            channel=channel.id, slot=slot,
            request=reservation.BookingRequest(slot=slot.id, items=[],
                contact_name=box.name, contact_phone=None),
            digest=None, currency=catalogue.snapshot.currency,
            hold_minutes=0, total=sale['amount'])
        plan.lines.append({'ticket_type': info.id, 'quantity': 1,
                'persons': sale['persons'], 'unit_price': sale['amount'],
                'amount': sale['amount'],
                'price_explanation': f"Sold at site {box.name}"})
        plan.tickets.append(reservation.PlannedTicket(line=0,
                ticket_type=info, holder_hash=None, holder_masked=None,
                valid_from=valid_from, valid_until=valid_until,
                ticket_id=sale['ticket'], persons=sale['persons'],
                entries=entries))
        for scope, zone, maximum in catalogue.load_scopes(info):
            plan.scope_persons[scope] += sale['persons']
            plan.scope_info[scope] = (zone, maximum)
        order_id = reservation.write_booking(plan, sale['nonce'],
            now=sale['at'], held=True)
        insert(payment_table, [{
                    'company': company.id, 'order': order_id,
                    'kind': 'payment',
                    'provider': sale['payment'] or 'cash',
                    'provider_reference':
                        f"SITE-{box.id}-{sale['nonce']}",
                    'amount': sale['amount'],
                    'currency': catalogue.snapshot.currency,
                    'date': naive(sale['at']),
                    }])
        code = ticketcode.encode(ticketcode.TicketPayload(
                ticket_id=sale['ticket'], area_id=company.id,
                ticket_type_id=info.id, valid_from=valid_from,
                valid_until=valid_until, persons=sale['persons'],
                entries=entries, key_id=key_id), signers[key_id])
        sql_transition(Ticket, ticket_table, 'valid',
            ticket_table.order == order_id,
            [ticket_table.code, ticket_table.key_id], [code, key_id])
        sql_transition(Order, order_table, 'paid',
            order_table.id == order_id, [order_table.paid_at],
            [naive(sale['at'])])
        orders[sale['nonce']] = order_id
    forget()
    return orders


def site_totals(box_id):
    "(persons accepted, sales accepted) of a site, for the tests and bench."
    table = Pool().get('scenic.gate.site_sale').__table__()
    cursor = Transaction().connection.cursor()
    cursor.execute(*table.select(Sum(table.persons), Count(table.id),
            where=(table.box == box_id) & (table.state == 'accepted')))
    persons, count = cursor.fetchone()
    return persons or 0, count or 0


__all__ = ['Box', 'Cron', 'SigningKey', 'SiteAllotment', 'SiteSale',
    'site_section', 'parse_sales', 'upload_sales']
