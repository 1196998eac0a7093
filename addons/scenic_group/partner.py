"""Group customers and OTA partners: who they are, their contracts, their
net prices, their signing secrets and their allotments."""
import datetime as dt
import secrets as _secrets
from functools import lru_cache

from scenic_common import partnercode
from scenic_ticket.allotment import AllotmentMixin, QuotaMixin
from scenic_ticket.area import CompanyMixin
from scenic_ticket.dbtools import forget

from trytond.cache import Cache
from trytond.i18n import gettext
from trytond.model import (
    DeactivableMixin, Index, ModelSQL, ModelView, Unique, Workflow, fields)
from trytond.pool import Pool, PoolMeta
from trytond.pyson import Eval
from trytond.transaction import Transaction
from trytond.wizard import Button, StateView, Wizard

from .exceptions import AllotmentError, ContractError

PARTNER_KINDS = [
    ('agency', "Travel Agency"),
    ('company', "Company"),
    ('school', "School"),
    ('government', "Government Body"),
    ('ota', "OTA Platform"),
    ]
PAYMENT_TERMS = [
    ('prepaid', "Prepaid"),
    ('deposit', "Against Deposit"),
    ('credit', "On Credit"),
    ('monthly', "Monthly Settlement"),
    ]
DEFAULT_OVERLAP = dt.timedelta(hours=24)
CODE_CHARSETS = [
    ('digits', "Digits"),
    ('alnum', "Letters and Digits"),
    ('alnum_dash', "Letters, Digits, '-', '_' and '.'"),
    ]


def utcnow():
    "Naive UTC, as Tryton stores timestamps."
    return dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)


@lru_cache(maxsize=1024)
def _decrypt(token):
    # Secrets are decrypted on every signed request: keep the clear text of
    # the few live tokens in this process rather than pay AES each time.
    from scenic_ticket.vault import pii_vault
    return pii_vault().decrypt(token)


def _encrypt(secret):
    from scenic_ticket.vault import pii_vault
    return pii_vault().encrypt(secret)


