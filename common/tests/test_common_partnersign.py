import hashlib
import hmac

import pytest

from scenic_common import partnersign as ps


def test_canonical_is_the_six_lines():
    body = b'{"a":1}'
    text = ps.canonical('post', '/demo/scenic/partner/v1/orders', '', 1700000000,
        'abcdefgh', body)
    assert text.decode().split('\n') == [
        'POST', '/demo/scenic/partner/v1/orders', '', '1700000000', 'abcdefgh',
        hashlib.sha256(body).hexdigest()]


def test_sign_matches_hmac_sha256_and_empty_body():
    expected = hmac.new(b'secret', '\n'.join([
                'GET', '/d/scenic/partner/v1/calendar', 'date=2026-12-24',
                '5', 'nonce-123',
                hashlib.sha256(b'').hexdigest()]).encode(),
        hashlib.sha256).hexdigest()
    assert ps.sign('secret', 'GET', '/d/scenic/partner/v1/calendar',
        'date=2026-12-24', 5, 'nonce-123', b'') == expected


def test_headers_round_trip_and_verify_with_rotation():
    headers = ps.signed_headers('k1', 'old', 'POST', '/p', body=b'x')
    key, ts, nonce, sig = ps.parse_headers(headers)
    assert key == 'k1' and ps.NONCE_RE.match(nonce)
    ps.check_timestamp(ts)
    assert ps.verify(['new', 'old'], 'POST', '/p', '', ts, nonce, b'x', sig)
    assert not ps.verify(['new'], 'POST', '/p', '', ts, nonce, b'x', sig)
    assert not ps.verify(['old'], 'POST', '/p', '', ts, nonce, b'y', sig)
    assert not ps.verify(['old'], 'POST', '/p', 'a=1', ts, nonce, b'x', sig)


@pytest.mark.parametrize('change', [
        {ps.NONCE_HEADER: 'short'},
        {ps.NONCE_HEADER: 'x' * 65},
        {ps.NONCE_HEADER: 'has space!'},
        {ps.TIMESTAMP_HEADER: '12.5'},
        {ps.SIGNATURE_HEADER: 'ABC'},
        {ps.KEY_HEADER: ''},
        ])
def test_malformed_headers_are_bad_signature(change):
    headers = ps.signed_headers('k1', 's', 'GET', '/p')
    headers.update(change)
    with pytest.raises(ps.SignatureError) as info:
        ps.parse_headers(headers)
    assert info.value.code == 'bad_signature'


def test_stale_either_side():
    ps.check_timestamp(1000, now=1300)
    for now in (1301, 699):
        with pytest.raises(ps.SignatureError) as info:
            ps.check_timestamp(1000, now=now)
        assert info.value.code == 'stale_request'
