"""A turnstile controller simulator on a pseudo-terminal.

It speaks the controller's side of the protocol on the master end of an
``os.openpty()`` pair; the box opens the slave path (``sim.path``) like a
real serial port.  It ACKs orders, refuses bad ones with NAK, answers
STATUS, and after an OPEN for N reports N PASSAGE events (one every
``passage_delay`` seconds), resending each event until the box ACKs it.
Tests can inject noise, corrupt frames, lost frames and alarms.

Demo::

    python -m scenic_iotbox.drivers.turnstile_sim --lanes 4
    # prints the pty path; box.toml: [drivers.turnstile] driver = "serial",
    # port = "<that path>"
"""

import argparse
import errno
import fcntl
import os
import random
import select
import signal
import sys
import threading
import time
import tty
from collections import deque

from . import turnstile_protocol as tp
from .base import Counters

__all__ = ['TurnstileSimulator', 'simulated_turnstile', 'main']


class _Lane:
    def __init__(self, number):
        self.number = number
        self.pending = 0
        self.direction = 'in'
        self.entries = 0
        self.exits = 0
        self.alarms = set()
        self.fault = False
        self.next_due = 0.0

    def state(self):
        if self.fault:
            return 'fault'
        if self.alarms:
            return 'alarm'
        return 'open' if self.pending else 'idle'

    def snapshot(self):
        return tp.LaneStatus(self.number, self.state(), self.pending,
            tuple(sorted(self.alarms)), self.entries, self.exits)


