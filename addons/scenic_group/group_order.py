"""Group orders in the back office: a partner's group with its leader, its
visitor list imported from CSV or XLSX, booked through the same path as
the partner API and confirmed on the partner's account."""
import secrets

from scenic_ticket.reservation import BookingError, BookingRequest, Item
from scenic_ticket.reservation import Visitor as VisitorIn

from trytond.i18n import gettext
from trytond.model import ModelView, fields
from trytond.pool import Pool
from trytond.pyson import Eval
from trytond.transaction import Transaction
from trytond.wizard import Button, StateTransition, StateView, Wizard

from . import visitors as visitor_file
from .exceptions import GroupOrderError, ImportError_


def read_visitors(slot, ttype, filename, data):
    """The rows of a visitor file for a slot, or ImportError_ listing every
    bad row (nothing is saved)."""
    try:
        rows, errors = visitor_file.parse(filename, bytes(data))
    except visitor_file.UnreadableFile as exc:
        raise ImportError_(gettext(
                'scenic_group.msg_import_unreadable', reason=str(exc)))
    errors += visitor_file.check_booked(
        slot.company.id, slot.date, ttype, rows)
    if errors:
        raise ImportError_(gettext('scenic_group.msg_import_errors',
                errors='\n'.join(str(e) for e in sorted(
                        errors, key=lambda e: e.number))))
    return rows


class GroupOrderStart(ModelView):
    "New Group Order"
    __name__ = 'scenic.group.order.start'
    partner = fields.Many2One(
        'scenic.group.partner', "Partner", required=True)
    slot = fields.Many2One(
        'scenic.time_slot', "Time Slot", required=True,
        domain=[('company', '=', Eval('company', -1))])
    company = fields.Many2One('company.company', "Company", readonly=True)
    ticket_type = fields.Many2One(
        'scenic.ticket.type', "Ticket Type", required=True,
        domain=[('company', '=', Eval('company', -1))])
    persons = fields.Integer(
        "Persons", help="For group tickets that are not real-name.")
    leader_name = fields.Char("Leader or Guide", required=True)
    leader_phone = fields.Char("Leader's Phone", required=True)
    visitor_file = fields.Binary(
        "Visitor List", filename='visitor_file_name',
        help="CSV or XLSX: name, ID number and (optionally) ID type; a "
        "header row is recognised in English or Chinese.")
    visitor_file_name = fields.Char("File Name")
    checked = fields.Text("Check", readonly=True)

    @staticmethod
    def default_company():
        return Transaction().context.get('company')


class GroupOrderCreate(Wizard):
    "New Group Order"
    __name__ = 'scenic.group.order.create'
    start = StateView('scenic.group.order.start',
        'scenic_group.group_order_start_view_form', [
            Button("Cancel", 'end', 'tryton-cancel'),
            Button("Check", 'check', 'tryton-search'),
            Button("Book and Confirm", 'book', 'tryton-ok', default=True),
            ])
    check = StateTransition()
    book = StateTransition()

    def default_start(self, fields):
        if getattr(self.start, 'partner', None):
            return self.start._default_values
        return {'company': Transaction().context.get('company')}

    def _plan(self):
        "The booking request, or GroupOrderError listing every bad row."
        start = self.start
        ttype = start.ticket_type
        items = []
        if ttype.real_name:
            if not start.visitor_file:
                raise GroupOrderError(gettext(
                        'scenic_group.msg_group_needs_visitors',
                        ticket_type=ttype.rec_name))
            rows = read_visitors(start.slot, ttype,
                start.visitor_file_name, start.visitor_file)
            items.append(Item(ticket_type=ttype.code, field='items[0]',
                    visitors=[VisitorIn(r.name, r.id_type, r.id_number,
                            f'row {r.number}') for r in rows]))
            count = len(rows)
        else:
            if not start.persons or start.persons < 1:
                raise GroupOrderError(gettext(
                        'scenic_group.msg_group_needs_persons'))
            items.append(Item(ticket_type=ttype.code, field='items[0]',
                    persons=start.persons))
            count = start.persons
        request = BookingRequest(slot=start.slot.id, items=items,
            contact_name=start.leader_name,
            contact_phone=start.leader_phone.replace(' ', ''))
        return request, count

    def transition_check(self):
        _, count = self._plan()
        self.start.checked = gettext(
            'scenic_group.msg_group_checked', count=count)
        return 'start'

    def transition_book(self):
        from . import booking
        from .money import record_charge
        request, _ = self._plan()
        partner = self.start.partner
        poid = f'BO-{secrets.token_hex(6).upper()}'
        try:
            order_id, _ = booking.book(partner, request, poid, leader={
                    'name': self.start.leader_name,
                    'phone': self.start.leader_phone})
            order = Pool().get('scenic.order')(order_id)
            order = booking.pay(partner, order, order.total)
        except BookingError as error:
            raise GroupOrderError(gettext(
                    'scenic_group.msg_group_refused',
                    code=error.code, message=error.message))
        record_charge(partner, order)
        self.start.checked = None
        return 'end'

