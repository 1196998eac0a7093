"""RFID: UID over PC/SC (fakes), debouncing, and pcscd + vpcd for real."""
import glob
import os
import shutil
import socket
import subprocess

import pytest

from drivers_helpers import wait_for
from scenic_iotbox.drivers.rfid import (CardPoller, GET_UID, PcscCardReader,
    RfidReader, uid_from_response)
from scenic_iotbox.drivers.rfid_vcard import VirtualCard, contactless_atr


class NoCardException(Exception):
    """Named like pyscard's, for the fakes."""


class FakeConnection:
    def __init__(self, reader):
        self.reader = reader

    def connect(self, disposition=None):
        assert disposition == 0             # SCARD_LEAVE_CARD
        if self.reader.card is None:
            raise NoCardException('no card')
        if isinstance(self.reader.card, Exception):
            raise self.reader.card

    def transmit(self, apdu):
        self.reader.apdus.append(apdu)
        answer = self.reader.answers.pop(0) if self.reader.answers else \
            (list(self.reader.card), 0x90, 0x00)
        if isinstance(answer, Exception):
            raise answer
        return answer

    def disconnect(self):
        self.reader.disconnects += 1


class FakeReader:
    def __init__(self, name='ACS ACR122U PICC Interface 00 00', card=None):
        self.name = name
        self.card = card
        self.answers = []
        self.apdus = []
        self.disconnects = 0

    def createConnection(self):
        return FakeConnection(self)

    def __str__(self):
        return self.name


def make_reader(*readers, name=None):
    return PcscCardReader(name, readers=lambda: list(readers))


def test_uid_from_response():
    assert uid_from_response([0x04, 0xA1, 0xB2, 0xC3], 0x90, 0x00) == \
        '04A1B2C3'
    assert uid_from_response([0x04, 0xA1], 0x63, 0x00) is None
    assert uid_from_response([], 0x6A, 0x81) is None
    assert uid_from_response([], 0x90, 0x00) is None
    assert uid_from_response([1] * 17, 0x90, 0x00) is None


def test_reads_uid_with_get_data_apdu():
    fake = FakeReader(card=bytes.fromhex('04a1b2c3d4e5f6'))
    reader = make_reader(fake)
    assert reader.read_uid() == '04A1B2C3D4E5F6'
    assert fake.apdus == [GET_UID] and fake.disconnects == 1


def test_no_card_and_bad_answers():
    fake = FakeReader()
    reader = make_reader(fake)
    assert reader.read_uid() is None                  # no card: no error
    assert reader.errors == 0
    fake.card = b'\x01\x02\x03\x04'
    fake.answers = [([], 0x63, 0x00)]
    assert reader.read_uid() is None
    fake.answers = [([], 0x6C, 0x04), ([1, 2, 3, 4], 0x90, 0x00)]
    assert reader.read_uid() == '01020304'           # resent with Le=4
    assert fake.apdus[-1] == [0xFF, 0xCA, 0x00, 0x00, 0x04]
    fake.answers = [OSError('card left mid-read')]
    assert reader.read_uid() is None
    fake.card = RuntimeError('unresponsive card')
    assert reader.read_uid() is None
    assert reader.counters.snapshot()['bad_answers'] == 1
    assert reader.counters['read_interrupted'] == 1     # not an error
    assert reader.counters['card_errors'] == 1
    assert reader.ok is True


def test_reader_selection_and_reader_errors():
    other = FakeReader('Some Contact Reader 00 00', card=b'\x99')
    wanted = FakeReader(card=b'\x04\x05\x06\x07')
    assert make_reader(other, wanted, name='acr122').read_uid() == '04050607'
    assert make_reader(other, wanted).read_uid() == '99'
    missing = make_reader(other, name='omnikey')
    assert missing.read_uid() is None and missing.ok is False

    def broken():
        raise RuntimeError('pcscd is not running')
    reader = PcscCardReader(readers=broken)
    assert reader.read_uid() is None
    assert reader.status()['ok'] is False and reader.errors == 1


class ScriptedReader:
    """read_uid() answers from a script."""

    def __init__(self, script):
        self.script = list(script)
        self.name = 'scripted'

    def read_uid(self):
        return self.script.pop(0) if self.script else None


def test_poller_debounces_flicker_and_reports_new_cards():
    script = ['AA', 'AA', None, 'AA', None, None, None, 'AA', 'BB', 'BB',
        None, 'AA']
    poller = CardPoller(ScriptedReader(script), release_after=3)
    events = [poller.poll() for _ in script]
    assert [e for e in events if e] == ['AA', 'AA', 'BB', 'AA']
    # one miss (flicker) is not a new card; three are
    assert events[:4] == ['AA', None, None, None]


