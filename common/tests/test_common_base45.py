import pytest
from hypothesis import given, settings, strategies as st

from scenic_common import base45


@pytest.mark.parametrize('data, text', [
    (b'', ''),
    (b'AB', 'BB8'),
    (b'Hello!!', '%69 VD92EX0'),
    (b'base-45', 'UJCLQE7W581'),
    (b'ietf!', 'QED8WEX0'),
    (b'\xff\xff', 'FGW'),
    (b'\xff', 'U5'),
])
def test_rfc9285_vectors(data, text):
    assert base45.encode(data) == text
    assert base45.decode(text) == data


@pytest.mark.parametrize('text', ['GGW', 'V5', 'A', 'BB8A', 'bb8', 'BB8\n'])
def test_invalid_text_rejected(text):
    with pytest.raises(ValueError):
        base45.decode(text)


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=100))
def test_round_trip(data):
    text = base45.encode(data)
    assert set(text) <= set(base45.ALPHABET)
    assert base45.decode(text) == data
