"""Visitors and their identity documents: sensitive personal data (PIPL).

The ID number is validated, stored encrypted with a key from the
configuration, shown masked, and looked up through a keyed hash, so that
per-ID rules work without the number in clear anywhere in the database.
"""
from scenic_common import idnumber, protocol

from trytond.i18n import gettext
from trytond.model import Index, ModelSQL, ModelView, Unique, fields
from trytond.pool import Pool
from trytond.pyson import Bool, Eval
from trytond.transaction import Transaction

from .area import CompanyMixin
from .exceptions import IDNumberError
from .vault import pii_vault

ID_TYPES = [
    (idnumber.RESIDENT_ID, "Resident ID Card"),
    (idnumber.PASSPORT, "Passport"),
    (idnumber.HK_MACAU_PERMIT, "Hong Kong/Macau Permit"),
    (idnumber.TAIWAN_PERMIT, "Taiwan Permit"),
    ]


def protect_id(id_type, number, field_label="ID Number"):
    """Validate an ID number and return the values to store for it.

    Raises IDNumberError naming the field and the reason.
    """
    try:
        normalized = idnumber.validate(id_type, number)
    except idnumber.InvalidIDNumber as exc:
        raise IDNumberError(gettext(
                'scenic_ticket.msg_invalid_id_number',
                field=field_label,
                reason=gettext(f'scenic_ticket.msg_id_reason_{exc.code}')))
    vault = pii_vault()
    return {
        'id_encrypted': vault.encrypt(normalized),
        'id_masked': idnumber.mask(normalized),
        'id_hash': vault.lookup_hash(id_type, normalized),
        }


def id_hashes(number):
    "Look-up hashes of a number under every ID type it is valid for."
    return protocol.candidate_hashes(pii_vault().lookup_hash, number)


def may_read_personal_data():
    "Only users of the personal data group see ID numbers in full."
    transaction = Transaction()
    if transaction.user == 0:
        return True
    pool = Pool()
    User = pool.get('res.user')
    ModelData = pool.get('ir.model.data')
    group = ModelData.get_id('scenic_ticket', 'group_scenic_personal_data')
    return group in User.get_groups()


class Visitor(CompanyMixin, ModelSQL, ModelView):
    "A person admitted by real-name tickets."
    __name__ = 'scenic.visitor'
    name = fields.Char("Name", required=True)
    id_type = fields.Selection(
        ID_TYPES, "ID Type", required=True,
        states={'readonly': Bool(Eval('id_masked'))},
        help="To change the type, enter the number again.")
    id_number = fields.Function(
        fields.Char("ID Number", required=True,
            help="Stored encrypted; shown in full only to users allowed "
            "to see personal data."),
        'get_id_number', setter='set_id_number', searcher='search_id_number')
    id_masked = fields.Char("ID Number (Masked)", readonly=True)
    id_encrypted = fields.Char("Encrypted ID Number", readonly=True)
    id_hash = fields.Char(
        "ID Hash", readonly=True,
        help="Keyed hash of the ID for look-ups and per-ID limits.")

    @classmethod
    def __setup__(cls):
        super().__setup__()
        t = cls.__table__()
        cls._sql_constraints += [
            ('id_unique', Unique(t, t.company, t.id_hash),
                'scenic_ticket.msg_visitor_id_unique'),
            ]
        cls._sql_indexes.add(Index(t, (t.id_hash, Index.Equality())))
        cls._order.insert(0, ('name', 'ASC'))

    @staticmethod
    def default_id_type():
        return idnumber.RESIDENT_ID

    def get_rec_name(self, name):
        return f"{self.name} ({self.id_masked})"

    @classmethod
    def search_rec_name(cls, name, clause):
        _, operator, value = clause[:3]
        domain = ['OR', ('name', operator, value)]
        if operator == '=' and value:
            domain.append(('id_number', '=', value))
        return domain

    @classmethod
    def get_id_number(cls, visitors, name):
        if not may_read_personal_data():
            return {v.id: v.id_masked for v in visitors}
        vault = pii_vault()
        return {
            v.id: vault.decrypt(v.id_encrypted) if v.id_encrypted else None
            for v in visitors}

    @classmethod
    def search_id_number(cls, name, clause):
        _, operator, value = clause[:3]
        if operator not in {'=', 'in'}:
            # Encrypted numbers cannot be compared but for equality.
            return [('id', '=', -1)]
        values = [value] if operator == '=' else value
        hashes = [h for v in values if v for h in id_hashes(v)]
        return [('id_hash', 'in', hashes)]

    @classmethod
    def _protect_values(cls, values, id_type):
        values = values.copy()
        number = values.pop('id_number', None)
        if number is not None:
            label = cls.fields_get(['id_number'])['id_number']['string']
            values.update(protect_id(id_type, number, label))
        return values

    @classmethod
    def create(cls, vlist):
        protected = []
        for values in vlist:
            id_type = values.get('id_type') or cls.default_id_type()
            if not values.get('id_number'):
                label = cls.fields_get(['id_number'])['id_number']['string']
                raise IDNumberError(gettext(
                        'scenic_ticket.msg_invalid_id_number', field=label,
                        reason=gettext('scenic_ticket.msg_id_reason_empty')))
            protected.append(cls._protect_values(values, id_type))
        return super().create(protected)

    @classmethod
    def write(cls, *args):
        actions = iter(args)
        new_args = []
        for visitors, values in zip(actions, actions):
            if 'id_type' in values and 'id_number' not in values:
                raise IDNumberError(gettext(
                        'scenic_ticket.msg_id_type_without_number'))
            if 'id_number' in values:
                # The hash depends on the type: write per type.
                for visitor in visitors:
                    id_type = values.get('id_type', visitor.id_type)
                    new_args.extend((
                            [visitor], cls._protect_values(values, id_type)))
            else:
                new_args.extend((visitors, values))
        super().write(*new_args)

    @classmethod
    def set_id_number(cls, visitors, name, value):
        # create and write store the protected values before this is
        # reached; kept so that the field is writable from clients.
        for visitor in visitors:
            cls.write([visitor], {'id_number': value})
