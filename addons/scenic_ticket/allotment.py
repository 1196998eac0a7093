"""Places of a time slot held for one seller until a release time.

A partner (scenic_group) and a remote site (scenic_gate) both hold places
this way: the held places count as booked on the slot, claimed with the
slot's own conditional claim (`reservation._claim_slot`), so no other
channel sells them; the holder's sales count in `sold`, and at the release
time the unsold places (quota − sold) go back to the slot. The holder's
own sales are not checked against the slot's free places (they are held
for it): a partner's plan step passes `held` (reservation.plan_booking),
a site's sale is written with `held` (reservation.write_booking).
"""
from trytond.model import Index, fields
from trytond.pyson import Eval

from . import reservation


class QuotaMixin:
    """A quota of places held for one holder until a release time: what a
    slot's allotment and a partner's day quota (scenic_group) share."""
    __slots__ = ()
    date = fields.Date("Date", readonly=True)
    quota = fields.Integer("Quota", required=True, readonly=True)
    sold = fields.Integer("Sold", required=True, readonly=True)
    release_at = fields.DateTime("Release At", required=True, readonly=True)
    released = fields.Boolean("Released", readonly=True)
    remaining = fields.Function(fields.Integer("Remaining"), 'get_remaining')

    @classmethod
    def __setup__(cls):
        super().__setup__()
        t = cls.__table__()
        # the release cron looks for the unreleased ones past their time
        cls._sql_indexes.add(Index(t,
                (t.released, Index.Equality()),
                (t.release_at, Index.Range()),
                where=t.released == False))  # noqa: E712
        cls._order = [('date', 'DESC'), ('id', 'DESC')]

    @staticmethod
    def default_sold():
        return 0

    @staticmethod
    def default_released():
        return False

    def get_remaining(self, name):
        return 0 if self.released else self.quota - self.sold


class AllotmentMixin(QuotaMixin):
    "The fields and rules a slot's allotment shares; add its holder."
    __slots__ = ()
    slot = fields.Many2One(
        'scenic.time_slot', "Time Slot", required=True, ondelete='RESTRICT',
        readonly=True, domain=[('company', '=', Eval('company', -1))])

    @staticmethod
    def hold_places(slot_id, quota):
        "Claim quota places of the slot for an allotment; False if full."
        return reservation._claim_slot(slot_id, quota)