class Partner(CompanyMixin, DeactivableMixin, ModelSQL, ModelView):
    "A party that buys on contract or sells through the partner API."
    __name__ = 'scenic.group.partner'
    party = fields.Many2One(
        'party.party', "Party", required=True, ondelete='RESTRICT',
        context={'company': Eval('company', -1)}, depends={'company'})
    kind = fields.Selection(PARTNER_KINDS, "Kind", required=True)
    channel = fields.Many2One(
        'scenic.channel', "Channel", required=True, ondelete='RESTRICT',
        domain=[('company', '=', Eval('company', -1))],
        help="The sales channel the partner's orders are booked on: its "
        "ticket types, hold time and counters apply.")
    contracts = fields.One2Many(
        'scenic.group.contract', 'partner', "Contracts")
    key_id = fields.Char(
        "Key ID", help="Sent by the partner as X-Scenic-Key.")
    secret_hint = fields.Char("Secret", readonly=True)
    secret_encrypted = fields.Char("Encrypted Secret", readonly=True)
    previous_secret_encrypted = fields.Char(
        "Encrypted Previous Secret", readonly=True)
    previous_secret_until = fields.DateTime(
        "Previous Secret Valid Until", readonly=True,
        help="After a rotation the previous secret is accepted until then.")
    notice_url = fields.Char(
        "Notice URL",
        help="Where notices (tickets used, refunds, cancellations) are "
        "posted.")
    notice_secret_encrypted = fields.Char(
        "Encrypted Notice Secret", readonly=True)
    _key_cache = Cache('scenic.group.partner.key_id', context=False)

    @classmethod
    def __setup__(cls):
        super().__setup__()
        t = cls.__table__()
        cls._sql_constraints += [
            ('key_id_unique', Unique(t, t.key_id),
                'scenic_group.msg_partner_key_id_unique'),
            ('channel_unique', Unique(t, t.channel),
                'scenic_group.msg_partner_channel_unique'),
            ]
        cls._buttons.update({
                'rotate_secret': {},
                })

    @staticmethod
    def default_kind():
        return 'agency'

    def get_rec_name(self, name):
        return self.party.rec_name if self.party else str(self.id)

    @classmethod
    def search_rec_name(cls, name, clause):
        return [('party.rec_name',) + tuple(clause[1:])]

    def set_secret(self, secret=None, overlap=DEFAULT_OVERLAP, now=None):
        """Give the partner a new signing secret and return it.

        The previous secret stays valid for `overlap` so the partner can
        switch without refused requests.
        """
        now = now or utcnow()
        secret = secret or _secrets.token_urlsafe(32)
        values = {
            'secret_hint': secret[:4] + '…',
            'secret_encrypted': _encrypt(secret),
            'previous_secret_encrypted': None,
            'previous_secret_until': None,
            }
        if self.secret_encrypted and overlap:
            values['previous_secret_encrypted'] = self.secret_encrypted
            values['previous_secret_until'] = now + overlap
        self.__class__.write([self], values)
        return secret

    def set_notice_secret(self, secret=None):
        secret = secret or _secrets.token_urlsafe(32)
        self.__class__.write([self], {
                'notice_secret_encrypted': _encrypt(secret)})
        return secret

    def signing_secrets(self, now=None):
        "The secrets a request may be signed with now, current first."
        now = now or utcnow()
        result = []
        if self.secret_encrypted:
            result.append(_decrypt(self.secret_encrypted))
        if (self.previous_secret_encrypted and self.previous_secret_until
                and now <= self.previous_secret_until):
            result.append(_decrypt(self.previous_secret_encrypted))
        return result

    @property
    def notice_secret(self):
        if self.notice_secret_encrypted:
            return _decrypt(self.notice_secret_encrypted)

    @classmethod
    def from_key_id(cls, key_id):
        "The active partner with this key id, or None."
        partner_id = cls._key_cache.get(key_id, -1)
        if partner_id == -1:
            partners = cls.search([
                    ('key_id', '=', key_id),
                    ('active', '=', True),
                    ], limit=1)
            partner_id = partners[0].id if partners else None
            cls._key_cache.set(key_id, partner_id)
        return cls(partner_id) if partner_id else None

    @classmethod
    def on_modification(cls, mode, records, field_names=None):
        super().on_modification(mode, records, field_names=field_names)
        cls._key_cache.clear()

    def contract_on(self, date):
        "The active contract covering a date, or None."
        for contract in self.contracts:
            if (contract.state == 'active'
                    and contract.start_date <= date
                    and (not contract.end_date or date <= contract.end_date)):
                return contract

    @classmethod
    @ModelView.button_action('scenic_group.wizard_rotate_secret')
    def rotate_secret(cls, partners):
        pass


class RotateSecretShow(ModelView):
    "New Partner Secret"
    __name__ = 'scenic.group.partner.rotate.show'
    partner = fields.Many2One(
        'scenic.group.partner', "Partner", readonly=True)
    secret = fields.Char(
        "Secret", readonly=True,
        help="Give this secret to the partner now: it is not shown again. "
        "The previous one is accepted for 24 hours.")


class RotateSecret(Wizard):
    "Rotate Partner Secret"
    __name__ = 'scenic.group.partner.rotate'
    start_state = 'show'
    show = StateView('scenic.group.partner.rotate.show',
        'scenic_group.partner_rotate_show_view_form', [
            Button("Close", 'end', 'tryton-close', default=True),
            ])

    def default_show(self, fields):
        return {
            'partner': self.record.id,
            'secret': self.record.set_secret(),
            }


