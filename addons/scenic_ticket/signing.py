"""Per-area Ed25519 keys that sign ticket codes, with rotation.

One key signs at a time; older keys keep verifying the codes they signed
until they are retired. Private keys are stored encrypted with the
personal-data key of the configuration.
"""
import base64

from scenic_common import ticketcode

from trytond.i18n import gettext
from trytond.model import ModelSQL, ModelView, Unique, fields
from trytond.pool import Pool
from trytond.pyson import Eval
from trytond.transaction import Transaction
from trytond.wizard import StateAction, StateTransition, Wizard

from .area import CompanyMixin
from .exceptions import SigningKeyError
from .vault import pii_vault

_signers = {}


class SigningKey(CompanyMixin, ModelSQL, ModelView):
    "Ticket Signing Key"
    __name__ = 'scenic.signing_key'
    key_id = fields.Integer("Key ID", required=True, readonly=True)
    state = fields.Selection([
            ('active', "Signing"),
            ('verify', "Verifying Only"),
            ('retired', "Retired"),
            ], "State", required=True, readonly=True,
        help="Codes signed by a retired key are refused at the gates.")
    public_key = fields.Char("Public Key", required=True, readonly=True)
    private_key_encrypted = fields.Char(
        "Encrypted Private Key", required=True, readonly=True)

    @classmethod
    def __setup__(cls):
        super().__setup__()
        t = cls.__table__()
        cls._sql_constraints += [
            ('key_unique', Unique(t, t.company, t.key_id),
                'scenic_ticket.msg_signing_key_unique'),
            ]
        cls._order = [('key_id', 'DESC'), ('id', 'DESC')]
        cls._buttons.update({
                'retire': {
                    'invisible': Eval('state') != 'verify',
                    'depends': ['state'],
                    },
                })

    def get_rec_name(self, name):
        return f"{self.company.rec_name} #{self.key_id}"

    @classmethod
    def generate(cls, company):
        "Make a new signing key; the previous one only verifies from now."
        current = cls.search([
                ('company', '=', company.id), ('state', '=', 'active')])
        if current:
            cls.write(current, {'state': 'verify'})
        last = cls.search([('company', '=', company.id)], limit=1)
        key_id = (last[0].key_id + 1) if last else 1
        signer = ticketcode.SigningKey.generate(key_id)
        key, = cls.create([{
                    'company': company.id, 'key_id': key_id,
                    'state': 'active',
                    'public_key': base64.b64encode(
                        signer.public_bytes()).decode(),
                    'private_key_encrypted': pii_vault().encrypt(
                        base64.b64encode(signer.private_bytes()).decode(),
                        purpose='signing'),
                    }])
        return key

    @classmethod
    @ModelView.button
    def retire(cls, keys):
        for key in keys:
            if key.state == 'active':
                raise SigningKeyError(gettext(
                        'scenic_ticket.msg_signing_key_retire_active',
                        key=key.rec_name))
        cls.write(keys, {'state': 'retired'})

    @classmethod
    def rotate(cls, companies):
        for company in companies:
            cls.generate(company)

    @classmethod
    def active_signer(cls, company):
        "The signing key of an area, made on first use."
        keys = cls.search([
                ('company', '=', company.id), ('state', '=', 'active')])
        key = keys[0] if keys else cls.generate(company)
        return signer_of(company.id, key.key_id, key.private_key_encrypted)

    @classmethod
    def keyring(cls, company):
        "The public keys gates use to verify this area's codes."
        keyring = ticketcode.Keyring()
        for key in cls.search([('company', '=', company.id)]):
            keyring.add(key.key_id, base64.b64decode(key.public_key),
                retired=key.state == 'retired')
        return keyring


class RotateKeys(Wizard):
    "Rotate Signing Keys"
    __name__ = 'scenic.signing_key.rotate'
    start_state = 'rotate'
    rotate = StateTransition()
    open_ = StateAction('scenic_ticket.act_signing_key')

    def transition_rotate(self):
        pool = Pool()
        Company = pool.get('company.company')
        SigningKey = pool.get('scenic.signing_key')
        company = Transaction().context.get('company')
        if company is None:
            raise SigningKeyError(gettext(
                    'scenic_ticket.msg_signing_key_no_company'))
        SigningKey.rotate([Company(company)])
        return 'open_'


def signer_of(company_id, key_id, private_key_encrypted):
    "The signer of a stored key, decrypted once per process."
    cache_key = (company_id, key_id, private_key_encrypted)
    signer = _signers.get(cache_key)
    if signer is None:
        private = base64.b64decode(
            pii_vault().decrypt(private_key_encrypted, purpose='signing'))
        signer = ticketcode.SigningKey.from_private_bytes(key_id, private)
        _signers[cache_key] = signer
    return signer