def test_rfid_reader_calls_on_read_once_per_card():
    fake = FakeReader(card=b'\x04\xa1\xb2\xc3')
    reads = []
    reader = RfidReader(make_reader(fake), gate='MAIN-IN', lane=2,
        direction='in', interval=0.01)
    with reader.start(lambda *args: reads.append(args)):
        assert wait_for(lambda: reads)
        count = len(fake.apdus)
        assert wait_for(lambda: len(fake.apdus) > count + 5)
    assert reads == [('MAIN-IN', 2, 'rfid', '04A1B2C3', 'in')]
    assert reader.status()['kind'] == 'rfid'


def test_virtual_card_answers():
    card = VirtualCard('04A1B2C3D4')
    assert card.handle(b'\x04') == contactless_atr()
    assert contactless_atr().hex().upper() == \
        '3B8F8001804F0CA000000306030001000000006A'
    assert card.handle(b'\x01') is None and card.powered
    assert card.handle(b'\xFF\xCA\x00\x00\x00') == \
        bytes.fromhex('04A1B2C3D4') + b'\x90\x00'
    assert card.handle(b'\xFF\xCA\x00\x00\x02') == b'\x6C\x05'
    assert card.handle(b'\x00\xA4\x04\x00') == b'\x6D\x00'


# -- integration: Debian's pcscd with the vsmartcard vpcd reader ----------

def _vpcd_driver():
    return glob.glob('/usr/lib/pcsc/drivers/serial/libifdvpcd.so*') or \
        glob.glob('/usr/lib/*/pcsc/drivers/serial/libifdvpcd.so*')


def _pcscd_running():
    path = '/run/pcscd/pcscd.comm'
    if not os.path.exists(path):
        return False
    with socket.socket(socket.AF_UNIX) as sock:
        try:
            sock.connect(path)
            return True
        except OSError:
            return False


def _free_port_pair():
    for _ in range(50):
        with socket.socket() as probe:
            probe.bind(('127.0.0.1', 0))
            port = probe.getsockname()[1]
        try:
            for p in (port, port + 1):      # vpcd listens on two slots
                with socket.socket() as s:
                    s.bind(('0.0.0.0', p))
            return port
        except OSError:
            continue
    pytest.skip('no free TCP port pair for vpcd')


@pytest.fixture
def pcscd(tmp_path):
    """pcscd in the foreground with a vpcd reader on a free port."""
    if shutil.which('pcscd') is None or not _vpcd_driver():
        pytest.skip('pcscd / vsmartcard-vpcd are not installed (Debian: '
            'apt-get install pcscd vsmartcard-vpcd)')
    pytest.importorskip('smartcard', reason='pyscard is not installed')
    if _pcscd_running():
        pytest.skip('another pcscd is running; this test starts its own')
    port = _free_port_pair()
    conf = tmp_path / 'reader.conf.d'
    conf.mkdir()
    (conf / 'vpcd').write_text(
        'FRIENDLYNAME "Virtual PCD"\n'
        f'DEVICENAME   /dev/null:0x{port:04X}\n'
        f'LIBPATH      {_vpcd_driver()[0]}\n'
        f'CHANNELID    0x{port:04X}\n')
    log = open(tmp_path / 'pcscd.log', 'w')
    process = subprocess.Popen(['pcscd', '--foreground', '--config',
        str(conf)], stdout=log, stderr=subprocess.STDOUT)
    try:
        from smartcard.System import readers

        def ready():
            if process.poll() is not None:
                return True
            try:
                return any('Virtual PCD' in str(r) for r in readers())
            except Exception:
                return False
        wait_for(ready, timeout=15)
        if process.poll() is not None:
            log.flush()
            pytest.skip('pcscd did not start: '
                + (tmp_path / 'pcscd.log').read_text()[-300:])
        yield port
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)
        log.close()


@pytest.mark.pcsc_integration
def test_uid_through_pcscd_and_vpcd(pcscd):
    reader = PcscCardReader('Virtual PCD 00 00')
    assert reader.read_uid() is None                # no card yet
    card = VirtualCard('04A1B2C3D4E5F6', port=pcscd)
    reads = []
    rfid = RfidReader(reader, gate='MAIN-IN', lane=1, interval=0.05)
    with rfid.start(lambda *args: reads.append(args[3])):
        with card:
            assert wait_for(lambda: reads, timeout=15)
            assert reads == ['04A1B2C3D4E5F6']
            assert [0xFF, 0xCA, 0x00, 0x00, 0x00] == list(card.apdus[0])
        # the card leaves: the poller lets go of it, then it comes back
        assert wait_for(lambda: rfid.poller.current is None, timeout=15)
        with card:
            assert wait_for(lambda: len(reads) == 2, timeout=15)
    assert reads == ['04A1B2C3D4E5F6'] * 2
    assert reader.errors == 0