class Contract(CompanyMixin, Workflow, ModelSQL, ModelView):
    "The terms a partner buys on."
    __name__ = 'scenic.group.contract'
    _states = {'readonly': Eval('state') != 'draft'}
    partner = fields.Many2One(
        'scenic.group.partner', "Partner", required=True,
        ondelete='CASCADE', states=_states,
        domain=[('company', '=', Eval('company', -1))])
    number = fields.Char("Number", required=True, states=_states)
    start_date = fields.Date("Start Date", required=True, states=_states)
    end_date = fields.Date("End Date", states=_states)
    state = fields.Selection([
            ('draft', "Draft"),
            ('active', "Active"),
            ('closed', "Closed"),
            ], "State", readonly=True, required=True, sort=False)
    payment_term = fields.Selection(
        PAYMENT_TERMS, "Payment Term", required=True, states=_states)
    credit_limit = fields.Numeric(
        "Credit Limit", digits=(16, 2), states={
            'readonly': Eval('state') != 'draft',
            'invisible': Eval('payment_term') != 'credit',
            'required': Eval('payment_term') == 'credit',
            })
    over_credit = fields.Selection([
            ('refuse', "Refuse"),
            ('warn', "Warn (a supervisor may override)"),
            ], "Over the Credit Limit", required=True, states=_states)
    prices = fields.One2Many(
        'scenic.group.contract.price', 'contract', "Net Prices",
        states=_states)
    release_hours = fields.Integer(
        "Release Allotment (hours before)", required=True,
        help="Unsold allotment goes back to the general pool this many "
        "hours before its time slot starts (a day quota: before its day "
        "starts).")
    amend_hours = fields.Integer(
        "Amend Until (hours before)", required=True,
        help="The number of persons may be changed until this many hours "
        "before the time slot starts.")
    free_sale = fields.Boolean(
        "Sell Beyond the Allotment",
        help="The partner may book from the general pool when it has no "
        "allotment left.")
    bill_admitted = fields.Boolean(
        "Bill Persons Admitted",
        help="Groups are billed for the persons admitted at the gate, not "
        "the persons booked.")
    ota_codes = fields.Boolean(
        "Partner Issues Codes",
        help="The partner sends its own code strings when it pays; the "
        "gates admit them.")
    code_charset = fields.Selection(CODE_CHARSETS, "Code Characters",
        states={'readonly': Eval('state') != 'draft',
            'invisible': ~Eval('ota_codes'),
            'required': Eval('ota_codes', False)},
        help="The characters the partner's codes may hold.")
    code_min_length = fields.Integer("Code Minimum Length",
        states={'readonly': Eval('state') != 'draft',
            'invisible': ~Eval('ota_codes'),
            'required': Eval('ota_codes', False)})
    code_max_length = fields.Integer("Code Maximum Length",
        states={'readonly': Eval('state') != 'draft',
            'invisible': ~Eval('ota_codes'),
            'required': Eval('ota_codes', False)})

    del _states

    @classmethod
    def __setup__(cls):
        super().__setup__()
        t = cls.__table__()
        cls._sql_constraints += [
            ('number_unique', Unique(t, t.company, t.number),
                'scenic_group.msg_contract_number_unique'),
            ]
        cls._transitions |= {
            ('draft', 'active'),
            ('active', 'closed'),
            ('active', 'draft'),
            }
        cls._buttons.update({
                'draft': {
                    'invisible': Eval('state') != 'active',
                    'depends': ['state'],
                    },
                'activate': {
                    'invisible': Eval('state') != 'draft',
                    'depends': ['state'],
                    },
                'close': {
                    'invisible': Eval('state') != 'active',
                    'depends': ['state'],
                    },
                })

    @staticmethod
    def default_state():
        return 'draft'

    @staticmethod
    def default_payment_term():
        return 'prepaid'

    @staticmethod
    def default_over_credit():
        return 'refuse'

    @staticmethod
    def default_release_hours():
        return 24

    @staticmethod
    def default_amend_hours():
        return 2

    @staticmethod
    def default_code_charset():
        return partnercode.CodeFormat.charset

    @staticmethod
    def default_code_min_length():
        return partnercode.CodeFormat.min_length

    @staticmethod
    def default_code_max_length():
        return partnercode.CodeFormat.max_length

    @property
    def code_format(self):
        "The rule of the partner's codes (scenic_common.partnercode)."
        return partnercode.CodeFormat(self.code_charset,
            self.code_min_length, self.code_max_length)

    def get_rec_name(self, name):
        return self.number

    @classmethod
    def validate_fields(cls, contracts, field_names):
        super().validate_fields(contracts, field_names)
        for contract in contracts:
            if contract.end_date and contract.end_date < contract.start_date:
                raise ContractError(gettext(
                        'scenic_group.msg_contract_dates',
                        contract=contract.rec_name))
            if (contract.release_hours or 0) < 0 or (
                    contract.amend_hours or 0) < 0:
                raise ContractError(gettext(
                        'scenic_group.msg_contract_hours',
                        contract=contract.rec_name))
            if (contract.payment_term == 'credit'
                    and (contract.credit_limit is None
                        or contract.credit_limit < 0)):
                raise ContractError(gettext(
                        'scenic_group.msg_contract_credit_limit',
                        contract=contract.rec_name))
            if contract.ota_codes:
                try:
                    contract.code_format
                except ValueError:
                    raise ContractError(gettext(
                            'scenic_group.msg_contract_code_format',
                            contract=contract.rec_name,
                            low=partnercode.MIN_LENGTH,
                            high=partnercode.MAX_LENGTH))

    @classmethod
    @ModelView.button
    @Workflow.transition('draft')
    def draft(cls, contracts):
        pass

    @classmethod
    @ModelView.button
    @Workflow.transition('active')
    def activate(cls, contracts):
        for contract in contracts:
            for other in contract.partner.contracts:
                if other == contract or other.state != 'active':
                    continue
                if (other.start_date <= (contract.end_date or dt.date.max)
                        and contract.start_date <= (
                            other.end_date or dt.date.max)):
                    raise ContractError(gettext(
                            'scenic_group.msg_contract_overlap',
                            contract=contract.rec_name,
                            other=other.rec_name))
        from .money import sync_credit_limit
        sync_credit_limit(contracts)

    @classmethod
    @ModelView.button
    @Workflow.transition('closed')
    def close(cls, contracts):
        pass

    def net_price(self, ticket_type_id, date):
        "The contract's net price of a ticket type on a date, or None."
        best = None
        for line in self.prices:
            if line.ticket_type.id != ticket_type_id:
                continue
            if line.date_from and date < line.date_from:
                continue
            if line.date_to and date > line.date_to:
                continue
            # A dated line (a season) is more specific than an open one.
            span = ((line.date_to or dt.date.max)
                - (line.date_from or dt.date.min))
            if best is None or span < best[0]:
                best = (span, line.price)
        return best[1] if best else None


