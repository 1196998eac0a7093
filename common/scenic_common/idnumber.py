"""Identity documents accepted for real-name ticketing.

Chinese scenic areas sell real-name tickets: each ticket is bound to the
visitor's identity document, and the gate may check it.  Validation happens
here, once, so that the ERP, the web shop and the gate agree on what a valid
number is.  Error messages never contain the number itself, so they can be
logged safely.
"""

import re
from datetime import date

__all__ = [
    'RESIDENT_ID', 'PASSPORT', 'HK_MACAU_PERMIT', 'TAIWAN_PERMIT',
    'ID_TYPES', 'ID_TYPE_LABELS', 'InvalidIDNumber',
    'normalize', 'validate', 'birth_date', 'sex', 'age', 'mask',
    'resident_check_char', 'make_resident_id',
]

RESIDENT_ID = 'resident_id'          # 居民身份证 (GB 11643-1999)
PASSPORT = 'passport'                # 护照
HK_MACAU_PERMIT = 'hk_macau_permit'  # 港澳居民来往内地通行证
TAIWAN_PERMIT = 'taiwan_permit'      # 台湾居民来往大陆通行证

ID_TYPES = (RESIDENT_ID, PASSPORT, HK_MACAU_PERMIT, TAIWAN_PERMIT)
ID_TYPE_LABELS = {
    RESIDENT_ID: 'Resident ID card',
    PASSPORT: 'Passport',
    HK_MACAU_PERMIT: 'Mainland Travel Permit for Hong Kong and Macao Residents',
    TAIWAN_PERMIT: 'Mainland Travel Permit for Taiwan Residents',
}

_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
_CHECK_CHARS = '10X98765432'
_MIN_BIRTH = date(1900, 1, 1)

# Chinese input methods often produce full-width forms (１２３Ｘ); fold
# them to ASCII.  Other exotic digits are left alone and fail validation.
_FULLWIDTH = {cp: cp - 0xFEE0 for cp in range(0xFF01, 0xFF5F)}

_RESIDENT_RE = re.compile(r'[0-9]{17}[0-9X]')
_PASSPORT_RE = re.compile(r'[A-Z0-9]+')
_HK_MACAU_RE = re.compile(r'[HM](?:[0-9]{8}|[0-9]{10})')
_TAIWAN_RE = re.compile(r'(?:[0-9]{8}|[0-9]{10})')


class InvalidIDNumber(ValueError):
    """A rejected number; ``code`` is stable, ``message`` is for humans."""

    def __init__(self, code, message):
        super().__init__(message)
        self.code = code
        self.message = message

    def __repr__(self):
        return f'InvalidIDNumber({self.code!r}, {self.message!r})'


def normalize(id_type, number):
    """Canonical form, so that the same document always hashes the same."""
    if id_type not in ID_TYPES:
        raise InvalidIDNumber(
            'unknown_type', f'Unknown identity document type {id_type!r}.')
    if not isinstance(number, str):
        raise TypeError('the document number must be a string')
    number = number.translate(_FULLWIDTH)
    # str.split() also removes the ideographic space U+3000.
    return ''.join(number.split()).upper()


def validate(id_type, number, today=None):
    """Return the normalized number or raise ``InvalidIDNumber``."""
    if number is None:
        number = ''
    number = normalize(id_type, number)
    if not number:
        raise InvalidIDNumber('empty', 'The document number is empty.')
    if id_type == RESIDENT_ID:
        _validate_resident(number, today or date.today())
    elif id_type == PASSPORT:
        if not 5 <= len(number) <= 17:
            raise InvalidIDNumber(
                'length', 'A passport number has 5 to 17 characters.')
        if not _PASSPORT_RE.fullmatch(number):
            raise InvalidIDNumber(
                'format', 'A passport number contains only letters '
                'and digits.')
    elif id_type == HK_MACAU_PERMIT:
        if len(number) not in (9, 11):
            raise InvalidIDNumber(
                'length', 'A Hong Kong/Macao travel permit number has '
                '9 or 11 characters.')
        if not _HK_MACAU_RE.fullmatch(number):
            raise InvalidIDNumber(
                'format', 'A Hong Kong/Macao travel permit number is H or M '
                'followed by 8 or 10 digits.')
    elif id_type == TAIWAN_PERMIT:
        if len(number) not in (8, 10):
            raise InvalidIDNumber(
                'length', 'A Taiwan travel permit number has 8 or 10 '
                'digits.')
        if not _TAIWAN_RE.fullmatch(number):
            raise InvalidIDNumber(
                'format', 'A Taiwan travel permit number contains only '
                'digits.')
    return number


