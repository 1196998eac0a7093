#!/usr/bin/env python3
"""Booking request validation: the hand-written parser against validators
generated from the OpenAPI schemas (issue #8, item 6).

    python bench/booking_validation.py [--rounds N]

In this process, no database: each round validates the same valid booking
body (2 items, 4 real-name visitors, a contact) and a few invalid ones:

- ``hand``: ``scenic_ticket.api.parse_booking`` (checks and builds the
  ``BookingRequest`` the booking path takes), what the API runs today;
- ``schema``: ``openapi_schema_validator.OAS31Validator`` on the
  ``OrderIn`` schema of ``scenic_ticket.openapi`` (compiled once, refs
  resolved from the document), then ``parse_booking`` for the dataclasses
  and the checks the schema does not express (non-empty stripped names,
  the phone pattern, at most 50 visitors): what replacing the hand-written
  checks would cost at least, since the objects still have to be built;
- ``schema_only``: the schema validation alone, for the breakdown.

Prints ONE JSON line: CPU microseconds per validation (process time) for
each, the machine's load average and CPU count beside them.
"""
import argparse
import copy
import json
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / 'addons'))

from openapi_schema_validator import OAS31Validator  # noqa: E402

from scenic_ticket.api import parse_booking  # noqa: E402
from scenic_ticket.errors import ApiError  # noqa: E402
from scenic_ticket.openapi import openapi_document  # noqa: E402

BODY = {
    'slot': 42,
    'items': [
        {'ticket_type': 'ADULT', 'visitors': [
                {'name': "Li Na", 'id_number': '310104198503020072'},
                {'name': "Li Lei", 'id_number': '31010419830609005X'},
                ]},
        {'ticket_type': 'CHILD', 'visitors': [
                {'name': "Li Xiao", 'id_type': 'passport',
                    'id_number': 'E12345678'},
                {'name': "Li Ming", 'id_number': '310104201503020035'},
                ]},
        ],
    'contact': {'name': "Li Na", 'phone': '13800138000'},
    }


def invalid_bodies():
    no_items = copy.deepcopy(BODY)
    no_items['items'] = []
    bad_slot = copy.deepcopy(BODY)
    bad_slot['slot'] = 'x'
    bad_type = copy.deepcopy(BODY)
    bad_type['items'][1]['visitors'][0]['id_type'] = 'library_card'
    return [no_items, bad_slot, bad_type]


def validator():
    "OrderIn, its '#/components/...' references resolved in the document."
    document = openapi_document()
    schema = dict(document['components']['schemas']['OrderIn'],
        components=document['components'])
    return OAS31Validator(schema)


def per_call(func, rounds):
    start = time.process_time()
    for _ in range(rounds):
        func()
    return (time.process_time() - start) / rounds * 1e6


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--rounds', type=int, default=20000)
    args = parser.parse_args()
    check = validator()
    bad = invalid_bodies()

    # Both must agree on what is valid before their speed means anything.
    assert not list(check.iter_errors(BODY))
    parse_booking(BODY)
    for body in bad:
        assert list(check.iter_errors(body)), body
        try:
            parse_booking(body)
        except ApiError:
            pass
        else:
            raise AssertionError(body)

    def hand():
        parse_booking(BODY)

    def schema():
        if next(check.iter_errors(BODY), None) is None:
            parse_booking(BODY)

    def schema_only():
        next(check.iter_errors(BODY), None)

    def hand_invalid():
        for body in bad:
            try:
                parse_booking(body)
            except ApiError:
                pass

    def schema_invalid():
        for body in bad:
            next(check.iter_errors(body), None)

    results = {}
    for name, func in [('hand', hand), ('schema', schema),
            ('schema_only', schema_only), ('hand_invalid_x3', hand_invalid),
            ('schema_invalid_x3', schema_invalid)]:
        per_call(func, max(args.rounds // 20, 10))  # warm up
        results[f'{name}_us_cpu'] = round(per_call(func, args.rounds), 2)
    print(json.dumps({'bench': 'booking_validation', 'rounds': args.rounds,
                **results, 'loadavg_at_end': os.getloadavg(),
                'cpus': os.cpu_count()}))


if __name__ == '__main__':
    main()