class ContractPrice(ModelSQL, ModelView):
    "A net price of a ticket type for some dates."
    __name__ = 'scenic.group.contract.price'
    contract = fields.Many2One(
        'scenic.group.contract', "Contract", required=True,
        ondelete='CASCADE')
    ticket_type = fields.Many2One(
        'scenic.ticket.type', "Ticket Type", required=True,
        ondelete='RESTRICT')
    date_from = fields.Date("From")
    date_to = fields.Date("To")
    price = fields.Numeric("Net Price", digits=(16, 2), required=True)

    @classmethod
    def validate_fields(cls, lines, field_names):
        super().validate_fields(lines, field_names)
        for line in lines:
            if line.price < 0 or (line.date_from and line.date_to
                    and line.date_to < line.date_from):
                raise ContractError(gettext(
                        'scenic_group.msg_contract_price',
                        ticket_type=line.ticket_type.rec_name))


class Allotment(AllotmentMixin, CompanyMixin, ModelSQL, ModelView):
    """Places of a time slot held for a partner until the release time.

    The held places count as booked on the slot, so no other channel sells
    them; a partner's order converts held places into its own booking in
    one transaction (see booking.claim_allotment). At the release time the
    unsold places go back to the general pool.
    """
    __name__ = 'scenic.group.allotment'
    partner = fields.Many2One(
        'scenic.group.partner', "Partner", required=True,
        ondelete='RESTRICT', readonly=True,
        domain=[('company', '=', Eval('company', -1))])

    @classmethod
    def __setup__(cls):
        super().__setup__()
        t = cls.__table__()
        cls._sql_constraints += [
            ('slot_partner_unique', Unique(t, t.slot, t.partner),
                'scenic_group.msg_allotment_unique'),
            ]

    @classmethod
    def allot(cls, partner, slot, quota, release_at=None):
        """Hold `quota` places of a slot for a partner; return the allotment.

        Refused when the slot has fewer places left.
        """
        if quota < 1:
            raise AllotmentError(gettext('scenic_group.msg_allotment_quota'))
        if release_at is None:
            contract = partner.contract_on(slot.date)
            hours = contract.release_hours if contract else 24
            start = dt.datetime.combine(
                slot.date, slot.start_time,
                tzinfo=_tz(slot.company)).astimezone(dt.timezone.utc)
            release_at = (start - dt.timedelta(hours=hours)).replace(
                tzinfo=None)
        if not cls.hold_places(slot.id, quota):
            raise AllotmentError(gettext(
                    'scenic_group.msg_allotment_capacity',
                    slot=slot.rec_name, quota=quota))
        forget('scenic.time_slot')
        allotment, = cls.create([{
                    'company': slot.company.id, 'partner': partner.id,
                    'slot': slot.id, 'date': slot.date, 'quota': quota,
                    'release_at': release_at,
                    }])
        return allotment

    @classmethod
    def release_due(cls, now=None):
        """Give the unsold places of allotments past their release time back
        to the general pool; return how many allotments were released."""
        pool = Pool()
        table = cls.__table__()
        slot = pool.get('scenic.time_slot').__table__()
        cursor = Transaction().connection.cursor()
        now = now or utcnow()
        # Marking first takes each allotment's lock before its slot's, in
        # the order partner bookings take them.
        from trytond import backend
        query = table.update(
            [table.released], [True],
            where=(table.released == False)  # noqa: E712
            & (table.release_at <= now))
        if backend.name == 'postgresql':
            query.returning = [table.slot, table.quota - table.sold]
            cursor.execute(*query)
            rows = cursor.fetchall()
        else:
            cursor.execute(*table.select(table.id, table.slot,
                    table.quota - table.sold,
                    where=(table.released == False)  # noqa: E712
                    & (table.release_at <= now)))
            found = cursor.fetchall()
            if found:
                cursor.execute(*table.update([table.released], [True],
                        where=table.id.in_([r[0] for r in found])))
            rows = [r[1:] for r in found]
        for slot_id, unsold in sorted(rows):
            if unsold:
                cursor.execute(*slot.update(
                        [slot.booked], [slot.booked - unsold],
                        where=slot.id == slot_id))
        forget('scenic.time_slot')
        forget(cls.__name__)
        return len(rows)

    @classmethod
    def release_cron(cls):
        "Cron: release allotments and day quotas past their release time."
        from scenic_ticket.dbtools import use_read_committed
        DayAllotment = Pool().get('scenic.group.day_allotment')
        with Transaction().new_transaction() as transaction:
            use_read_committed()
            cls.release_due()
            DayAllotment.release_due()
            transaction.commit()


