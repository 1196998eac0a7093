"""Orders of partners and groups: who booked them, on which contract and
allotment, and who leads the group."""
from trytond.model import Index, fields
from trytond.pool import PoolMeta


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
    leader_name = fields.Char("Leader or Guide", readonly=True)
    leader_phone = fields.Char("Leader's Phone", readonly=True)

    @classmethod
    def __setup__(cls):
        super().__setup__()
        t = cls.__table__()
        cls._sql_indexes.add(Index(t,
                (t.group_partner, Index.Equality()),
                (t.visit_date, Index.Range()),
                where=t.group_partner != None))  # noqa: E711


class Ticket(metaclass=PoolMeta):
    __name__ = 'scenic.ticket'
    partner_code = fields.Char(
        "Partner Code", readonly=True,
        help="The code the partner issued for this ticket, when its "
        "contract lets it issue codes.")

    @classmethod
    def __setup__(cls):
        super().__setup__()
        t = cls.__table__()
        cls._sql_indexes.add(Index(t, (t.partner_code, Index.Equality()),
                where=t.partner_code != None))  # noqa: E711
