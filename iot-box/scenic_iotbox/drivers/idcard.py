"""Second-generation Chinese resident ID cards (居民身份证).

The card's data is readable only through a certified reader with its MPS
SAM module (GA 467), driven by the vendor's SDK (a C library); no Python
package exists.  So this module defines the interface, a simulated reader
for tests and the demo, and the reader loop of the box.  DRIVERS.md says
how a vendor SDK plugs in (a ctypes wrapper implementing
:class:`IDCardReader`).

Personal information (PIPL): only the name, the number and the photo are
taken from the card, and the box only ever keeps the number's keyed hash.
Log lines never contain them (``IDCardData.__repr__`` masks the number).
"""

import json
import logging
import threading
import time
from abc import ABC, abstractmethod
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path

from scenic_common import idnumber

from .base import Device, ScanReader

__all__ = ['IDCardData', 'IDCardReader', 'SimulatedIDCardReader',
    'IDCardPoller']

logger = logging.getLogger(__name__)

MAX_PHOTO = 64 * 1024       # the card's photo is a ~1 KB WLT, ~20 KB JPEG


@dataclass(frozen=True)
class IDCardData:
    name: str
    id_number: str
    photo_jpeg: bytes | None = field(default=None, repr=False)

    def __repr__(self):
        return (f'IDCardData(name={self.name[:1]}…, '
            f'id_number={idnumber.mask(self.id_number)}, '
            f'photo={len(self.photo_jpeg or b"")} bytes)')

    __str__ = __repr__


class IDCardReader(Device, ABC):
    """``read() -> IDCardData | None``: the card on the reader, None when
    there is none (or it could not be read: counted, never raised).

    Each call reads the card anew (~0.3 s on a real reader); a card left
    on the reader is returned by every call (the box debounces)."""

    kind = 'idcard'
    ERROR_COUNTERS = ('read_errors', 'invalid_cards')

    @abstractmethod
    def read(self):
        """The card present, or None."""

    def check(self, data):
        """``data`` if its number is a valid resident ID number, else None
        (counted): a misread must not reach the decision."""
        try:
            number = idnumber.validate(idnumber.RESIDENT_ID, data.id_number)
        except (idnumber.InvalidIDNumber, TypeError, AttributeError):
            self.counters.add('invalid_cards')
            return None
        photo = data.photo_jpeg
        if photo is not None and (not isinstance(photo, bytes)
                or len(photo) > MAX_PHOTO):
            photo = None
        return IDCardData((data.name or '').strip(), number, photo)


class SimulatedIDCardReader(IDCardReader):
    """A reader whose cards the test or the demo puts on it.

    ``place(card)`` puts a card on it until ``take()``; ``tap(card)``
    queues a card that is read once then gone (a visitor tapping).  Cards
    with an invalid number are refused as a real reader's SAM would."""

    def __init__(self, cards=(), name='sim', card_file=None):
        super().__init__(name)
        self._lock = threading.Lock()
        self._present = None
        self._taps = deque(cards)
        # The demo's way to place a card on a running box: the card on the
        # reader is this JSON file's {"name", "id_number"} while it exists.
        self.card_file = Path(card_file) if card_file else None

    def _file_card(self):
        if self.card_file is None:
            return None
        try:
            data = json.loads(self.card_file.read_text(encoding='utf-8'))
            return IDCardData(str(data['name']), str(data['id_number']))
        except FileNotFoundError:
            return None
        except (OSError, ValueError, TypeError, KeyError):
            # unreadable: no card (nothing from it is logged)
            self.counters.add('read_errors')
            return None

    def place(self, card):
        with self._lock:
            self._present = card

    def take(self):
        with self._lock:
            self._present = None

    def tap(self, card):
        with self._lock:
            self._taps.append(card)

    def read(self):
        with self._lock:
            card = self._taps.popleft() if self._taps else self._present
        if card is None:
            card = self._file_card()
        if card is None:
            return None
        self.counters.add('card_reads')
        return self.check(card)


class IDCardPoller(ScanReader):
    """The box's ``idcard`` reader: reports each card once per
    presentation as ``on_read(gate, lane, 'id_card', id_number, …)``.

    A card is presented again after ``release_after`` empty reads."""

    kind = 'idcard'
    medium = 'id_card'

    def __init__(self, reader, gate=None, lane=1, direction=None,
            interval=0.3, release_after=2, name=None):
        super().__init__(gate, lane, direction, name or reader.name)
        self.reader = self.inner = reader
        self.interval = interval
        self.release_after = release_after
        self.last = None            # IDCardData of the latest presentation
        self._current = None
        self._misses = 0

    @classmethod
    def simulated(cls, gate=None, lane=1, direction=None, cards=(),
            interval=0.3, name='sim', card_file=None):
        """Registry ``idcard``/``sim``: ``cards`` = [{"name", "id_number"}]
        tapped once each (demo); ``card_file``: a JSON file holding the
        card placed on the reader while it exists (the demo's desk box)."""
        reader = SimulatedIDCardReader(
            [IDCardData(c['name'], c['id_number']) for c in cards], name,
            card_file=card_file)
        return cls(reader, gate, lane, direction, interval, name=name)

    def poll_card(self):
        """One read; the IDCardData when a card arrives, else None."""
        try:
            card = self.reader.read()
        except Exception:           # a vendor wrapper should not raise
            self.counters.add('read_errors')
            logger.exception('ID card reader %s failed', self.name)
            card = None
        if card is None:
            if self._current is not None:
                self._misses += 1
                if self._misses >= self.release_after:
                    self._current = None
            return None
        self._misses = 0
        if card.id_number == self._current:
            return None
        self._current = card.id_number
        self.last = card
        return card

    def poll(self):
        card = self.poll_card()
        if card is None:
            time.sleep(self.interval)
            return []
        return [card.id_number]