class DayAllotment(QuotaMixin, CompanyMixin, ModelSQL, ModelView):
    """A partner's quota of persons for a day, over all its time slots.

    Where the area has a daily maximum the quota is held on the day's
    counter (`holds_daily`): no other channel sells those places, and a
    partner's order converts held places into its own booking (see
    booking.claim_day_allotment). At the release time the unsold places go
    back to the general pool. Slot capacity is not held: a partner's order
    still needs places in its slot (or its slot allotment there).
    """
    __name__ = 'scenic.group.day_allotment'
    partner = fields.Many2One(
        'scenic.group.partner', "Partner", required=True,
        ondelete='RESTRICT', readonly=True,
        domain=[('company', '=', Eval('company', -1))])
    date = fields.Date("Date", required=True, readonly=True)
    holds_daily = fields.Boolean(
        "Held on the Daily Maximum", readonly=True,
        help="The quota's places are held on the area's daily maximum.")

    @classmethod
    def __setup__(cls):
        super().__setup__()
        t = cls.__table__()
        cls._sql_constraints += [
            ('date_partner_unique', Unique(t, t.date, t.partner),
                'scenic_group.msg_day_allotment_unique'),
            ]

    def get_rec_name(self, name):
        return f'{self.partner.rec_name} {self.date}'

    @classmethod
    def allot(cls, partner, date, quota, release_at=None):
        """Give a partner a quota of `quota` persons on a day; return it.

        Held on the area's daily maximum when it has one, refused when the
        day has fewer places left there.
        """
        from scenic_ticket.catalogue import Catalogue
        from scenic_ticket.reservation import claim_daily
        if quota < 1:
            raise AllotmentError(gettext('scenic_group.msg_allotment_quota'))
        company = partner.company
        if release_at is None:
            contract = partner.contract_on(date)
            hours = contract.release_hours if contract else 24
            start = dt.datetime.combine(date, dt.time(), tzinfo=_tz(company))
            release_at = (start - dt.timedelta(hours=hours)).astimezone(
                dt.timezone.utc).replace(tzinfo=None)
        daily_max = Catalogue(company.id).snapshot.daily_max
        if daily_max and not claim_daily(
                company.id, date, 'area', None, quota, daily_max):
            raise AllotmentError(gettext(
                    'scenic_group.msg_day_allotment_capacity',
                    date=date, quota=quota))
        allotment, = cls.create([{
                    'company': company.id, 'partner': partner.id,
                    'date': date, 'quota': quota,
                    'release_at': release_at,
                    'holds_daily': bool(daily_max),
                    }])
        return allotment

    @classmethod
    def release_due(cls, now=None):
        """Give the unsold held places of day quotas past their release time
        back to the day's counter; return how many quotas were released."""
        table = cls.__table__()
        from scenic_ticket.reservation import release_daily
        cursor = Transaction().connection.cursor()
        now = now or utcnow()
        due = ((table.released == False)  # noqa: E712
            & (table.release_at <= now))
        cursor.execute(*table.select(table.id, where=due,
                order_by=[table.id]))
        released = 0
        for allotment_id, in cursor.fetchall():
            # Marking takes the quota's lock before the day's counter, in
            # the order partner bookings take them; a concurrent release
            # finds it marked and leaves it.
            cursor.execute(*table.update([table.released], [True],
                    where=(table.id == allotment_id)
                    & (table.released == False)))  # noqa: E712
            if cursor.rowcount != 1:
                continue
            released += 1
            cursor.execute(*table.select(table.company, table.date,
                    table.quota - table.sold, table.holds_daily,
                    where=table.id == allotment_id))
            company, date, unsold, holds = cursor.fetchone()
            if holds and unsold:
                release_daily(company, date, 'area', unsold)
        forget(cls.__name__)
        return released