class TurnstileSimulator:
    """The controller's side, on a pty (``path`` is the box's port).

    ``lanes``: how many lanes, numbered ``first_lane``… (default 1…8).
    ``passage_delay``: seconds between OPEN and each reported passage.
    ``auto_pass``: people walk through by themselves (else call
    ``walk(lane)``).  ``noise``: probability of random bytes before each
    frame sent (for demos).  ``event_retry``/``event_retries``: resend an
    unacknowledged event after that many seconds, that many times."""

    # An order equal to one received this recently is a resend (its ACK
    # was lost); older, it is a new order that happens to look the same
    # (the box restarted and reused the SEQ).
    RESEND_WINDOW = 5.0

    def __init__(self, lanes=8, first_lane=1, passage_delay=0.2,
            auto_pass=True, noise=0.0, event_retry=0.3, event_retries=5,
            seed=None):
        self.lanes = {n: _Lane(n) for n in
            range(first_lane, first_lane + lanes)}
        self.passage_delay = float(passage_delay)
        self.auto_pass = auto_pass
        self.noise = float(noise)
        self.event_retry = float(event_retry)
        self.event_retries = int(event_retries)
        self.random = random.Random(seed)
        self.parser = tp.FrameParser()
        self.counters = Counters()
        # Bounded logs for tests and the demo (a sim may run for hours).
        self.received = deque(maxlen=1000)     # decoded messages from box
        self.executed = deque(maxlen=1000)     # (lane, count, direction)
        self.sent_events = deque(maxlen=1000)  # Passage / Alarm first sent
        self.log = None             # callable(message) for each received
        self._drop = 0
        self._drop_command = None
        self._mute = 0
        self._seq = 0
        self._unacked = {}          # seq -> [bytes, tries left, next time]
        self._recent_orders = deque(maxlen=32)
        self._lock = threading.RLock()
        self._stop = threading.Event()
        self._master, self._slave = os.openpty()
        # Raw mode now, before the box opens the slave: in the default
        # cooked mode the tty would echo our frames back to us.
        tty.setraw(self._slave)
        flags = fcntl.fcntl(self._master, fcntl.F_GETFL)
        fcntl.fcntl(self._master, fcntl.F_SETFL, flags | os.O_NONBLOCK)
        self.path = os.ttyname(self._slave)
        self._thread = threading.Thread(target=self._run, daemon=True,
            name='turnstile-sim')

    # -- life cycle --------------------------------------------------
    def start(self):
        self._thread.start()
        return self

    def stop(self):
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(2)
        for fd in (self._master, self._slave):
            try:
                os.close(fd)
            except OSError:
                pass

    close = stop

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    # -- test controls -----------------------------------------------
    def inject(self, data):
        """Write raw bytes (noise) on the line."""
        self._write(bytes(data))

    def inject_corrupt_frame(self, lane=None):
        """A PASSAGE frame with a wrong CRC: the box must ignore it."""
        lane = lane or next(iter(self.lanes))
        frame = bytearray(tp.Passage(0x7E, lane, 'in', 0).encode())
        frame[-2] ^= 0x5A               # the CRC (or its escape byte)
        self._write(bytes(frame))

    def drop_next(self, n=1, command=tp.OPEN):
        """Lose the next ``n`` frames of ``command`` (None: any) from the
        box, as a noisy line would: the box must resend."""
        with self._lock:
            self._drop += n
            self._drop_command = command

    def lose_answers(self, n=1):
        """Carry out the next ``n`` orders but lose their ACK/answer on the
        line: the box resends, and the resend must not open twice."""
        with self._lock:
            self._mute += n

    def raise_alarm(self, lane, code='tailgating', active=True):
        with self._lock:
            target = self.lanes.get(lane)
            if target is not None:
                (target.alarms.add if active else target.alarms.discard)(
                    code)
            self._send_event(lambda seq: tp.Alarm(seq, lane, code, active))

    def set_fault(self, lane, fault=True):
        with self._lock:
            self.lanes[lane].fault = fault

    def walk(self, lane):
        """Someone walks through ``lane`` (for ``auto_pass=False``);
        without an OPEN that is a forced passage: an alarm."""
        with self._lock:
            target = self.lanes[lane]
            if target.pending:
                self._pass(target, time.monotonic())
            else:
                self._send_event(
                    lambda seq: tp.Alarm(seq, lane, 'forced', True))

    def unacked(self):
        with self._lock:
            return len(self._unacked)

    # -- the line ----------------------------------------------------
    def _write(self, data):
        try:
            os.write(self._master, data)
        except OSError as error:
            # EAGAIN: nobody reads the slave and its buffer is full.
            if error.errno not in (errno.EAGAIN, errno.EIO):
                raise
            self.counters.add('write_dropped')

    def _send(self, message):
        data = message.encode()
        if self.noise and self.random.random() < self.noise:
            self._write(bytes(self.random.randrange(256)
                for _ in range(self.random.randrange(1, 8))))
        self._write(data)
        return data

    def _answer(self, message):
        if self._mute:
            self._mute -= 1
            self.counters.add('answers_lost_on_purpose')
            return
        self._send(message)

    def _next_seq(self):
        self._seq = (self._seq + 1) % 256
        return self._seq

    def _send_event(self, build):
        message = build(self._next_seq())
        self.sent_events.append(message)
        data = self._send(message)
        self._unacked[message.seq] = [data, self.event_retries,
            time.monotonic() + self.event_retry]

    def _run(self):
        while not self._stop.is_set():
            try:
                ready, _, _ = select.select([self._master], [], [], 0.02)
                if ready:
                    data = os.read(self._master, 4096)
                    with self._lock:
                        for frame in self.parser.feed(data):
                            self._handle(frame)
                with self._lock:
                    self._tick(time.monotonic())
            except OSError as error:
                if self._stop.is_set():
                    return
                self.counters.add('io_errors')
                if error.errno not in (errno.EAGAIN, errno.EIO):
                    time.sleep(0.05)
                else:
                    time.sleep(0.02)

    # -- the controller ----------------------------------------------
    def _handle(self, frame):
        if self._drop and self._drop_command in (None, frame.command):
            self._drop -= 1
            self.counters.add('dropped_on_purpose')
            return
        try:
            message = tp.decode(frame)
        except tp.ProtocolError as error:
            self.counters.add('malformed')
            if frame.payload:
                self._send(tp.Nak(frame.seq, error.reason))
            return
        self.received.append(message)
        if self.log is not None:
            self.log(message)
        if isinstance(message, tp.Ack):
            self._unacked.pop(message.seq, None)
        elif isinstance(message, tp.Nak):
            self._unacked.pop(message.seq, None)
            self.counters.add('naks_received')
        elif isinstance(message, tp.StatusRequest):
            self._answer(tp.Status(message.seq, tuple(
                lane.snapshot() for lane in self.lanes.values())))
        elif isinstance(message, tp.Open):
            self._open(frame, message)
        else:
            self._send(tp.Nak(message.seq, 'unknown_command'))

    def _open(self, frame, message):
        lane = self.lanes.get(message.lane)
        if lane is None:
            self._send(tp.Nak(message.seq, 'bad_lane'))
            return
        if lane.fault:
            self._send(tp.Nak(message.seq, 'lane_unavailable'))
            return
        now = time.monotonic()
        key = frame.payload
        if any(k == key and now - t < self.RESEND_WINDOW
                for k, t in self._recent_orders):
            # A resend: our ACK was lost.  ACK again, do not open twice.
            self.counters.add('resent_orders')
            self._answer(tp.Ack(message.seq))
            return
        self._recent_orders.append((key, now))
        # Taken before it is acknowledged, as a controller does: whoever
        # got the ACK sees the order executed (and the lane's pending).
        self.executed.append((message.lane, message.count,
            message.direction))
        if not lane.pending:
            lane.next_due = time.monotonic() + self.passage_delay
        lane.pending += message.count
        lane.direction = message.direction
        self._answer(tp.Ack(message.seq))

    def _pass(self, lane, now):
        lane.pending -= 1
        if lane.direction == 'in':
            lane.entries += 1
        else:
            lane.exits += 1
        lane.next_due = now + self.passage_delay
        self._send_event(lambda seq: tp.Passage(seq, lane.number,
            lane.direction, lane.pending))

    def _tick(self, now):
        if self.auto_pass:
            for lane in self.lanes.values():
                if lane.pending and now >= lane.next_due:
                    self._pass(lane, now)
        for seq, entry in list(self._unacked.items()):
            data, tries, due = entry
            if now < due:
                continue
            if tries <= 0:
                del self._unacked[seq]
                self.counters.add('events_lost')
                continue
            entry[1] -= 1
            entry[2] = now + self.event_retry
            self.counters.add('event_resends')
            self._write(data)


