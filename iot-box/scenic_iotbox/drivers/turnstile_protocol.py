"""The box ↔ turnstile controller serial protocol (see DRIVERS.md).

Wire frame::

    STX | LEN | CMD | PAYLOAD (LEN-1 bytes) | CRC | ETX
    0x02                                          0x03

* ``LEN`` counts CMD + PAYLOAD (1..255), before stuffing.
* ``CRC`` is CRC-8 (polynomial 0x07, init 0x00, no reflection, no final
  XOR; "CRC-8/SMBUS", check value 0xF4) over LEN + CMD + PAYLOAD.
* Byte stuffing: between STX and ETX, any of 0x02, 0x03, 0x10 (including
  LEN and CRC) is sent as ``0x10, byte ^ 0x20``.  So STX and ETX never
  occur inside a frame: a receiver that sees STX always starts a new
  frame, which is how it resynchronises after noise.
* Every payload starts with a sequence byte SEQ.

This module is pure: bytes in, frames and messages out.  No I/O.
"""

from dataclasses import dataclass

__all__ = [
    'STX', 'ETX', 'DLE', 'ACK', 'NAK', 'OPEN', 'STATUS_REQUEST', 'STATUS',
    'PASSAGE', 'ALARM', 'COMMANDS', 'DIRECTIONS', 'LANE_STATES',
    'ALARM_CODES', 'NAK_REASONS', 'MAX_LANES', 'crc8', 'stuff',
    'encode_frame', 'Frame', 'FrameParser', 'ProtocolError', 'decode',
    'Ack', 'Nak', 'Open', 'StatusRequest', 'Status', 'LaneStatus',
    'Passage', 'Alarm',
]

STX, ETX, DLE = 0x02, 0x03, 0x10
_SPECIAL = frozenset((STX, ETX, DLE))
_ESCAPED = {b ^ 0x20: b for b in _SPECIAL}      # 0x22, 0x23, 0x30

# Commands: ASCII ACK/NAK, and mnemonic letters for the rest so that a hex
# dump of the line is readable.
ACK = 0x06
NAK = 0x15
OPEN = 0x4F             # 'O'  box → controller
STATUS_REQUEST = 0x53   # 'S'  box → controller
STATUS = 0x73           # 's'  controller → box (answers S)
PASSAGE = 0x50          # 'P'  controller → box
ALARM = 0x41            # 'A'  controller → box
COMMANDS = {ACK: 'ACK', NAK: 'NAK', OPEN: 'OPEN',
    STATUS_REQUEST: 'STATUS_REQUEST', STATUS: 'STATUS', PASSAGE: 'PASSAGE',
    ALARM: 'ALARM'}

DIRECTIONS = {1: 'in', 2: 'out'}
_DIRECTION_CODES = {v: k for k, v in DIRECTIONS.items()}
LANE_STATES = {0: 'idle', 1: 'open', 2: 'alarm', 3: 'fault', 4: 'free'}
_STATE_CODES = {v: k for k, v in LANE_STATES.items()}
ALARM_CODES = {1: 'tailgating', 2: 'forced', 3: 'jam', 4: 'tamper',
    5: 'emergency', 6: 'wrong_way'}
_ALARM_NUMBERS = {v: k for k, v in ALARM_CODES.items()}
NAK_REASONS = {1: 'bad_length', 2: 'bad_lane', 3: 'bad_value',
    4: 'unknown_command', 5: 'lane_unavailable'}
_NAK_NUMBERS = {v: k for k, v in NAK_REASONS.items()}

_LANE_RECORD = 12                       # bytes per lane in STATUS
MAX_LANES = (255 - 3) // _LANE_RECORD   # 21 lanes fit in one STATUS


def _crc8_table():
    table = []
    for byte in range(256):
        crc = byte
        for _ in range(8):
            crc = ((crc << 1) ^ 0x07) & 0xFF if crc & 0x80 else \
                (crc << 1) & 0xFF
        table.append(crc)
    return bytes(table)


_CRC8 = _crc8_table()


def crc8(data):
    """CRC-8/SMBUS of ``data`` (``crc8(b'123456789') == 0xF4``)."""
    crc = 0
    for byte in data:
        crc = _CRC8[crc ^ byte]
    return crc


def stuff(data):
    """Escape STX, ETX and DLE: each becomes DLE, byte ^ 0x20."""
    out = bytearray()
    for byte in data:
        if byte in _SPECIAL:
            out += bytes((DLE, byte ^ 0x20))
        else:
            out.append(byte)
    return bytes(out)


