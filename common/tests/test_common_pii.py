import base64
import pickle

import pytest

from scenic_common.idnumber import PASSPORT, RESIDENT_ID, make_resident_id
from scenic_common.pii import PIIError, PIIVault

KEY = 'k' * 16 + 'correct horse battery staple 42'
OTHER_KEY = 'another-master-key-that-is-long-enough!'
NUMBER = '11010519491231002X'


@pytest.fixture
def vault():
    return PIIVault(KEY)


def test_round_trip(vault):
    for text in [NUMBER, '', '张三', 'a' * 1000]:
        token = vault.encrypt(text)
        assert token.startswith('v2:')
        assert token.isascii()
        assert text not in token or text == ''
        assert vault.decrypt(token) == text


def test_same_plaintext_encrypts_differently(vault):
    assert vault.encrypt(NUMBER) != vault.encrypt(NUMBER)


def test_typical_token_fits_a_varchar(vault):
    assert len(vault.encrypt(NUMBER)) <= 80


def test_wrong_key_fails(vault):
    token = vault.encrypt(NUMBER)
    with pytest.raises(PIIError) as info:
        PIIVault(OTHER_KEY).decrypt(token)
    assert isinstance(info.value, ValueError)
    assert NUMBER not in str(info.value)
    assert KEY not in str(info.value)


def test_tampered_token_fails(vault):
    token = vault.encrypt(NUMBER)
    raw = bytearray(base64.urlsafe_b64decode(token[3:]))
    for i in range(len(raw)):
        flipped = bytearray(raw)
        flipped[i] ^= 0x01
        bad = 'v1:' + base64.urlsafe_b64encode(bytes(flipped)).decode()
        with pytest.raises(PIIError):
            vault.decrypt(bad)


@pytest.mark.parametrize('token', [
    None, b'v1:abc', '', 'v2:AAAA', 'v1:', 'v1:not base64!', 'v1:AAAA',
    'v1:' + 'A' * 5, 'v1:+/+/' + 'A' * 60])
def test_malformed_tokens(vault, token):
    with pytest.raises(PIIError):
        vault.decrypt(token)


def test_hash_stable_across_instances():
    a, b = PIIVault(KEY), PIIVault(KEY)
    h = a.lookup_hash(RESIDENT_ID, NUMBER)
    assert len(h) == 64 and int(h, 16) >= 0
    assert h == b.lookup_hash(RESIDENT_ID, NUMBER)
    # Normalization: same person, however the number was typed.
    assert h == b.lookup_hash(RESIDENT_ID, ' 110105 19491231002x')
    assert h != PIIVault(OTHER_KEY).lookup_hash(RESIDENT_ID, NUMBER)
    assert h != a.lookup_hash(RESIDENT_ID, make_resident_id())
    # The document type is part of the hash.
    assert (a.lookup_hash(PASSPORT, 'E12345678')
        != a.lookup_hash('hk_macau_permit', 'E12345678'))


def test_short_hash(vault):
    short = vault.short_hash(RESIDENT_ID, NUMBER)
    assert isinstance(short, bytes) and len(short) == 8
    assert short.hex() == vault.lookup_hash(RESIDENT_ID, NUMBER)[:16]
    assert len(vault.short_hash(RESIDENT_ID, NUMBER, size=4)) == 4
    with pytest.raises(ValueError):
        vault.short_hash(RESIDENT_ID, NUMBER, size=0)


def test_encryption_and_lookup_keys_are_independent(vault):
    # The look-up hash must not be a function of the plain master key alone
    # (e.g. HMAC keyed with the master key itself).
    import hashlib
    import hmac
    naive = hmac.new(KEY.encode(), f'{RESIDENT_ID}:{NUMBER}'.encode(),
        hashlib.sha256).hexdigest()
    assert vault.lookup_hash(RESIDENT_ID, NUMBER) != naive
    # Whoever holds the look-up key (e.g. a gate box) cannot decrypt.
    from cryptography.exceptions import InvalidTag
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM
    raw = base64.urlsafe_b64decode(vault.encrypt(NUMBER)[3:])
    with pytest.raises(InvalidTag):
        AESGCM(vault._lookup_key).decrypt(raw[:12], raw[12:], b'scenic-pii-v1')