def simulated_turnstile(lanes=8, passage_delay=1.0, noise=0.0,
        name='sim', **options):
    """Registry entry ``turnstile``/``sim``: a simulator on a pty and the
    real serial driver talking to it, so the demo runs the whole path.
    Closing the driver stops the simulator."""
    from .turnstile import TurnstileController
    sim = TurnstileSimulator(lanes=lanes, passage_delay=passage_delay,
        noise=noise).start()
    driver = TurnstileController(port=sim.path, name=name, **options)
    driver.simulator = sim
    close = driver.close

    def close_both():
        close()
        sim.stop()
    driver.close = driver.stop = close_both
    return driver


def main(argv=None):
    parser = argparse.ArgumentParser(
        description='Simulated turnstile controller on a pty.')
    parser.add_argument('--lanes', type=int, default=4)
    parser.add_argument('--first-lane', type=int, default=1)
    parser.add_argument('--delay', type=float, default=1.0,
        help='seconds between an OPEN and each passage')
    parser.add_argument('--noise', type=float, default=0.0,
        help='probability of line noise before each frame sent')
    parser.add_argument('--manual', action='store_true',
        help='people do not walk through by themselves')
    args = parser.parse_args(argv)
    sim = TurnstileSimulator(lanes=args.lanes, first_lane=args.first_lane,
        passage_delay=args.delay, auto_pass=not args.manual,
        noise=args.noise)
    sim.log = lambda message: print(f'box -> {message}', file=sys.stderr,
        flush=True)
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *a: stop.set())
    sim.start()
    print(sim.path, flush=True)
    try:
        stop.wait()
    finally:
        sim.stop()
    return 0


if __name__ == '__main__':
    sys.exit(main())
