"""Visitors and their identity documents: sensitive personal data (PIPL).

The ID number is validated, stored encrypted with a key from the
configuration, shown masked, and looked up through a keyed hash, so that
per-ID rules work without the number in clear anywhere in the database.
"""
from functools import lru_cache

from sql import Null

from scenic_common import idnumber
from scenic_common.pii import DEMO_PII_KEY, PIIVault

from trytond import config
from trytond.i18n import gettext
from trytond.model import Index, ModelSQL, ModelView, Unique, fields
from trytond.pool import Pool
from trytond.pyson import Bool, Eval
from trytond.transaction import Transaction

from .area import CompanyMixin
from .exceptions import IDNumberError, PIIConfigurationError

ID_TYPES = [
    (idnumber.RESIDENT_ID, "Resident ID Card"),
    (idnumber.PASSPORT, "Passport"),
    (idnumber.HK_MACAU_PERMIT, "Hong Kong/Macau Permit"),
    (idnumber.TAIWAN_PERMIT, "Taiwan Permit"),
    ]


@lru_cache(maxsize=4)
def _vault(key, previous, lookup):
    return PIIVault(key, previous, lookup)


def is_demo():
    "Does the server configuration say it is a demo ([scenic] demo)?"
    return config.getboolean('scenic', 'demo', default=False)


def check_pii_configuration():
    """Refuse to run a configuration that is not visibly a demo with the
    demo's published key (README: key rotation)."""
    keys = [config.get('scenic', 'pii_key', default=None),
        config.get('scenic', 'pii_lookup_key', default=None)]
    if DEMO_PII_KEY in keys and not is_demo():
        raise RuntimeError('[scenic] pii_key is the demo\'s published key: '
            'set a secret key of your own (README: "Keys and their '
            'rotation"), or "demo = True" in [scenic] for a demo.')


def pii_vault():
    """The vault for ID numbers, channel keys and private signing keys:
    [scenic] pii_key encrypts; pii_key_previous (one per line) still
    decrypts during a rotation; pii_lookup_key, when set, keys the look-up
    hashes instead of pii_key (so that they survive a rotation)."""
    key = config.get('scenic', 'pii_key', default=None)
    if not key:
        raise PIIConfigurationError(gettext(
                'scenic_ticket.msg_pii_key_missing'))
    check_pii_configuration()
    previous = tuple(k.strip() for k in config.get('scenic',
            'pii_key_previous', default='').replace(',', '\n').splitlines()
        if k.strip())
    lookup = config.get('scenic', 'pii_lookup_key', default=None) or None
    try:
        return _vault(key, previous, lookup)
    except ValueError:
        raise PIIConfigurationError(gettext(
                'scenic_ticket.msg_pii_key_invalid'))


# (model, column, vault purpose) of every value the vault encrypts
ENCRYPTED_COLUMNS = [
    ('scenic.visitor', 'id_encrypted', 'id'),
    ('scenic.channel', 'api_key_encrypted', 'channel'),
    ('scenic.signing_key', 'private_key_encrypted', 'signing'),
    ]


def reencrypt_all(batch=500):
    """Re-encrypt, in the current transaction, every value not under the
    current [scenic] pii_key (after a rotation, or a v1 value of before
    purpose keys): {model: count}. The look-up hashes do not change.
    Run by scripts/rekey_pii.py; a value no configured key decrypts stops
    it (PIIError) and nothing is written."""
    vault = pii_vault()
    cursor = Transaction().connection.cursor()
    counts = {}
    for model, column, purpose in ENCRYPTED_COLUMNS:
        table = Pool().get(model).__table__()
        col = getattr(table, column)
        cursor.execute(*table.select(table.id, col, where=col != Null,
                order_by=[table.id]))
        updates = [(id_, vault.reencrypt(value, purpose))
            for id_, value in cursor.fetchall()
            if not vault.is_current(value, purpose)]
        for i in range(0, len(updates), batch):
            for id_, value in updates[i:i + batch]:
                cursor.execute(*table.update([col], [value],
                        where=table.id == id_))
        counts[model] = len(updates)
    for cache in Transaction().cache.values():     # records read before
        cache.clear()
    return counts


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
    vault = pii_vault()
    hashes = []
    for id_type, _ in ID_TYPES:
        try:
            normalized = idnumber.validate(id_type, number)
        except idnumber.InvalidIDNumber:
            continue
        hashes.append(vault.lookup_hash(id_type, normalized))
    return hashes


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
