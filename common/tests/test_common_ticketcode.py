import pickle
from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest
import segno
from hypothesis import HealthCheck, given, settings, strategies as st

from scenic_common import base45, ticketcode
from scenic_common.pii import PIIVault
from scenic_common.ticketcode import (
    CodeError, Keyring, SigningKey, TicketPayload, encode, parse_unverified,
    verify)

SHANGHAI = ZoneInfo('Asia/Shanghai')
START = datetime(2025, 10, 1, 0, 0, tzinfo=SHANGHAI)
END = START + timedelta(days=1)
DURING = START + timedelta(hours=10)
HOLDER = PIIVault('m' * 40).short_hash('resident_id', '11010519491231002X')

KEY1 = SigningKey.generate(1)
KEY2 = SigningKey.generate(2)


def make_payload(**changes):
    values = dict(ticket_id=123456, area_id=3, ticket_type_id=17,
        valid_from=START, valid_until=END, persons=2, entries=1, key_id=1,
        holder_hash=HOLDER)
    values.update(changes)
    return TicketPayload(**values)


def keyring(*keys):
    ring = Keyring()
    for key in keys:
        ring.add(key.key_id, key.public_bytes())
    return ring


CODE = encode(make_payload(), KEY1)
RING = keyring(KEY1)


def binary(code):
    return base45.decode(code[len(ticketcode.PREFIX):])


def rebuild(data):
    return ticketcode.PREFIX + base45.encode(data)


def test_round_trip():
    result = verify(CODE, RING, now=DURING)
    assert result.ok, result.message
    assert result.reason == 'ok'
    assert result.payload == make_payload()
    assert result.payload.valid_from.utcoffset() == timedelta(0)
    assert parse_unverified(CODE) == make_payload()
    assert result.message


def test_round_trip_without_holder_and_large_values():
    payload = make_payload(ticket_id=2**63 - 1, area_id=2**40,
        ticket_type_id=1, persons=65535, entries=0, key_id=2,
        holder_hash=b'')
    code = encode(payload, KEY2)
    result = verify(code, keyring(KEY2), now=DURING)
    assert result.ok and result.payload == payload


def test_typical_code_length():
    assert len(CODE) <= 160, f'typical code is {len(CODE)} characters'
    assert CODE.startswith('SC1:')
    assert set(CODE[4:]) <= set(base45.ALPHABET)


def test_code_uses_qr_alphanumeric_mode():
    assert segno.make_qr(CODE, error='m').mode == 'alphanumeric'


def test_every_flipped_byte_is_rejected():
    data = binary(CODE)
    for i in range(len(data)):
        for mask in (0x01, 0x80, 0xFF):
            flipped = bytearray(data)
            flipped[i] ^= mask
            result = verify(rebuild(bytes(flipped)), RING, now=DURING)
            assert not result.ok, (i, mask)
            assert result.reason in ('malformed', 'unknown_key',
                'invalid_signature'), (i, mask, result.reason)


def test_wrong_key():
    # Same key id, different key: a forger who knows the id.
    forged = encode(make_payload(), SigningKey.generate(1))
    result = verify(forged, RING, now=DURING)
    assert (result.ok, result.reason) == (False, 'invalid_signature')
    assert result.payload is None


def test_key_unknown_to_keyring():
    code = encode(make_payload(key_id=9), SigningKey.generate(9))
    result = verify(code, RING, now=DURING)
    assert (result.ok, result.reason) == (False, 'unknown_key')
    assert result.payload is None


def test_retired_key():
    ring = keyring(KEY1)
    ring.retire(1)
    result = verify(CODE, ring, now=DURING)
    assert (result.ok, result.reason) == (False, 'retired_key')
    ring = Keyring()
    ring.add(1, KEY1.public_bytes(), retired=True)
    assert verify(CODE, ring, now=DURING).reason == 'retired_key'


def test_key_rotation():
    ring = keyring(KEY1, KEY2)
    new_code = encode(make_payload(key_id=2), KEY2)
    assert verify(CODE, ring, now=DURING).ok
    assert verify(new_code, ring, now=DURING).ok
    ring.retire(1)
    assert verify(CODE, ring, now=DURING).reason == 'retired_key'
    assert verify(new_code, ring, now=DURING).ok


def test_keyring_add_rules():
    ring = keyring(KEY1)
    ring.add(1, KEY1.public_bytes())            # idempotent re-sync
    with pytest.raises(ValueError):
        ring.add(1, KEY2.public_bytes())
    with pytest.raises(ValueError):
        ring.add(3, b'short')
    with pytest.raises(KeyError):
        ring.retire(42)
    assert list(ring) == [1] and 1 in ring and 2 not in ring


def test_signing_key_serialization():
    raw = KEY1.private_bytes()
    assert len(raw) == 32 and len(KEY1.public_bytes()) == 32
    restored = SigningKey.from_private_bytes(1, raw)
    assert restored.public_bytes() == KEY1.public_bytes()
    assert verify(encode(make_payload(), restored), RING, now=DURING).ok
    assert raw.hex() not in repr(KEY1)
    with pytest.raises(TypeError):
        pickle.dumps(KEY1)


def test_encode_refuses_mismatched_key_id():
    with pytest.raises(ValueError):
        encode(make_payload(key_id=2), KEY1)


def test_revoked():
    result = verify(CODE, RING, now=DURING, revoked=frozenset({123456}))
    assert (result.ok, result.reason) == (False, 'revoked')
    assert result.payload == make_payload()
    assert verify(CODE, RING, now=DURING, revoked={1, 2}).ok


