"""Turnstile controller driver over a serial line (protocol: DRIVERS.md).

:class:`TurnstileController` opens the line with ``serial.serial_for_url``
(a device such as ``/dev/ttyUSB0``, a pty path, or ``loop://`` in tests),
reads it in a background thread, acknowledges the controller's PASSAGE and
ALARM events and hands them out through ``events`` (a queue) and optional
callbacks.  ``open_passages`` and ``query_status`` wait for the
controller's answer, resending the same frame (same SEQ, so the controller
can tell a resend from a new order) a bounded number of times.
"""

import logging
import queue
import random
import threading
import time
from abc import ABC, abstractmethod
from collections import deque
from dataclasses import asdict, dataclass

from . import turnstile_protocol as tp
from .base import Device, ReaderThread

__all__ = ['Turnstile', 'TurnstileController', 'PassageEvent', 'AlarmEvent',
    'TurnstileError', 'TurnstileTimeout', 'TurnstileRefused']

logger = logging.getLogger(__name__)


class TurnstileError(Exception):
    """The controller did not carry out an order."""


class TurnstileTimeout(TurnstileError):
    """No answer after every retry (or the line is not open)."""


class TurnstileRefused(TurnstileError):
    """The controller answered NAK; ``reason`` is a NAK reason name."""

    def __init__(self, reason, message):
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True)
class PassageEvent:
    lane: int
    direction: str          # 'in' | 'out'
    remaining: int          # passages still allowed on that lane
    at: float               # time.time() when the box received it


@dataclass(frozen=True)
class AlarmEvent:
    lane: int               # 0: the whole controller
    code: str               # tailgating, forced, jam, tamper, emergency, …
    active: bool            # False when the alarm clears
    at: float


class Turnstile(ABC):
    """What the box needs from a turnstile, whatever drives it."""

    kind = 'turnstile'

    @abstractmethod
    def open_passages(self, lane, n, direction='in'):
        """Let ``n`` people through ``lane``; returns once the controller
        took the order, raises :class:`TurnstileError` otherwise."""

    @abstractmethod
    def query_status(self):
        """The controller's :class:`~.turnstile_protocol.Status`."""

    @abstractmethod
    def status(self):
        """Heartbeat dict ``{"kind", "name", "ok", "errors", …}``."""

    @abstractmethod
    def close(self):
        """Stop the reader and close the line."""


class _Waiter:
    """One order waiting for its answer (matched on SEQ and type)."""

    def __init__(self, answers):
        self.answers = answers      # message classes that answer it
        self.done = threading.Event()
        self.message = None