def encode_frame(command, payload=b''):
    """The bytes on the wire for one frame."""
    if not 0 <= command <= 255:
        raise ValueError('command must be a byte')
    length = 1 + len(payload)
    if length > 255:
        raise ValueError('payload too long (at most 254 bytes)')
    body = bytes((length, command)) + bytes(payload)
    return bytes((STX,)) + stuff(body + bytes((crc8(body),))) + \
        bytes((ETX,))


@dataclass(frozen=True)
class Frame:
    """A frame whose length and CRC checked out (its meaning may not)."""
    command: int
    payload: bytes
    crc: int

    @property
    def seq(self):
        return self.payload[0] if self.payload else None

    def encode(self):
        return encode_frame(self.command, self.payload)


class FrameParser:
    """Incremental parser: ``feed(bytes) -> [Frame]``.

    Bytes outside a frame are noise: counted in ``discarded_bytes`` and
    dropped.  A frame that is cut short by a new STX, too long, badly
    escaped, of the wrong length or with a wrong CRC counts one in
    ``corrupt_frames`` and its bytes in ``discarded_bytes``.  Memory is
    bounded: a frame body never grows past 257 bytes."""

    MAX_BODY = 1 + 255 + 1          # LEN + CMD/PAYLOAD + CRC, unstuffed

    def __init__(self):
        self.frames = 0
        self.discarded_bytes = 0
        self.corrupt_frames = 0
        self._body = bytearray()
        self._in_frame = False
        self._escape = False
        self._raw = 0               # wire bytes of the current frame

    def stats(self):
        return {'frames': self.frames,
            'discarded_bytes': self.discarded_bytes,
            'corrupt_frames': self.corrupt_frames}

    def _drop(self):
        self.corrupt_frames += 1
        self.discarded_bytes += self._raw
        self._in_frame = False
        self._escape = False
        self._body.clear()
        self._raw = 0

    def feed(self, data):
        frames = []
        for byte in bytes(data):
            if byte == STX:
                # STX never occurs inside a frame: a new frame starts here,
                # whatever we were reading.
                if self._in_frame:
                    self._drop()
                self._in_frame = True
                self._escape = False
                self._body.clear()
                self._raw = 1
                continue
            if not self._in_frame:
                self.discarded_bytes += 1
                continue
            self._raw += 1
            if self._escape:
                self._escape = False
                original = _ESCAPED.get(byte)
                if original is None:
                    self._drop()        # DLE then something not escaped
                    continue
                self._body.append(original)
            elif byte == DLE:
                self._escape = True
                continue
            elif byte == ETX:
                frame = self._finish()
                if frame is not None:
                    frames.append(frame)
                continue
            else:
                self._body.append(byte)
            if len(self._body) > self.MAX_BODY:
                self._drop()
        return frames

    def _finish(self):
        body = self._body
        if len(body) < 3 or body[0] < 1 or len(body) != body[0] + 2 \
                or crc8(body[:-1]) != body[-1]:
            self._drop()
            return None
        frame = Frame(body[1], bytes(body[2:-1]), body[-1])
        self.frames += 1
        self._in_frame = False
        self._body = bytearray()
        self._raw = 0
        return frame


class ProtocolError(ValueError):
    """A frame with a good CRC whose content makes no sense.

    ``reason`` is one of NAK_REASONS' names."""

    def __init__(self, reason, message):
        super().__init__(message)
        self.reason = reason

    @property
    def nak_code(self):
        return _NAK_NUMBERS[self.reason]


def _direction(code):
    try:
        return DIRECTIONS[code]
    except KeyError:
        raise ProtocolError('bad_value', f'bad direction {code}') from None


def _byte(name, value, low=0, high=255):
    if not isinstance(value, int) or not low <= value <= high:
        raise ValueError(f'{name} must be an integer from {low} to {high}')
    return value


@dataclass(frozen=True)
class Ack:
    seq: int        # the seq of the frame acknowledged

    def encode(self):
        return encode_frame(ACK, bytes((_byte('seq', self.seq),)))


@dataclass(frozen=True)
class Nak:
    seq: int        # the seq of the frame refused
    reason: str     # a NAK_REASONS name

    def encode(self):
        return encode_frame(NAK, bytes((_byte('seq', self.seq),
            _NAK_NUMBERS[self.reason])))


@dataclass(frozen=True)
class Open:
    """Let ``count`` people through ``lane`` in ``direction``."""
    seq: int
    lane: int
    count: int
    direction: str = 'in'

    def encode(self):
        return encode_frame(OPEN, bytes((_byte('seq', self.seq),
            _byte('lane', self.lane), _DIRECTION_CODES[self.direction],
            _byte('count', self.count, 1))))


@dataclass(frozen=True)
class StatusRequest:
    seq: int

    def encode(self):
        return encode_frame(STATUS_REQUEST, bytes((_byte('seq', self.seq),)))


