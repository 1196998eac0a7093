"""Notices to partners through a durable outbox.

A notice is a row written in the transaction of the event it tells of
(a ticket used at a gate, a refund decided, an order cancelled by the
area), so it exists exactly when the event does. A deliverer (the cron
job, or `deliver_pending` in a loop) posts due notices to the partner's
URL, signed like the partner's own calls (with its notice secret), with
the notice id in `X-Scenic-Notice-Id` so the partner can de-duplicate.
A failure is retried with exponential backoff; after MAX_ATTEMPTS the
notice is `failed` and staff may resend it. Notices of one order are
delivered in order: one waits while an earlier notice of its order is not
delivered (with one deliverer per database, as trytond-cron runs it). Gates and bookings only insert rows: a slow or dead partner
never slows them.
"""
import datetime as dt
import json
import logging
import urllib.error
import urllib.parse
import urllib.request
import uuid

from sql import Null
from sql.operators import Exists

from scenic_common import partnersign

from scenic_ticket.area import CompanyMixin
from scenic_ticket.dbtools import forget, lock

from trytond import backend
from trytond.model import Index, ModelSQL, ModelView, Workflow, fields
from trytond.pool import Pool, PoolMeta
from trytond.pyson import Eval
from trytond.transaction import Transaction

logger = logging.getLogger(__name__)

NOTICE_KINDS = [
    ('ticket_used', "Ticket Used"),
    ('refund_approved', "Refund Approved"),
    ('refund_refused', "Refund Refused"),
    ('order_cancelled', "Order Cancelled by the Area"),
    ]
MAX_ATTEMPTS = 8
BACKOFF_BASE = 10  # seconds: 10, 20, 40 … capped
BACKOFF_CAP = 3600
TIMEOUT = 5  # seconds per delivery attempt
NOTICE_ID_HEADER = 'X-Scenic-Notice-Id'


def utcnow():
    return dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)


def backoff(attempts):
    "Seconds to wait after the n-th failed attempt."
    return min(BACKOFF_BASE * 2 ** max(attempts - 1, 0), BACKOFF_CAP)


class Notice(CompanyMixin, Workflow, ModelSQL, ModelView):
    "A notice to a partner, kept until it is delivered."
    __name__ = 'scenic.group.notice'
    partner = fields.Many2One(
        'scenic.group.partner', "Partner", required=True, readonly=True,
        ondelete='RESTRICT')
    order = fields.Many2One(
        'scenic.order', "Order", readonly=True, ondelete='RESTRICT')
    kind = fields.Selection(NOTICE_KINDS, "Kind", required=True,
        readonly=True)
    notice_id = fields.Char("Notice ID", required=True, readonly=True,
        help="Sent as X-Scenic-Notice-Id: the partner de-duplicates by it.")
    payload = fields.Text("Payload", required=True, readonly=True)
    state = fields.Selection([
            ('pending', "Pending"),
            ('delivered', "Delivered"),
            ('failed', "Failed"),
            ], "State", required=True, readonly=True, sort=False)
    attempts = fields.Integer("Attempts", required=True, readonly=True)
    next_attempt_at = fields.DateTime("Next Attempt At", readonly=True)
    last_error = fields.Char("Last Error", readonly=True)
    delivered_at = fields.DateTime("Delivered At", readonly=True)

    @classmethod
    def __setup__(cls):
        super().__setup__()
        t = cls.__table__()
        cls._sql_indexes.update({
                Index(t, (t.state, Index.Equality()),
                    (t.next_attempt_at, Index.Range()),
                    where=t.state == 'pending'),
                Index(t, (t.order, Index.Equality()),
                    where=t.state == 'pending'),
                Index(t, (t.notice_id, Index.Equality())),
                })
        cls._order = [('id', 'DESC')]
        cls._transitions |= {('failed', 'pending'), ('delivered', 'pending')}
        cls._buttons.update({
                'resend': {
                    'invisible': Eval('state') == 'pending',
                    'depends': ['state'],
                    },
                })

    @staticmethod
    def default_state():
        return 'pending'

    @staticmethod
    def default_attempts():
        return 0

    @classmethod
    @ModelView.button
    @Workflow.transition('pending')
    def resend(cls, notices):
        "Queue again, with the same notice id: the partner de-duplicates."
        cls.write(notices, {
                'attempts': 0, 'next_attempt_at': utcnow(),
                'last_error': None, 'delivered_at': None})

    @classmethod
    def deliver_cron(cls):
        "Cron: deliver the notices that are due."
        with Transaction().new_transaction() as transaction:
            deliver_pending()
            transaction.commit()


