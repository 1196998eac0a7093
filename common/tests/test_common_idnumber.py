from datetime import date

import pytest

from scenic_common import idnumber
from scenic_common.idnumber import (
    HK_MACAU_PERMIT, PASSPORT, RESIDENT_ID, TAIWAN_PERMIT, InvalidIDNumber,
    make_resident_id, mask, normalize, validate)

TODAY = date(2025, 6, 1)


def code_of(id_type, number, today=TODAY):
    with pytest.raises(InvalidIDNumber) as info:
        validate(id_type, number, today=today)
    assert isinstance(info.value, ValueError)
    assert info.value.message and str(info.value) == info.value.message
    return info.value.code


def test_published_sample_is_valid():
    assert validate(RESIDENT_ID, '11010519491231002X') == '11010519491231002X'


@pytest.mark.parametrize('area, birth, sequence', [
    ('110101', date(1990, 1, 1), 123),
    ('440305', date(2000, 2, 29), 0),
    ('820000', date(1900, 1, 1), 999),
    ('310104', TODAY, 7),
])
def test_generated_numbers_are_valid(area, birth, sequence):
    number = make_resident_id(area, birth, sequence)
    assert len(number) == 18
    assert validate(RESIDENT_ID, number, today=TODAY) == number
    assert idnumber.birth_date(number, today=TODAY) == birth


def test_make_resident_id_defaults_and_check_char():
    number = make_resident_id()
    assert number[:17] == '11010119900101123'
    assert number[17] == idnumber.resident_check_char(number[:17])
    # Every other check character must be refused.
    for other in '0123456789X':
        if other != number[17]:
            assert code_of(RESIDENT_ID, number[:17] + other) == 'checksum'


def test_lowercase_x_and_spaces_are_normalized():
    assert validate(RESIDENT_ID, ' 110105 19491231 002x ') == (
        '11010519491231002X')
    assert normalize(RESIDENT_ID, '11010519491231002x') == (
        '11010519491231002X')
    # Full-width characters typed with a Chinese input method.
    assert validate(RESIDENT_ID, '１１０１０５１９４９１２３１００２ｘ') == (
        '11010519491231002X')


def test_sex_and_age():
    male = make_resident_id(sequence=123)
    female = make_resident_id(sequence=124)
    assert idnumber.sex(male) == 'male'
    assert idnumber.sex(female) == 'female'
    assert idnumber.sex('11010519491231002X') == 'female'
    number = make_resident_id(birth=date(1990, 6, 2))
    assert idnumber.age(number, on=date(2025, 6, 1)) == 34
    assert idnumber.age(number, on=date(2025, 6, 2)) == 35


def test_unknown_type():
    assert code_of('driving_licence', '123456') == 'unknown_type'
    with pytest.raises(InvalidIDNumber):
        normalize('driving_licence', '123456')


@pytest.mark.parametrize('id_type', idnumber.ID_TYPES)
@pytest.mark.parametrize('number', ['', '   ', None])
def test_empty(id_type, number):
    assert code_of(id_type, number) == 'empty'


def test_resident_length():
    assert code_of(RESIDENT_ID, '1101051949123100') == 'length'
    assert code_of(RESIDENT_ID, '11010519491231002X1') == 'length'


def test_first_generation_15_digit_refused():
    with pytest.raises(InvalidIDNumber) as info:
        validate(RESIDENT_ID, '110105491231002')
    assert info.value.code == 'length'
    assert '18' in info.value.message
    assert '15' in info.value.message


def test_resident_format():
    assert code_of(RESIDENT_ID, '1101051949123100XX') == 'format'
    assert code_of(RESIDENT_ID, '11010519491231A02X') == 'format'


@pytest.mark.parametrize('area', ['010101', '910101'])
def test_resident_area(area):
    assert code_of(RESIDENT_ID, make_resident_id(area=area)) == 'area'


def test_resident_birth_dates():
    future = make_resident_id(birth=date(2025, 6, 2))
    assert code_of(RESIDENT_ID, future) == 'birth_date'
    assert validate(RESIDENT_ID, future, today=date(2025, 6, 2)) == future
    old = make_resident_id(birth=date(1899, 12, 31))
    assert code_of(RESIDENT_ID, old) == 'birth_date'
    body = '110101' + '20000230' + '123'     # February 30th
    feb30 = body + idnumber.resident_check_char(body)
    assert code_of(RESIDENT_ID, feb30) == 'birth_date'
    body = '110101' + '19901301' + '123'     # month 13
    assert code_of(
        RESIDENT_ID, body + idnumber.resident_check_char(body)) == (
        'birth_date')


def test_passport():
    assert validate(PASSPORT, 'e1234 5678') == 'E12345678'
    assert validate(PASSPORT, 'AB123') == 'AB123'
    assert code_of(PASSPORT, 'AB12') == 'length'
    assert code_of(PASSPORT, 'A' * 18) == 'length'
    assert code_of(PASSPORT, 'E1234-678') == 'format'


def test_hk_macau_permit():
    assert validate(HK_MACAU_PERMIT, 'h12345678') == 'H12345678'
    assert validate(HK_MACAU_PERMIT, 'M1234567890') == 'M1234567890'
    assert code_of(HK_MACAU_PERMIT, 'H1234567') == 'length'
    assert code_of(HK_MACAU_PERMIT, 'H123456789') == 'length'
    assert code_of(HK_MACAU_PERMIT, 'A12345678') == 'format'
    assert code_of(HK_MACAU_PERMIT, 'H1234567X') == 'format'


def test_taiwan_permit():
    assert validate(TAIWAN_PERMIT, '12345678') == '12345678'
    assert validate(TAIWAN_PERMIT, '1234567890') == '1234567890'
    assert code_of(TAIWAN_PERMIT, '123456789') == 'length'
    assert code_of(TAIWAN_PERMIT, 'T1234567') == 'format'


def test_error_message_does_not_leak_number():
    number = make_resident_id(area='910101')
    with pytest.raises(InvalidIDNumber) as info:
        validate(RESIDENT_ID, number)
    assert number not in str(info.value)
    assert number not in repr(info.value)


def test_mask_resident_id():
    assert mask('110105194912311234') == '110***********1234'
    assert mask('11010519491231002X') == '110***********002X'


@pytest.mark.parametrize('number', [
    'E12345678', 'H1234567890', '12345678', 'AB123', 'ABCDEF',
    'ABCDEFGHIJKLMNOPQ', 'A' * 40])
def test_mask_other_lengths(number):
    masked = mask(number)
    assert len(masked) == len(number)
    shown = [c for c in masked if c != '*']
    assert len(shown) <= len(number) * 0.4
    # Visible characters are a prefix and a suffix of the original.
    prefix = masked.split('*', 1)[0]
    suffix = masked.rsplit('*', 1)[1]
    assert number.startswith(prefix) and len(prefix) <= 2
    assert number.endswith(suffix) and len(suffix) <= 2
    assert len(prefix) + len(suffix) == len(shown)


def test_mask_examples():
    assert mask('E12345678') == 'E******78'
    assert mask('H1234567890') == 'H1*******90'
    assert mask('ABCDEF') == 'A****F'
    assert mask('AB123') == 'A***3'


@pytest.mark.parametrize('number', ['', 'A', 'AB', 'ABC', 'ABCD'])
def test_mask_short_inputs_fully_masked(number):
    assert mask(number) == '*' * len(number)
