"""Keyed hashes of ID numbers, from the raw look-up key.

The box gets only the HMAC look-up key at enrolment (never the PII master
key), so it hashes with ``scenic_common.pii.keyed_mac`` directly, as
``PIIVault.lookup_hash`` does. A test checks that both agree.
"""

import functools

from scenic_common import protocol
from scenic_common.pii import keyed_mac

__all__ = ['lookup_hash', 'candidate_hashes']


def lookup_hash(lookup_key, id_type, number):
    """Same as ``PIIVault(master).lookup_hash(id_type, number)`` when
    ``lookup_key`` is that vault's look-up key."""
    if not isinstance(lookup_key, bytes) or len(lookup_key) < 16:
        raise ValueError('the look-up key must be raw bytes (32)')
    return keyed_mac(lookup_key, id_type, number).hex()


def candidate_hashes(lookup_key, number, id_type=None):
    """Look-up hashes of a read number (scenic_common.protocol's rule, with
    the box's key): under ``id_type`` when the reader knows it, else under
    every document type the number is valid for.  Invalid numbers give
    []."""
    return protocol.candidate_hashes(
        functools.partial(lookup_hash, lookup_key), number, id_type)
