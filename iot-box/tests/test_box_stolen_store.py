"""A box's store copied off the box does not give up ID numbers cheaply.

The thief gets ``box.sqlite`` whole. The cheap attack of the store before
gate hashes: take every key-like value in it and test candidate ID numbers
(10⁵ around a real holder's: same region, birth dates within ±50 days,
every sequence number) with HMAC-SHA256 under each and plain SHA-256,
looking for any hash the store holds. It must recover nobody, within a
time bound, while the holder's own ID card still opens at the gate
(one scrypt, the box's and the thief's price per candidate: PROTOCOL.md,
"Threat model").
"""
import base64
import datetime as dt
import hashlib
import hmac
import re
import sqlite3
import time

from box_fakes import (
    AREA, SLOT_END, SLOT_START, VAULT, full_answer, iso, sign)
from scenic_common import protocol
from scenic_common.idnumber import RESIDENT_ID, make_resident_id
from scenic_iotbox.validator import ScanRequest, Validator

REGION = '330106'
BIRTH = dt.date(1986, 3, 14)
HOLDER = make_resident_id(REGION, BIRTH, 417)
# the area's real parameters (N = 2**14), not the tests' cheap ones
GENERATIONS = protocol.generation_answer(VAULT.gate_secret(), AREA,
    [(1, protocol.GATE_LOG2_N)])
HEX = re.compile(r'[0-9a-fA-F]{16,}')


def candidates():
    for days in range(-50, 51):
        for sequence in range(1000):
            yield make_resident_id(REGION, BIRTH + dt.timedelta(days=days),
                sequence)


def store_contents(path):
    "Everything the thief reads: key-like blobs and hash-like strings."
    conn = sqlite3.connect(path)
    keys, hashes = set(), set()
    tables = [r[0] for r in conn.execute(
        "SELECT name FROM sqlite_master WHERE type = 'table'")]
    for table in tables:
        for row in conn.execute(f'SELECT * FROM "{table}"'):
            for value in row:
                if isinstance(value, bytes) and len(value) >= 16:
                    keys.add(bytes(value))
                elif isinstance(value, str):
                    for found in HEX.findall(value):
                        hashes.add(found.lower())
                        if len(found) % 2 == 0 and len(found) >= 32:
                            keys.add(bytes.fromhex(found))
                    for text in re.findall(r'[A-Za-z0-9+/]{40,}={0,2}',
                            value):
                        try:
                            keys.add(base64.b64decode(text))
                        except ValueError:
                            pass
    conn.close()
    return keys, hashes


def sweep(path):
    "The cheap attack: (ID numbers recovered, seconds, candidates tried)."
    keys, hashes = store_contents(path)
    keys = sorted(keys)
    started = time.monotonic()
    recovered = []
    tried = 0
    for number in candidates():
        tried += 1
        message = f'{RESIDENT_ID}:{number}'.encode()
        if hashlib.sha256(message).hexdigest() in hashes:
            recovered.append(number)
        for key in keys:
            if hmac.new(key, message, hashlib.sha256).hexdigest() in hashes:
                recovered.append(number)
    return recovered, time.monotonic() - started, tried


def test_the_sweep_finds_a_look_up_key_store(tmp_path):
    """The same attack on a store of before gate hashes (the look-up key
    and HMAC hashes) recovers the holder: the test can fail."""
    conn = sqlite3.connect(tmp_path / 'old.sqlite')
    conn.execute('CREATE TABLE credentials (lookup_key BLOB)')
    conn.execute('CREATE TABLE tickets (holder_hash TEXT)')
    conn.execute('INSERT INTO credentials VALUES (?)', (VAULT.lookup_key(),))
    conn.execute('INSERT INTO tickets VALUES (?)',
        (VAULT.lookup_hash(RESIDENT_ID, HOLDER),))
    conn.commit()
    conn.close()
    recovered, _, _ = sweep(tmp_path / 'old.sqlite')
    assert recovered == [HOLDER]