def _validate_resident(number, today):
    if len(number) != 18:
        if len(number) == 15:
            message = ('Only 18-character resident ID numbers are accepted; '
                '15-digit first-generation numbers are no longer valid.')
        else:
            message = ('Only 18-character resident ID numbers are accepted '
                f'(got {len(number)} characters).')
        raise InvalidIDNumber('length', message)
    if not _RESIDENT_RE.fullmatch(number):
        raise InvalidIDNumber(
            'format', 'A resident ID number is 17 digits followed by a '
            'digit or X.')
    if number[0] in '09':
        raise InvalidIDNumber(
            'area', 'The resident ID number has an invalid area code.')
    birth = _parse_birth(number)
    if birth is None:
        raise InvalidIDNumber(
            'birth_date', 'The birth date in the resident ID number is not '
            'a real date.')
    if birth < _MIN_BIRTH:
        raise InvalidIDNumber(
            'birth_date', 'The birth date in the resident ID number is '
            'before 1900.')
    if birth > today:
        raise InvalidIDNumber(
            'birth_date', 'The birth date in the resident ID number is in '
            'the future.')
    if resident_check_char(number[:17]) != number[17]:
        raise InvalidIDNumber(
            'checksum', 'The resident ID number check character is wrong; '
            'please check for a typo.')


def _parse_birth(number):
    try:
        return date(int(number[6:10]), int(number[10:12]),
            int(number[12:14]))
    except ValueError:
        return None


def resident_check_char(body):
    """Check character of GB 11643-1999 for the first 17 digits."""
    if len(body) != 17 or not body.isascii() or not body.isdigit():
        raise ValueError('expected 17 ASCII digits')
    total = sum(int(d) * w for d, w in zip(body, _WEIGHTS))
    return _CHECK_CHARS[total % 11]


def birth_date(number, today=None):
    """Birth date of a resident ID holder (e.g. for child/senior prices)."""
    return _parse_birth(validate(RESIDENT_ID, number, today=today))


def sex(number, today=None):
    """'male' or 'female': the 17th digit is odd for men."""
    number = validate(RESIDENT_ID, number, today=today)
    return 'male' if int(number[16]) % 2 else 'female'


def age(number, on=None):
    """Age in whole years on a day (default today): discounts depend on it."""
    on = on or date.today()
    born = birth_date(number, today=on)
    return on.year - born.year - ((on.month, on.day) < (born.month, born.day))


def mask(number):
    """Hide most of a number for display on screens, receipts and logs."""
    n = len(number)
    if n == 18:
        return number[:3] + '*' * 11 + number[-4:]
    if n <= 4:
        return '*' * n
    visible = n * 2 // 5                    # never more than 40 %
    head = min(2, visible // 2)             # odd budget: the end wins, as
    tail = min(2, visible - head)           # people quote the last digits
    return number[:head] + '*' * (n - head - tail) + number[n - tail:]


def make_resident_id(area='110101', birth=date(1990, 1, 1), sequence=123):
    """A valid resident ID number, for tests and demo data."""
    if not (len(area) == 6 and area.isascii() and area.isdigit()):
        raise ValueError('area must be 6 digits')
    if not 0 <= sequence <= 999:
        raise ValueError('sequence must be between 0 and 999')
    body = f'{area}{birth:%Y%m%d}{sequence:03d}'
    return body + resident_check_char(body)