class TurnstileController(Device, Turnstile):
    """A turnstile controller on a serial line.

    Options (box.toml ``[drivers.turnstile]`` with ``driver = "serial"``):
    ``port`` (or ``url``) the device path or pyserial URL, ``baudrate``
    (9600), ``ack_timeout`` seconds to wait for an answer (0.5),
    ``retries`` resends after the first try (3), ``name``."""

    kind = 'turnstile'
    ERROR_COUNTERS = ('malformed', 'io_errors', 'timeouts', 'naks',
        'callback_errors', 'thread_errors', 'dropped_events')
    # An event equal to one received in the last RESEND_WINDOW seconds is
    # the controller resending it (our ACK was lost): ACK, do not count.
    RECENT_EVENTS = 32
    RESEND_WINDOW = 5.0
    REOPEN_INTERVAL = 1.0

    def __init__(self, port=None, url=None, baudrate=9600, ack_timeout=0.5,
            retries=3, name='serial', on_event=None, read_timeout=0.05,
            max_queue=1000, serial_factory=None):
        super().__init__(name)
        if not (port or url):
            raise ValueError('turnstile: give port (e.g. /dev/ttyUSB0) or '
                'url')
        self.url = url or port
        self.baudrate = int(baudrate)
        self.ack_timeout = float(ack_timeout)
        self.retries = max(0, int(retries))
        self.read_timeout = float(read_timeout)
        self.events = queue.Queue(maxsize=max_queue)
        self._listeners = [on_event] if on_event else []
        self._factory = serial_factory
        self.parser = tp.FrameParser()
        self._serial = None
        # Random start: after a restart our SEQs do not repeat the last ones
        self._seq = random.randrange(256)
        self._lock = threading.Lock()           # seq, waiters
        self._write_lock = threading.Lock()
        self._waiters = {}
        self._recent = deque(maxlen=self.RECENT_EVENTS)
        self._closing = threading.Event()
        self._open_line(log=True)
        self._reader = ReaderThread(self._step, f'turnstile-{self.name}',
            self.counters).start()

    # -- the line ----------------------------------------------------
    def _open_line(self, log=False):
        factory = self._factory
        if factory is None:
            import serial
            factory = serial.serial_for_url
        try:
            self._serial = factory(self.url, baudrate=self.baudrate,
                timeout=self.read_timeout, write_timeout=1.0)
            self.ok = True
            return True
        except Exception as error:
            # A missing adapter must not stop the box: keep trying.
            self._serial = None
            self.ok = False
            self.counters.add('open_failures')
            if log:
                logger.warning('Turnstile %s: cannot open %s: %s',
                    self.name, self.url, error)
            return False

    def _close_line(self):
        line, self._serial = self._serial, None
        if line is not None:
            try:
                line.close()
            except Exception:
                pass

    def _step(self):
        line = self._serial
        if line is None:
            if self._closing.is_set() or not self._open_line():
                self._closing.wait(self.REOPEN_INTERVAL)
            return
        try:
            data = line.read(max(1, line.in_waiting))
        except Exception as error:
            if self._closing.is_set():
                return
            self.counters.add('io_errors')
            self.ok = False
            logger.warning('Turnstile %s: read failed: %s', self.name,
                error)
            self._close_line()
            return
        if data:
            for frame in self.parser.feed(data):
                self._handle(frame)

    def _write(self, data):
        line = self._serial
        if line is None:
            raise TurnstileTimeout(f'turnstile line {self.url} is not open')
        with self._write_lock:
            try:
                line.write(data)
                line.flush()
            except Exception as error:
                self.counters.add('io_errors')
                raise TurnstileTimeout(f'write to {self.url} failed: '
                    f'{error}') from error

    # -- incoming frames ---------------------------------------------
    def _handle(self, frame):
        try:
            message = tp.decode(frame)
        except tp.ProtocolError as error:
            self.counters.add('malformed')
            logger.info('Turnstile %s: bad frame: %s', self.name, error)
            if frame.command in (tp.PASSAGE, tp.ALARM) and frame.payload:
                self._send_quietly(tp.Nak(frame.seq, error.reason))
            return
        if isinstance(message, (tp.Ack, tp.Nak, tp.Status)):
            self._answer(message)
        elif isinstance(message, (tp.Passage, tp.Alarm)):
            self._event(frame, message)
        else:
            # OPEN / STATUS_REQUEST are ours: on loop:// we read them back.
            self.counters.add('unexpected')

    def _answer(self, message):
        with self._lock:
            waiter = self._waiters.get(message.seq)
            if waiter is None or not isinstance(message, waiter.answers):
                self.counters.add('stray_answers')
                return
            del self._waiters[message.seq]
        waiter.message = message
        waiter.done.set()

    def _send_quietly(self, message):
        try:
            self._write(message.encode())
        except TurnstileError:
            pass

    def _event(self, frame, message):
        # ACK first (even a resend: our previous ACK was lost).
        self._send_quietly(tp.Ack(message.seq))
        key = (frame.command, frame.payload)
        now = time.time()
        if any(k == key and now - t < self.RESEND_WINDOW
                for k, t in self._recent):
            self.counters.add('duplicates')
            return
        self._recent.append((key, now))
        if isinstance(message, tp.Passage):
            event = PassageEvent(message.lane, message.direction,
                message.remaining, now)
            self.counters.add('passages')
        else:
            event = AlarmEvent(message.lane, message.code, message.active,
                now)
            self.counters.add('alarms')
            logger.warning('Turnstile %s: alarm %s on lane %s (%s)',
                self.name, message.code, message.lane,
                'raised' if message.active else 'cleared')
        self._publish(event)

    def _publish(self, event):
        try:
            self.events.put_nowait(event)
        except queue.Full:
            # Nobody reads the queue: keep the newest events.
            self.counters.add('dropped_events')
            try:
                self.events.get_nowait()
                self.events.put_nowait(event)
            except (queue.Empty, queue.Full):
                pass
        for listener in list(self._listeners):
            try:
                listener(event)
            except Exception:
                self.counters.add('callback_errors')
                logger.exception('Turnstile %s: event callback failed',
                    self.name)

    def add_listener(self, callback):
        """Call ``callback(event)`` (in the reader thread) for each
        PassageEvent / AlarmEvent."""
        self._listeners.append(callback)

    # -- orders ------------------------------------------------------
    def _next_seq(self):
        with self._lock:
            for _ in range(256):
                self._seq = (self._seq + 1) % 256
                if self._seq not in self._waiters:
                    return self._seq
        raise TurnstileError('too many orders waiting')

    def _request(self, build, answers, ack_timeout=None, retries=None):
        ack_timeout = self.ack_timeout if ack_timeout is None else \
            ack_timeout
        retries = self.retries if retries is None else retries
        seq = self._next_seq()
        data = build(seq).encode()
        waiter = _Waiter(answers)
        with self._lock:
            self._waiters[seq] = waiter
        try:
            for attempt in range(1 + retries):
                if attempt:
                    self.counters.add('retries')
                try:
                    self._write(data)
                except TurnstileTimeout:
                    if self._serial is None:
                        raise
                if waiter.done.wait(ack_timeout):
                    if waiter.message is None:
                        raise TurnstileTimeout('turnstile driver closed')
                    return waiter.message
            self.counters.add('timeouts')
            raise TurnstileTimeout(f'no answer from the turnstile on '
                f'{self.url} after {1 + retries} tries')
        finally:
            with self._lock:
                if self._waiters.get(seq) is waiter:
                    del self._waiters[seq]

    def open_passages(self, lane, n, direction='in'):
        """Let ``n`` people through ``lane`` (``direction`` 'in'/'out').

        Returns when the controller acknowledged; raises
        TurnstileRefused (NAK) or TurnstileTimeout."""
        if direction not in ('in', 'out'):
            raise ValueError("direction must be 'in' or 'out'")
        if not isinstance(lane, int) or not 0 <= lane <= 255:
            raise ValueError('lane must be a number from 0 to 255')
        if not isinstance(n, int) or n < 1:
            raise ValueError('n must be a positive number of passages')
        while n > 0:                    # one OPEN carries at most 255
            count = min(n, 255)
            answer = self._request(
                lambda seq: tp.Open(seq, lane, count, direction),
                (tp.Ack, tp.Nak))
            if isinstance(answer, tp.Nak):
                self.counters.add('naks')
                raise TurnstileRefused(answer.reason, f'turnstile refused '
                    f'to open lane {lane}: {answer.reason}')
            self.counters.add('opens')
            n -= count

    def query_status(self, ack_timeout=None, retries=None):
        """Ask the controller: returns a turnstile_protocol.Status."""
        answer = self._request(tp.StatusRequest, (tp.Status, tp.Nak),
            ack_timeout, retries)
        if isinstance(answer, tp.Nak):
            self.counters.add('naks')
            raise TurnstileRefused(answer.reason, 'turnstile refused the '
                f'status request: {answer.reason}')
        return answer

    def status(self):
        """Heartbeat dict; asks the controller once (no retry) so that a
        dead controller shows as not ok, with its lanes when it answers."""
        result = super().status()
        result['errors'] += self.parser.corrupt_frames
        result['counters'].update(self.parser.stats())
        result['port'] = self.url
        try:
            answer = self.query_status(retries=0)
            result['lanes'] = [dict(asdict(lane), alarms=list(lane.alarms))
                for lane in answer.lanes]
            result['ok'] = True
        except TurnstileError as error:
            result['ok'] = False
            result['error'] = str(error)
        return result

    # -- life cycle --------------------------------------------------
    def close(self):
        self._closing.set()
        self._reader.stop()
        self._close_line()
        with self._lock:
            waiters = list(self._waiters.values())
            self._waiters.clear()
        for waiter in waiters:
            waiter.done.set()       # message None: the caller times out

    stop = close

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
