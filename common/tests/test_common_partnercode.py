"""Partner-issued codes (scenic_common.partnercode): format rule, hash, and
the gate decision on them, which is the signed codes' decision."""
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from scenic_common import gate, ticketcode
from scenic_common.gate import (
    AccessRule, GateInfo, TicketTypeInfo, Usage, decide, usage_after)
from scenic_common.partnercode import (
    CodeFormat, PartnerTicket, code_hash, could_be_code, format_error,
    verification)

SHANGHAI = ZoneInfo('Asia/Shanghai')
START = datetime(2026, 5, 1, 9, 0, tzinfo=SHANGHAI)
END = datetime(2026, 5, 1, 11, 0, tzinfo=SHANGHAI)
DURING = START + timedelta(minutes=30)
ADULT = TicketTypeInfo(id=5, zones={1}, persons=1, entries=1, rule=3)
TWICE = TicketTypeInfo(id=8, zones={1}, persons=1, entries=2, rule=3)
GROUP = TicketTypeInfo(id=6, zones={1}, persons=12, entries=1, rule=3)
PASSBACK = AccessRule(id=3, anti_passback=True)
MAIN_IN = GateInfo(id=7, zone=1, direction='in', code='MAIN-IN')
PEPPER = bytes(range(32))


def ticket(type_=ADULT, **values):
    return PartnerTicket(ticket_id=values.pop('ticket_id', 41), area_id=1,
        ticket_type_id=type_.id, valid_from=START, valid_until=END,
        persons=type_.persons, entries=type_.entries, **values)


@pytest.mark.parametrize('code, rule, error', [
    ('MT12345678', CodeFormat('alnum', 8, 16), None),
    ('12345678', CodeFormat('digits', 8, 8), None),
    ('MT-1234_5.x', CodeFormat('alnum_dash', 8, 32), None),
    ('1234567', CodeFormat('digits', 8, 8), 'must be 8 to 8'),
    ('123456789', CodeFormat('digits', 8, 8), 'must be 8 to 8'),
    ('1234567A', CodeFormat('digits', 8, 8), 'digits characters'),
    ('MT-12345', CodeFormat('alnum', 8, 16), 'alnum characters'),
    ('MT 12345', CodeFormat('alnum_dash', 8, 16), 'alnum_dash'),
    ('码码码码码码码码', CodeFormat('alnum_dash', 8, 16), 'alnum_dash'),
    (12345678, CodeFormat('digits', 8, 8), 'not a string'),
    ])
def test_format_rule(code, rule, error):
    found = format_error(code, rule)
    if error is None:
        assert found is None
    else:
        assert error in found


@pytest.mark.parametrize('values', [
    {'charset': 'hex'}, {'min_length': 5}, {'max_length': 65},
    {'min_length': 20, 'max_length': 10}, {'min_length': True}])
def test_format_rule_bounds(values):
    with pytest.raises(ValueError):
        CodeFormat(**values)


def test_could_be_code():
    assert could_be_code('MT12345678')
    assert not could_be_code('12345')          # shorter than any rule
    assert not could_be_code('x' * 65)
    assert not could_be_code('SC1:abc def')    # a space: no rule allows it
    assert not could_be_code(None)


def test_hash_is_salted_and_slow_parameters():
    one = code_hash(PEPPER, 'MT12345678', log2_n=10)
    assert one == code_hash(PEPPER, 'MT12345678', log2_n=10)
    assert len(one) == 64
    assert one != code_hash(PEPPER, 'MT12345679', log2_n=10)
    assert one != code_hash(bytes(32), 'MT12345678', log2_n=10)
    assert one != code_hash(PEPPER, 'MT12345678', log2_n=11)
    with pytest.raises(ValueError):
        code_hash(b'short', 'MT12345678')
    with pytest.raises(ValueError):
        code_hash(PEPPER, 'MT12345678', log2_n=9)


def test_matched_code_admits_once_then_passback():
    "The same decision as a signed code: open, then passback"
    credential = verification(ticket(TWICE), area_id=1)
    first = decide(credential, TWICE, MAIN_IN, PASSBACK, None, None, 'in',
        DURING)
    assert first.opened and first.ticket == 41 and first.persons == 1
    used = usage_after(Usage(), first, DURING)
    second = decide(credential, TWICE, MAIN_IN, PASSBACK, used, None, 'in',
        DURING + timedelta(minutes=1))
    assert (second.action, second.reason) == ('deny', gate.PASSBACK)


def test_single_entry_code_spent():
    credential = verification(ticket())
    first = decide(credential, ADULT, MAIN_IN, None, None, None, 'in',
        DURING)
    used = usage_after(Usage(), first, DURING)
    again = decide(credential, ADULT, MAIN_IN, None, used, None, 'in',
        DURING + timedelta(minutes=1))
    assert again.reason == gate.ALREADY_USED


def test_group_code_opens_for_its_persons():
    decision = decide(verification(ticket(GROUP)), GROUP, MAIN_IN, None,
        None, None, 'in', DURING)
    assert decision.opened and decision.persons == 12


@pytest.mark.parametrize('now, reason', [
    (START - timedelta(minutes=1), gate.NOT_YET_VALID),
    (END, gate.EXPIRED),
    ])
def test_validity_window(now, reason):
    decision = decide(verification(ticket()), ADULT, MAIN_IN, None, None,
        None, 'in', now)
    assert decision.reason == reason


def test_revoked_and_wrong_area():
    assert decide(verification(ticket(), revoked={41}), ADULT, MAIN_IN,
        None, None, None, 'in', DURING).reason == gate.REVOKED
    assert decide(verification(ticket(), area_id=2), ADULT, MAIN_IN,
        None, None, None, 'in', DURING).reason == gate.WRONG_AREA


def test_unknown_type_refused():
    assert decide(verification(ticket()), None, MAIN_IN, None, None, None,
        'in', DURING).reason == gate.UNKNOWN_TICKET


def test_unmatched_string_keeps_the_codecs_reason():
    "A string that is neither signed nor a known code stays malformed"
    result = ticketcode.verify('MT12345678', ticketcode.Keyring(),
        now=DURING)
    assert result.reason == gate.MALFORMED