def enqueue(partner, order, kind, data, now=None):
    "Write a notice in the current transaction; return its notice id."
    from scenic_ticket.dbtools import insert as _insert
    now = now or utcnow()
    notice_id = str(uuid.uuid4())
    payload = {
        'notice_id': notice_id, 'kind': kind,
        'order': order.reference if order else None,
        'partner_order_id': order.partner_order_id if order else None,
        'at': now.replace(tzinfo=dt.timezone.utc).isoformat(),
        **data,
        }
    table = Pool().get('scenic.group.notice').__table__()
    _insert(table, [{
                'company': partner.company.id, 'partner': partner.id,
                'order': order.id if order else None, 'kind': kind,
                'notice_id': notice_id,
                'payload': json.dumps(payload, ensure_ascii=False,
                    separators=(',', ':'), sort_keys=True),
                'state': 'pending', 'attempts': 0,
                # DateTime columns keep whole seconds (PostgreSQL rounds):
                # never store a due time later than now.
                'next_attempt_at': now.replace(microsecond=0),
                }])
    return notice_id


def enqueue_used(ticket_ids, now=None):
    """Notices for tickets of partners' orders that were just admitted:
    one per ticket and admission batch, with the persons it admits."""
    pool = Pool()
    Ticket = pool.get('scenic.ticket')
    for ticket in Ticket.browse(sorted(set(ticket_ids))):
        order = ticket.order
        partner = order.group_partner
        if not partner or not partner.notice_url:
            continue
        enqueue(partner, order, 'ticket_used', {
                'ticket': ticket.id,
                'code': ticket.partner_code or None,
                'persons': ticket.persons,
                'used': ticket.persons,
                }, now=now)


def post(url, body, headers, timeout=TIMEOUT):
    "POST and return the HTTP status; raise OSError when unreachable."
    request = urllib.request.Request(url, data=body, method='POST',
        headers={'Content-Type': 'application/json', **headers})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            response.read()
            return response.status
    except urllib.error.HTTPError as error:
        return error.code


def sign_notice(partner, body, notice_id):
    url = urllib.parse.urlsplit(partner.notice_url)
    headers = partnersign.signed_headers(
        partner.key_id or '', partner.notice_secret or '', 'POST',
        url.path or '/', url.query, body)
    headers[NOTICE_ID_HEADER] = notice_id
    return headers


