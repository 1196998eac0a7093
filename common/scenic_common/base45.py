"""Base45 (RFC 9285): binary data in the QR-code alphanumeric character set.

QR alphanumeric mode packs 2 characters into 11 bits, so Base45 text (3
characters per 2 bytes) makes a smaller symbol than Base64 in byte mode.
"""

__all__ = ['ALPHABET', 'encode', 'decode']

ALPHABET = '0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ $%*+-./:'
_VALUE = {c: i for i, c in enumerate(ALPHABET)}


def encode(data: bytes) -> str:
    out = []
    for i in range(0, len(data) - 1, 2):
        n = data[i] * 256 + data[i + 1]
        n, c = divmod(n, 45)
        e, d = divmod(n, 45)
        out += (ALPHABET[c], ALPHABET[d], ALPHABET[e])
    if len(data) % 2:
        d, c = divmod(data[-1], 45)
        out += (ALPHABET[c], ALPHABET[d])
    return ''.join(out)


def decode(text: str) -> bytes:
    """Strict: rejects foreign characters, lone characters and overflows,
    so each byte string has exactly one valid encoding."""
    try:
        values = [_VALUE[c] for c in text]
    except (KeyError, TypeError):
        raise ValueError('not a Base45 character') from None
    if len(values) % 3 == 1:
        raise ValueError('Base45 text has a dangling character')
    out = bytearray()
    for i in range(0, len(values), 3):
        group = values[i:i + 3]
        if len(group) == 3:
            n = group[0] + group[1] * 45 + group[2] * 45 * 45
            if n > 0xFFFF:
                raise ValueError('Base45 group out of range')
            out += bytes(divmod(n, 256))
        else:
            n = group[0] + group[1] * 45
            if n > 0xFF:
                raise ValueError('Base45 group out of range')
            out.append(n)
    return bytes(out)