class Nonce(ModelSQL):
    "A nonce a partner signed a request with, kept for the time window."
    __name__ = 'scenic.group.nonce'
    partner = fields.Many2One(
        'scenic.group.partner', "Partner", required=True, ondelete='CASCADE')
    nonce = fields.Char("Nonce", required=True)
    seen_at = fields.DateTime("Seen At", required=True)

    @classmethod
    def __setup__(cls):
        super().__setup__()
        t = cls.__table__()
        cls._sql_constraints += [
            ('nonce_unique', Unique(t, t.partner, t.nonce),
                'scenic_group.msg_nonce_unique'),
            ]
        cls._sql_indexes.add(Index(t, (t.seen_at, Index.Range())))

    @classmethod
    def purge(cls, now=None, keep=dt.timedelta(seconds=900)):
        "Cron: forget nonces older than the time window (with margin)."
        table = cls.__table__()
        cursor = Transaction().connection.cursor()
        cursor.execute(*table.delete(
                where=table.seen_at < (now or utcnow()) - keep))


class Cron(metaclass=PoolMeta):
    __name__ = 'ir.cron'

    @classmethod
    def __setup__(cls):
        super().__setup__()
        cls.method.selection.extend([
                ('scenic.group.allotment|release_cron',
                    "Release Unsold Allotments"),
                ('scenic.group.nonce|purge', "Purge Partner API Nonces"),
                ('scenic.group.notice|deliver_cron',
                    "Deliver Partner Notices"),
                ('scenic.order|settle_arrivals_cron',
                    "Credit Partners for No-Shows"),
                ])


def _tz(company):
    from scenic_ticket.slot import area_timezone
    return area_timezone(company)