def deliver_pending(limit=200, now=None, send=post):
    """Deliver due notices (each of an order after its earlier ones);
    return (delivered, failed attempts).

    Rows are claimed FOR UPDATE SKIP LOCKED, so several deliverers share
    the work; the HTTP call runs while the row is locked but no booking or
    gate ever waits on a notice row.
    """
    pool = Pool()
    Notice = pool.get('scenic.group.notice')
    table = Notice.__table__()
    earlier = Notice.__table__()
    cursor = Transaction().connection.cursor()
    now = now or utcnow()
    # An earlier notice of the same order that is not delivered and not
    # due now holds the later ones back; due ones go first in this batch.
    blocked = Exists(earlier.select(earlier.id,
            where=(earlier.order == table.order)
            & (earlier.id < table.id)
            & (earlier.state != 'delivered')
            & ((earlier.state != 'pending')
                | (earlier.next_attempt_at > now))))
    query = table.select(table.id,
        where=(table.state == 'pending')
        & (table.next_attempt_at <= now)
        & ((table.order == Null) | ~blocked),
        order_by=[table.id.asc], limit=limit)
    cursor.execute(*lock(query, skip_locked=True))
    ids = [r[0] for r in cursor.fetchall()]
    delivered = failed = 0
    stalled = set()  # orders whose earlier notice failed in this batch
    for notice in Notice.browse(ids):
        if notice.order and notice.order.id in stalled:
            continue
        partner = notice.partner
        body = notice.payload.encode()
        error = None
        try:
            if not partner.notice_url:
                raise OSError("the partner has no notice URL")
            status = send(partner.notice_url, body,
                sign_notice(partner, body, notice.notice_id))
            if not 200 <= status < 300:
                error = f"HTTP {status}"
        except (OSError, ValueError) as exc:
            error = str(exc)[:200] or exc.__class__.__name__
        if error is None:
            cursor.execute(*table.update(
                    [table.state, table.delivered_at, table.attempts,
                        table.last_error],
                    ['delivered', now, table.attempts + 1, None],
                    where=table.id == notice.id))
            delivered += 1
        else:
            attempts = notice.attempts + 1
            state = 'failed' if attempts >= MAX_ATTEMPTS else 'pending'
            cursor.execute(*table.update(
                    [table.state, table.attempts, table.last_error,
                        table.next_attempt_at],
                    [state, attempts, error,
                        now + dt.timedelta(seconds=backoff(attempts))],
                    where=table.id == notice.id))
            failed += 1
            if notice.order:
                stalled.add(notice.order.id)
            logger.info("notice %s to partner %s: %s (attempt %s)",
                notice.notice_id, partner.id, error, attempts)
    forget(Notice.__name__)
    return delivered, failed


class Ticket(metaclass=PoolMeta):
    __name__ = 'scenic.ticket'

    @classmethod
    def __setup__(cls):
        super().__setup__()
        cls._state_hooks = cls._state_hooks | {'used'}

    @classmethod
    def on_state_change(cls, to_state, ids):
        "Tell partners when their tickets are used (hook of scenic_ticket)."
        super().on_state_change(to_state, ids)
        if to_state == 'used' and ids:
            enqueue_used(ids)


class Order(metaclass=PoolMeta):
    __name__ = 'scenic.order'

    @classmethod
    def on_state_change(cls, to_state, ids):
        """An unpaid partner hold that expired gives its places back to the
        partner's allotment (held for it again until the release time),
        as a cancelled one does (hook of scenic_ticket)."""
        super().on_state_change(to_state, ids)
        if to_state == 'expired' and ids:
            from .booking import give_back_allotments
            for order in cls.browse(ids):
                give_back_allotments(order, order.allotted_persons,
                    order.day_allotted_persons)

    @classmethod
    @ModelView.button
    def cancel(cls, orders):
        "Back office cancel: partners' allotments, accounts and notices follow."
        plain = [o for o in orders if not o.group_partner]
        if plain:
            super().cancel(plain)
        ids = [o.id for o in orders if o.group_partner]
        if not ids:
            return
        if backend.name != 'postgresql':
            cls._cancel_partner_orders(ids)
            return
        # Own transaction under READ COMMITTED, as scenic_ticket's Cancel
        # and the partner API's cancel: the release updates the slot's,
        # the day's and the allotment's counters that every partner order
        # of the day updates too, and under trytond's REPEATABLE READ a
        # click during a rush failed with a serialization error. Started
        # again with the lock giving back a deposit asks for (its move's
        # post number), which the dispatcher's retry would not give it.
        from scenic_ticket.dbtools import read_committed_transaction
        read_committed_transaction(
            lambda: cls._cancel_partner_orders(ids))

    @classmethod
    def _cancel_partner_orders(cls, ids):
        from . import booking
        for order in cls.browse(ids):
            partner = order.group_partner
            order = booking.cancel_and_record(partner, order.id,
                by_back_office=True)
            enqueue(partner, order, 'order_cancelled',
                {'state': order.state})