def test_repr_has_no_secrets(vault):
    text = repr(vault) + str(vault)
    assert KEY not in text
    assert KEY[:8] not in text
    assert 'PIIVault' in repr(vault)
    with pytest.raises(TypeError):
        pickle.dumps(vault)


@pytest.mark.parametrize('key', [
    '', 'short', 'x' * 31, 'base64:' + base64.b64encode(b'x' * 31).decode(),
    'base64:not*base64', None])
def test_too_short_or_bad_key_refused(key):
    with pytest.raises(ValueError) as info:
        PIIVault(key)
    assert 'key' in str(info.value)


def test_base64_key_accepted():
    raw = bytes(range(32))
    vault = PIIVault('base64:' + base64.b64encode(raw).decode())
    assert vault.decrypt(vault.encrypt('x')) == 'x'
    assert PIIVault('x' * 32).decrypt(PIIVault('x' * 32).encrypt('y')) == 'y'


# --- purposes and rotation (issue 15 item 9) -------------------------------

def _v1_token(master, text):
    "A token as the vault wrote them before purposes (one shared key)."
    import os
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM
    from scenic_common.pii import _derive, _master_bytes
    aead = AESGCM(_derive(_master_bytes(master), b'scenic-pii encryption v1'))
    nonce = os.urandom(12)
    return 'v1:' + base64.urlsafe_b64encode(
        nonce + aead.encrypt(nonce, text.encode(), b'scenic-pii-v1')).decode()


def test_purposes_have_their_own_keys(vault):
    token = vault.encrypt('secret', purpose='signing')
    assert vault.decrypt(token, purpose='signing') == 'secret'
    for other in ('id', 'channel'):
        with pytest.raises(PIIError):
            vault.decrypt(token, purpose=other)
    with pytest.raises(ValueError):
        vault.encrypt('x', purpose='everything')


def test_rotation_keeps_old_values_readable_and_lookups_stable():
    old = PIIVault(KEY)
    id_token = old.encrypt(NUMBER)
    legacy = _v1_token(KEY, 'private-key')
    new = PIIVault(OTHER_KEY, previous=[KEY], lookup_master=KEY)
    assert new.decrypt(id_token) == NUMBER
    assert new.decrypt(legacy, purpose='signing') == 'private-key'
    assert not new.is_current(id_token) and not new.is_current(legacy)
    fresh = new.reencrypt(id_token)
    assert new.is_current(fresh) and new.reencrypt(fresh) == fresh
    # without the old key, only re-encrypted values remain readable
    alone = PIIVault(OTHER_KEY)
    assert alone.decrypt(fresh) == NUMBER
    with pytest.raises(PIIError):
        alone.decrypt(id_token)
    # the look-up hashes (per-ID rules, boxes) did not change
    assert new.lookup_hash(RESIDENT_ID, NUMBER) == old.lookup_hash(
        RESIDENT_ID, NUMBER)
    assert alone.lookup_hash(RESIDENT_ID, NUMBER) != old.lookup_hash(
        RESIDENT_ID, NUMBER)


def test_code_holder_hash_is_useless_with_the_box_key(vault):
    "A box's look-up key cannot test ID numbers against a code's holder hash"
    from scenic_common.pii import keyed_mac
    id_hash = vault.lookup_hash(RESIDENT_ID, NUMBER)
    in_code = vault.code_holder_hash(id_hash)
    assert len(in_code) == 8
    assert in_code == PIIVault(KEY).code_holder_hash(id_hash)     # stable
    # what a thief with the box's key computes for the right number
    box_key = vault.lookup_key()
    guess = keyed_mac(box_key, RESIDENT_ID, NUMBER)
    assert in_code != guess[:8]
    assert in_code != vault.short_hash(RESIDENT_ID, NUMBER)
