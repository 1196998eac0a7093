"""The key vault: one key from the configuration ([scenic] pii_key) from
which the keys that encrypt ID numbers, channel API keys and signing keys
are derived (one per purpose), and that keys the look-up hashes of ID
numbers and the gate boxes' peppers, unless [scenic] pii_lookup_key does.
No key derived here leaves the ERP: boxes get only per-area peppers
(scenic_gate.gatehash). Rotation: README "Keys and their rotation".
"""
from functools import lru_cache

from scenic_common.pii import DEMO_PII_KEY, PIIVault

from trytond import config
from trytond.i18n import gettext

from .exceptions import PIIConfigurationError


@lru_cache(maxsize=4)
def _vault(key, previous, lookup):
    return PIIVault(key, previous, lookup)


def is_demo():
    "Does the server configuration say it is a demo ([scenic] demo)?"
    return config.getboolean('scenic', 'demo', default=False)


def check_pii_configuration():
    """Refuse to run a configuration that is not visibly a demo with the
    demo's published key (README: "Keys and their rotation")."""
    keys = [config.get('scenic', 'pii_key', default=None),
        config.get('scenic', 'pii_lookup_key', default=None)]
    if DEMO_PII_KEY in keys and not is_demo():
        raise RuntimeError('[scenic] pii_key is the demo\'s published key: '
            'set a secret key of your own (README: "Keys and their '
            'rotation"), or "demo = True" in [scenic] for a demo.')


def pii_vault():
    """The vault for ID numbers, channel keys and private signing keys:
    [scenic] pii_key encrypts, with one derived sub-key per purpose;
    pii_key_previous (one per line) still decrypts during a rotation;
    pii_lookup_key, when set, keys the look-up hashes instead of pii_key
    (so that they survive a rotation)."""
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
    from sql import Null
    from trytond.pool import Pool
    from trytond.transaction import Transaction
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