def test_copied_store_gives_up_no_id_number(store, tmp_path, clock):
    gate_hash = protocol.gate_hash(base64.b64decode(
            GENERATIONS[0]['pepper']), RESIDENT_ID, HOLDER)
    store.save_credentials(42, 'secret', AREA, GENERATIONS, clock())
    answer = full_answer()
    answer['gate_generations'] = GENERATIONS
    answer['tickets'] = [{'ticket': 9001, 'holder_hash': gate_hash,
        'code': sign(9001, holder=HOLDER), 'valid_from': iso(SLOT_START),
        'valid_until': iso(SLOT_END)}]
    store.apply_sync(answer, clock())
    validator = Validator(store, tmp_path, clock=clock)
    # the holder's ID card opens; a multi-entry ticket binds to it
    opened = validator.scan(ScanRequest('MAIN-IN', 1, 'id_card', HOLDER))
    assert (opened.decision.action, opened.decision.ticket) == (
        'open', 9001)
    bound = validator.scan(ScanRequest('MAIN-IN', 1, 'qr',
        sign(9002, type_id=8, entries=3), id_number=HOLDER))
    assert bound.decision.opened and bound.binding['ref'].startswith('id:g1:')
    store.close()

    keys, hashes = store_contents(tmp_path / 'box.sqlite')
    assert gate_hash in hashes          # the thief sees the hashes…
    # …and no key of the ERP: not the look-up key, not the gate secret
    assert VAULT.lookup_key() not in keys
    assert VAULT.gate_secret() not in keys
    assert VAULT.lookup_hash(RESIDENT_ID, HOLDER) not in hashes

    recovered, elapsed, tried = sweep(tmp_path / 'box.sqlite')
    assert tried == 101_000 and HOLDER in set(candidates())
    assert recovered == []
    assert elapsed < 600, elapsed
    # what it takes instead: the box's own derivation, per candidate
    cpu = time.process_time()
    assert protocol.gate_hash(base64.b64decode(GENERATIONS[0]['pepper']),
        RESIDENT_ID, HOLDER) == gate_hash
    assert time.process_time() - cpu > 0.005     # ≫ an HMAC's ~2 µs


def test_copied_store_gives_up_no_partner_code(store, tmp_path, clock):
    """Partner codes: the store holds their scrypt hashes only; the cheap
    sweep over 10⁵ codes around the real one (same prefix, every serial)
    recovers none, while the code still opens at the gate."""
    from scenic_common import partnercode
    code = 'MT-20260501-04217'
    pepper = base64.b64decode(GENERATIONS[0]['pepper'])
    code_hash = partnercode.code_hash(pepper, code)
    store.save_credentials(42, 'secret', AREA, GENERATIONS, clock())
    answer = full_answer()
    answer['gate_generations'] = GENERATIONS
    answer['partner_codes'] = [{'ticket': 9101, 'hash': code_hash,
        'ticket_type': 5, 'persons': 1, 'entries': 1,
        'valid_from': iso(SLOT_START), 'valid_until': iso(SLOT_END)}]
    store.apply_sync(answer, clock())
    validator = Validator(store, tmp_path, clock=clock)
    opened = validator.scan(ScanRequest('MAIN-IN', 1, 'qr', code))
    assert (opened.decision.action, opened.decision.ticket) == (
        'open', 9101)
    store.close()

    raw = (tmp_path / 'box.sqlite').read_bytes()
    assert code.encode() not in raw
    keys, hashes = store_contents(tmp_path / 'box.sqlite')
    assert code_hash in hashes and pepper in keys
    keys = sorted(keys)
    recovered = []
    for serial in range(100_000):
        guess = f'MT-20260501-{serial:05d}'.encode()
        for message in (guess, b'scenic-partner-code:v1:' + guess):
            if hashlib.sha256(message).hexdigest() in hashes:
                recovered.append(guess)
            for key in keys:
                if hmac.new(key, message, hashlib.sha256).hexdigest() \
                        in hashes:
                    recovered.append(guess)
    assert recovered == []
