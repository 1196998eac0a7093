"""The key vault: one key from the configuration ([scenic] pii_key) that
encrypts ID numbers, channel API keys and signing keys, and keys the
look-up hashes of ID numbers (boxes get that hashing key, which cannot
decrypt anything).
"""
import base64
from functools import lru_cache

from scenic_common.pii import PIIVault

from trytond import config
from trytond.i18n import gettext

from .exceptions import PIIConfigurationError


@lru_cache(maxsize=4)
def _vault(key):
    return PIIVault(key)


def pii_vault():
    "The vault keyed by [scenic] pii_key."
    key = config.get('scenic', 'pii_key', default=None)
    if not key:
        raise PIIConfigurationError(gettext(
                'scenic_ticket.msg_pii_key_missing'))
    try:
        return _vault(key)
    except ValueError:
        raise PIIConfigurationError(gettext(
                'scenic_ticket.msg_pii_key_invalid'))


def lookup_key():
    """The 32-byte key of the look-up hashes: boxes match ID cards to
    real-name tickets with it; it cannot decrypt."""
    return pii_vault().lookup_key()


def lookup_key_b64():
    return base64.b64encode(lookup_key()).decode()
