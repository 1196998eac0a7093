"""RFID cards: the UID through PC/SC, and a debounced card poller.

:class:`PcscCardReader` asks the card in a PC/SC reader for its UID with
the PC/SC part 3 pseudo-APDU ``FF CA 00 00 00`` (GET DATA, UID), which
contactless readers (ACS ACR122U/ACR1252, HID Omnikey, …) answer
themselves for MIFARE, DESFire and other ISO 14443 cards.  UIDs are
uppercase hex without separators (``04A1B2C3D4E5F6``), as the ERP stores
them.

:class:`CardPoller` turns reads into card-present events: a card held on
the reader is one event, and a read that misses the card for a moment
(cards at the edge of the field flicker) does not make a second one.
"""

import logging
import time
from abc import ABC, abstractmethod

from .base import Device, ScanReader

__all__ = ['CardReader', 'PcscCardReader', 'CardPoller', 'RfidReader',
    'GET_UID', 'uid_from_response']

logger = logging.getLogger(__name__)

GET_UID = [0xFF, 0xCA, 0x00, 0x00, 0x00]
SCARD_LEAVE_CARD = 0        # PC/SC disposition (smartcard.scard has it)
# PC/SC codes of a card in transit (SCARD_W_UNRESPONSIVE_CARD, _UNPOWERED_,
# _RESET_, _REMOVED_; SCARD_E_NO_SMARTCARD): pcscd has seen it come or go
# but has not finished powering it up or noticing it left.
_NOT_READY = {0x80100066, 0x80100067, 0x80100068, 0x80100069, 0x8010000C}
MAX_UID_BYTES = 16      # ISO 14443: 4, 7 or 10; ISO 15693: 8


def uid_from_response(data, sw1, sw2):
    """The UID as uppercase hex from a GET DATA answer, or None.

    Only ``90 00`` with 1..16 data bytes is a UID; ``63 00`` (the reader
    could not read it), ``6A 81`` (not supported) and anything else are
    not."""
    if (sw1, sw2) != (0x90, 0x00):
        return None
    if not data or len(data) > MAX_UID_BYTES:
        return None
    return bytes(data).hex().upper()


class CardReader(Device, ABC):
    """``read_uid() -> str | None``: the UID of the card on the reader
    (uppercase hex), None when there is no card or it cannot be read.
    Never raises: errors are counted."""

    kind = 'rfid'

    @abstractmethod
    def read_uid(self):
        """UID of the card present, or None."""


class PcscCardReader(CardReader):
    """A PC/SC reader through pyscard (pcscd must run).

    ``reader``: part of the reader's name to use (default: the first
    reader).  ``readers``: a callable returning pyscard-like reader objects
    (``createConnection()`` → ``connect()``, ``transmit(apdu)``,
    ``disconnect()``); tests pass fakes, the default is
    ``smartcard.System.readers``."""

    ERROR_COUNTERS = ('reader_errors', 'card_errors', 'bad_answers')

    def __init__(self, reader=None, readers=None, name='pcsc'):
        super().__init__(name)
        self.reader_name = reader
        if readers is None:
            from smartcard.System import readers
        self._readers = readers
        self._exceptions()

    def _exceptions(self):
        try:
            from smartcard.Exceptions import (CardConnectionException,
                NoCardException)
        except ImportError:       # fakes without pyscard: name-based
            NoCardException = CardConnectionException = ()
        self._no_card = NoCardException
        self._card_error = CardConnectionException

    def _reader(self):
        found = list(self._readers())
        for reader in found:
            if self.reader_name is None or \
                    self.reader_name.lower() in str(reader).lower():
                return reader
        return None

    def read_uid(self):
        try:
            reader = self._reader()
        except Exception as error:          # pcscd down, no context
            self._fail('reader_errors', error)
            return None
        if reader is None:
            self.ok = False
            self.counters.add('no_reader')
            return None
        try:
            connection = reader.createConnection()
            # Leave the card powered on disconnect: no power cycle per read,
            # and pcscd does not trip over a card that left meanwhile.
            connection.connect(disposition=SCARD_LEAVE_CARD)
        except Exception as error:
            if self._no_card and isinstance(error, self._no_card) or \
                    type(error).__name__ == 'NoCardException':
                self.ok = True
                return None
            self._fail('card_errors', error)
            return None
        try:
            data, sw1, sw2 = connection.transmit(list(GET_UID))
            if sw1 == 0x6C:                 # wrong Le: resend with it
                data, sw1, sw2 = connection.transmit(GET_UID[:4] + [sw2])
        except Exception as error:
            # Mostly a card that left mid-read (SCARD_E_NOT_TRANSACTED, or
            # an empty answer): the next poll tells.  Counted, not an error.
            self.counters.add('read_interrupted')
            logger.debug('RFID %s: read interrupted: %s', self.name, error)
            return None
        finally:
            try:
                connection.disconnect()
            except Exception:
                pass
        self.ok = True
        uid = uid_from_response(data, sw1, sw2)
        if uid is None:
            self.counters.add('bad_answers')
            logger.info('RFID %s: no UID (SW %02X %02X, %d bytes)',
                self.name, sw1, sw2, len(data or ()))
        return uid

    def _fail(self, counter, error):
        if counter == 'card_errors' and \
                getattr(error, 'hresult', 0) & 0xFFFFFFFF in _NOT_READY:
            # the card is arriving or leaving: not a fault
            self.counters.add('card_not_ready')
            return
        self.counters.add(counter)
        if counter == 'reader_errors':
            self.ok = False
        logger.debug('RFID %s: %s: %s', self.name, counter, error)


class CardPoller:
    """Debounce: ``poll()`` reads once and returns a UID only when a card
    arrives.

    A card counts as gone after ``release_after`` reads in a row without
    it; until then, reading it again is no new event.  A different UID is
    a new card at once."""

    def __init__(self, reader, release_after=3):
        self.reader = reader
        self.release_after = max(1, int(release_after))
        self.current = None
        self._misses = 0

    def poll(self):
        uid = self.reader.read_uid()
        if uid is None:
            if self.current is not None:
                self._misses += 1
                if self._misses >= self.release_after:
                    self.current = None
            return None
        self._misses = 0
        if uid == self.current:
            return None
        self.current = uid
        return uid


class RfidReader(ScanReader):
    """The box's ``rfid`` reader: polls a card reader at a lane and calls
    ``on_read(gate, lane, 'rfid', uid, direction)`` once per card."""

    kind = 'rfid'
    medium = 'rfid'

    def __init__(self, card_reader, gate=None, lane=1, direction=None,
            interval=0.15, release_after=3, name=None):
        super().__init__(gate, lane, direction, name or card_reader.name)
        self.card_reader = self.inner = card_reader
        self.poller = CardPoller(card_reader, release_after)
        self.interval = interval

    @classmethod
    def pcsc(cls, gate=None, lane=1, direction=None, reader=None,
            interval=0.15, release_after=3, name='pcsc'):
        return cls(PcscCardReader(reader, name=name), gate, lane, direction,
            interval, release_after, name)

    def poll(self):
        uid = self.poller.poll()
        if uid is None:
            time.sleep(self.interval)
            return []
        return [uid]

