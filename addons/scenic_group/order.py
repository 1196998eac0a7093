"""Orders of partners and groups: who booked them, on which contract and
allotment, and who leads the group."""

from trytond.model import Index, fields
from trytond.pool import Pool, PoolMeta


class Order(metaclass=PoolMeta):
    __name__ = 'scenic.order'
    group_partner = fields.Many2One(
        'scenic.group.partner', "Partner", readonly=True,
        ondelete='RESTRICT')
    group_contract = fields.Many2One(
        'scenic.group.contract', "Contract", readonly=True,
        ondelete='RESTRICT')
    partner_order_id = fields.Char("Partner Order ID", readonly=True)
    allotment = fields.Many2One(
        'scenic.group.allotment', "Allotment", readonly=True,
        ondelete='RESTRICT')
    allotted_persons = fields.Integer(
        "Persons from the Allotment", readonly=True)
    day_allotment = fields.Many2One(
        'scenic.group.day_allotment', "Day Quota", readonly=True,
        ondelete='RESTRICT')
    day_allotted_persons = fields.Integer(
        "Persons from the Day Quota", readonly=True)
    leader_name = fields.Char("Leader or Guide", readonly=True)
    leader_phone = fields.Char("Leader's Phone", readonly=True)
    arrival_settled = fields.Boolean("Arrivals Settled", readonly=True)

    @classmethod
    def __setup__(cls):
        super().__setup__()
        t = cls.__table__()
        cls._sql_indexes.add(Index(t,
                (t.group_partner, Index.Equality()),
                (t.visit_date, Index.Range()),
                where=t.group_partner != None))  # noqa: E711

    @classmethod
    def settle_arrivals(cls, date=None):
        """Credit partners for persons not admitted, where the contract
        bills the persons admitted: once per order, after its visit day."""
        pool = Pool()
        Entry = pool.get('scenic.group.entry')
        date = date or Pool().get('ir.date').today()
        orders = cls.search([
                ('group_partner', '!=', None),
                ('group_contract.bill_admitted', '=', True),
                ('visit_date', '<', date),
                ('arrival_settled', '!=', True),
                ('state', 'in', ['paid', 'partly_used', 'used']),
                ])
        for order in orders:
            prices = {l.id: l.unit_price for l in order.lines}
            unused = [t for t in order.tickets
                if t.state in ('valid', 'expired')]
            amount = sum((prices[t.line.id] for t in unused), 0)
            if amount:
                Entry.record(order.group_partner, 'no_show', -amount,
                    order=order, date=order.visit_date,
                    description=f"{order.reference}: "
                    f"{sum(t.persons for t in unused)} not admitted")
        if orders:
            cls.write(orders, {'arrival_settled': True})
        return len(orders)

    @classmethod
    def settle_arrivals_cron(cls):
        "Cron: credit partners for yesterday's no-shows."
        cls.settle_arrivals()

