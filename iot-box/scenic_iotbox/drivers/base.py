"""What every driver shares: counters for the heartbeat, a reader thread.

The box reports each device in its heartbeat as ``{"kind", "name", "ok",
"errors"}`` (PROTOCOL.md); every driver keeps a :class:`Counters` and
answers ``status()`` with that dict (plus its own details).
"""

import logging
import threading
from collections import Counter

__all__ = ['Counters', 'Device', 'ReaderThread', 'ScanReader']

logger = logging.getLogger(__name__)


class Counters:
    """Thread-safe named counters (discarded bytes, corrupt frames, …)."""

    def __init__(self):
        self._lock = threading.Lock()
        self._counts = Counter()

    def add(self, name, n=1):
        with self._lock:
            self._counts[name] += n

    def __getitem__(self, name):
        with self._lock:
            return self._counts[name]

    def snapshot(self):
        with self._lock:
            return dict(self._counts)


class Device:
    """Mixin: ``kind``/``name``, counters and the heartbeat status dict.

    ``errors`` is the sum of the counters named in ``ERROR_COUNTERS``: the
    ones that mean something went wrong (noise on a line is one)."""

    kind = 'device'
    ERROR_COUNTERS = ()

    def __init__(self, name=None):
        self.name = name or self.kind
        self.counters = Counters()
        self.ok = True

    @property
    def errors(self):
        counts = self.counters.snapshot()
        return sum(counts.get(name, 0) for name in self.ERROR_COUNTERS)

    def status(self):
        return {'kind': self.kind, 'name': self.name, 'ok': self.ok,
            'errors': self.errors, 'counters': self.counters.snapshot()}


class ReaderThread:
    """Runs ``step()`` over and over in a daemon thread until stopped.

    ``step`` does one blocking-with-timeout unit of work.  Whatever it
    raises is logged and counted, and the loop goes on after ``backoff``
    seconds: a reader thread must outlive any input."""

    def __init__(self, step, name, counters, backoff=0.5):
        self._step = step
        self._counters = counters
        self._backoff = backoff
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name,
            daemon=True)

    @property
    def stopping(self):
        return self._stop.is_set()

    def start(self):
        self._thread.start()
        return self

    def stop(self, timeout=2.0):
        self._stop.set()
        if self._thread.is_alive() and \
                self._thread is not threading.current_thread():
            self._thread.join(timeout)

    def is_alive(self):
        return self._thread.is_alive()

    def _run(self):
        while not self._stop.is_set():
            try:
                self._step()
            except Exception:
                self._counters.add('thread_errors')
                logger.exception('%s: error in reader thread',
                    self._thread.name)
                self._stop.wait(self._backoff)


class ScanReader(Device):
    """A reader on the box itself (QR, RFID, ID card): ``start(on_read)``.

    The box calls ``start(on_read)``; a thread then calls ``poll()`` (one
    short blocking read returning a list of data strings) and, for each,
    ``on_read(gate, lane, medium, data, direction)``, the same path as a
    handheld's ``POST /scan``.  ``gate``/``lane``/``direction`` come from
    the driver's options: a reader sits at one lane.  Subclasses set
    ``medium`` and implement ``poll()``."""

    medium = None
    ERROR_COUNTERS = ('read_errors', 'callback_errors', 'thread_errors')

    def __init__(self, gate=None, lane=1, direction=None, name=None):
        super().__init__(name)
        self.gate = gate
        self.lane = int(lane)
        self.direction = direction
        self._on_read = None
        self._thread = None

    inner = None        # the device read (its counters join ours)

    def poll(self):
        raise NotImplementedError

    def status(self):
        result = super().status()
        if self.inner is not None:
            inner = self.inner.status()
            result['ok'] = result['ok'] and inner.get('ok', True)
            result['errors'] += inner.get('errors', 0)
            result['counters'].update(inner.get('counters', {}))
        return result

    def start(self, on_read):
        if self.gate is None:
            raise ValueError(f'{self.kind} reader {self.name!r}: set the '
                'gate option (the gate code it reads for)')
        self._on_read = on_read
        self._thread = ReaderThread(self._step, f'{self.kind}-{self.name}',
            self.counters).start()
        return self

    def _step(self):
        for data in self.poll():
            self.counters.add('reads')
            try:
                self._on_read(self.gate, self.lane, self.medium, data,
                    self.direction)
            except Exception:
                self.counters.add('callback_errors')
                logger.exception('%s reader %s: on_read failed', self.kind,
                    self.name)

    def close(self):
        if self._thread is not None:
            self._thread.stop()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