@dataclass(frozen=True)
class LaneStatus:
    lane: int
    state: str              # a LANE_STATES name
    pending: int = 0        # passages still allowed by the last OPEN(s)
    alarms: tuple = ()      # active ALARM_CODES names
    entries: int = 0        # passages in since power-on (wraps at 2**32)
    exits: int = 0

    def pack(self):
        mask = 0
        for name in self.alarms:
            mask |= 1 << (_ALARM_NUMBERS[name] - 1)
        return bytes((_byte('lane', self.lane), _STATE_CODES[self.state],
            min(_byte('pending', self.pending, 0, 2**31), 255), mask)) \
            + (self.entries % 2**32).to_bytes(4, 'big') \
            + (self.exits % 2**32).to_bytes(4, 'big')

    @classmethod
    def unpack(cls, data):
        lane, state, pending, mask = data[:4]
        if state not in LANE_STATES:
            raise ProtocolError('bad_value', f'bad lane state {state}')
        alarms = tuple(name for code, name in sorted(ALARM_CODES.items())
            if mask & (1 << (code - 1)))
        return cls(lane, LANE_STATES[state], pending, alarms,
            int.from_bytes(data[4:8], 'big'),
            int.from_bytes(data[8:12], 'big'))


@dataclass(frozen=True)
class Status:
    seq: int                # the seq of the STATUS_REQUEST answered
    lanes: tuple = ()       # LaneStatus, one per lane

    def encode(self):
        if len(self.lanes) > MAX_LANES:
            raise ValueError(f'at most {MAX_LANES} lanes in one STATUS')
        return encode_frame(STATUS, bytes((_byte('seq', self.seq),
            len(self.lanes))) + b''.join(lane.pack() for lane in self.lanes))

    def lane(self, number):
        return next((lane for lane in self.lanes if lane.lane == number),
            None)


@dataclass(frozen=True)
class Passage:
    """One person passed ``lane`` in ``direction``."""
    seq: int
    lane: int
    direction: str = 'in'
    remaining: int = 0      # passages still allowed on that lane

    def encode(self):
        return encode_frame(PASSAGE, bytes((_byte('seq', self.seq),
            _byte('lane', self.lane), _DIRECTION_CODES[self.direction],
            min(_byte('remaining', self.remaining, 0, 2**31), 255))))


@dataclass(frozen=True)
class Alarm:
    seq: int
    lane: int               # 0: the whole controller
    code: str               # an ALARM_CODES name, or 'unknown_<n>'
    active: bool = True     # False: the alarm cleared

    def encode(self):
        return encode_frame(ALARM, bytes((_byte('seq', self.seq),
            _byte('lane', self.lane), _ALARM_NUMBERS[self.code],
            1 if self.active else 0)))


def _expect(frame, size):
    if len(frame.payload) != size:
        raise ProtocolError('bad_length', f'{COMMANDS[frame.command]} '
            f'needs {size} payload bytes, got {len(frame.payload)}')


def decode(frame):
    """The message a checked frame carries, or ``ProtocolError``."""
    command, p = frame.command, frame.payload
    if command not in COMMANDS:
        raise ProtocolError('unknown_command',
            f'unknown command 0x{command:02X}')
    if not p:
        raise ProtocolError('bad_length', 'empty payload (no SEQ)')
    if command == ACK:
        _expect(frame, 1)
        return Ack(p[0])
    if command == NAK:
        _expect(frame, 2)
        return Nak(p[0], NAK_REASONS.get(p[1], f'unknown_{p[1]}'))
    if command == OPEN:
        _expect(frame, 4)
        if p[3] == 0:
            raise ProtocolError('bad_value', 'OPEN for 0 passages')
        return Open(p[0], p[1], p[3], _direction(p[2]))
    if command == STATUS_REQUEST:
        _expect(frame, 1)
        return StatusRequest(p[0])
    if command == STATUS:
        if len(p) < 2:
            raise ProtocolError('bad_length', 'STATUS without lane count')
        _expect(frame, 2 + p[1] * _LANE_RECORD)
        return Status(p[0], tuple(
            LaneStatus.unpack(p[i:i + _LANE_RECORD])
            for i in range(2, len(p), _LANE_RECORD)))
    if command == PASSAGE:
        _expect(frame, 4)
        return Passage(p[0], p[1], _direction(p[2]), p[3])
    # ALARM
    _expect(frame, 4)
    if p[3] not in (0, 1):
        raise ProtocolError('bad_value', f'bad alarm state {p[3]}')
    return Alarm(p[0], p[1], ALARM_CODES.get(p[2], f'unknown_{p[2]}'),
        bool(p[3]))