def test_not_yet_valid():
    result = verify(CODE, RING, now=START - timedelta(seconds=1))
    assert (result.ok, result.reason) == (False, 'not_yet_valid')
    assert result.payload == make_payload()
    assert verify(CODE, RING, now=START).ok


def test_expired():
    result = verify(CODE, RING, now=END)
    assert (result.ok, result.reason) == (False, 'expired')
    assert result.payload == make_payload()
    assert verify(CODE, RING, now=END - timedelta(seconds=1)).ok


def test_wrong_area():
    result = verify(CODE, RING, now=DURING, area_id=4)
    assert (result.ok, result.reason) == (False, 'wrong_area')
    assert result.payload == make_payload()
    assert verify(CODE, RING, now=DURING, area_id=3).ok


def test_reason_order():
    # Wrong area, revoked and expired at once: the area is reported first.
    result = verify(CODE, RING, now=END, area_id=4, revoked={123456})
    assert result.reason == 'wrong_area'
    result = verify(CODE, RING, now=END, revoked={123456})
    assert result.reason == 'revoked'
    # A retired key is reported before anything about the ticket itself.
    ring = keyring(KEY1)
    ring.retire(1)
    assert verify(CODE, ring, now=END, area_id=4).reason == 'retired_key'


def test_truncated_codes():
    for end in range(len(CODE)):
        result = verify(CODE[:end], RING, now=DURING)
        assert not result.ok
        assert result.reason == 'malformed', (end, result.reason)
        assert result.payload is None


def test_trailing_bytes_and_bad_version():
    data = binary(CODE)
    assert verify(rebuild(data + b'\x00'), RING, now=DURING).reason == (
        'malformed')
    assert verify(rebuild(b'\x02' + data[1:]), RING, now=DURING).reason == (
        'malformed')


def test_scanner_line_ending_tolerated():
    assert verify(CODE + '\r\n', RING, now=DURING).ok


@pytest.mark.parametrize('code', [
    None, b'SC1:', CODE.encode(), 42, [], '', 'SC1:', 'SC2:' + CODE[4:],
    CODE.lower(), 'SC1:' + '0' * 600, CODE + 'A'])
def test_malformed_inputs(code):
    result = verify(code, RING, now=DURING)
    assert (result.ok, result.reason, result.payload) == (
        False, 'malformed', None)
    assert result.message


@pytest.mark.parametrize('changes', [
    dict(ticket_id=0), dict(area_id=0), dict(ticket_type_id=0),
    dict(persons=0), dict(persons=65536), dict(key_id=70000),
    dict(entries=-1), dict(holder_hash=b'1234'), dict(valid_until=START),
    dict(valid_from=datetime(2025, 1, 1)),
    dict(valid_from=START + timedelta(microseconds=5)),
    dict(ticket_id=True)])
def test_payload_rejects_bad_fields(changes):
    with pytest.raises(ValueError):
        make_payload(**changes)


def _signed(body, key=KEY1):
    return rebuild(body + key.sign(body))


def test_zero_ids_and_non_minimal_varints_are_malformed():
    # Correctly signed but structurally invalid: still malformed.
    good = binary(CODE)[:-64]
    assert verify(_signed(good), RING, now=DURING).ok
    zero_id = bytes([1, 0]) + good[4:]          # ticket_id 123456 is 3 bytes
    assert verify(_signed(zero_id), RING, now=DURING).reason == 'malformed'
    padded = bytes([1, 0xC0, 0xC4, 0x87, 0x00]) + good[4:]  # 4-byte 123456
    assert verify(_signed(padded), RING, now=DURING).reason == 'malformed'
    with pytest.raises(CodeError) as info:
        parse_unverified(_signed(padded))
    assert info.value.reason == 'malformed'


def test_naive_now_is_a_programming_error():
    with pytest.raises(ValueError):
        verify(CODE, RING, now=datetime(2025, 10, 1, 10))


def test_default_now_is_current_time():
    now = datetime.now(timezone.utc)
    payload = make_payload(valid_from=now.replace(microsecond=0)
        - timedelta(hours=1), valid_until=now.replace(microsecond=0)
        + timedelta(hours=1))
    assert verify(encode(payload, KEY1), RING).ok
    assert verify(CODE, RING).reason in ('expired', 'not_yet_valid')


def test_parse_unverified_errors():
    with pytest.raises(CodeError) as info:
        parse_unverified('hello')
    assert info.value.reason == 'malformed' and info.value.message


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.text(max_size=300),
    st.text(alphabet=base45.ALPHABET, max_size=300).map(lambda t: 'SC1:' + t)))
def test_random_text_never_raises_nor_passes(text):
    result = verify(text, RING, now=DURING)
    assert not result.ok
    try:
        parse_unverified(text)
    except CodeError:
        pass


@settings(max_examples=300, deadline=None,
    suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(st.binary(max_size=200),
    st.binary(min_size=1, max_size=120).map(lambda b: bytes([1]) + b)))
def test_random_bytes_never_raise_nor_pass(data):
    result = verify(rebuild(data), RING, now=DURING)
    assert not result.ok
    assert result.reason in ('malformed', 'unknown_key', 'invalid_signature')
    try:
        parse_unverified(rebuild(data))
    except CodeError:
        pass


def test_qr_svg_and_png():
    svg = ticketcode.qr_svg(CODE)
    assert svg.startswith(('<?xml', '<svg'))
    assert '</svg>' in svg
    png = ticketcode.qr_png_bytes(CODE)
    assert png.startswith(b'\x89PNG\r\n\x1a\n')
    qr = segno.make_qr(CODE, error='m')
    assert not qr.is_micro
