"""The serial turnstile driver against the pty controller simulator."""
import os
import queue
import subprocess
import sys
import tty

import pytest

from drivers_helpers import wait_for
from scenic_iotbox.drivers import create, turnstile_protocol as tp
from scenic_iotbox.drivers.turnstile import (AlarmEvent, PassageEvent,
    TurnstileController, TurnstileRefused, TurnstileTimeout)


def passages(controller, n, timeout=10):
    return [controller.events.get(timeout=timeout) for _ in range(n)]


def test_open_reports_n_passages(sim, controller):
    controller.open_passages(2, 3)
    events = passages(controller, 3)
    assert all(isinstance(e, PassageEvent) for e in events)
    assert [(e.lane, e.direction) for e in events] == [(2, 'in')] * 3
    assert [e.remaining for e in events] == [2, 1, 0]
    assert list(sim.executed) == [(2, 3, 'in')]
    assert wait_for(lambda: sim.unacked() == 0)     # the box ACKed them
    status = controller.query_status()
    lane = status.lane(2)
    assert (lane.state, lane.pending, lane.entries) == ('idle', 0, 3)
    assert controller.counters['passages'] == 3


def test_exit_direction_and_status_dict(sim, controller):
    controller.open_passages(4, 1, direction='out')
    assert passages(controller, 1)[0].direction == 'out'
    result = controller.status()
    assert result['kind'] == 'turnstile' and result['ok'] is True
    lane4 = next(lane for lane in result['lanes'] if lane['lane'] == 4)
    assert lane4['exits'] == 1 and lane4['alarms'] == []


def test_more_than_255_is_split(sim, controller):
    sim.auto_pass = False
    controller.open_passages(1, 300)
    assert list(sim.executed) == [(1, 255, 'in'), (1, 45, 'in')]
    assert controller.query_status().lane(1).pending == 255  # capped byte


def test_refused_order_raises(sim, controller):
    with pytest.raises(TurnstileRefused) as info:
        controller.open_passages(9, 1)
    assert info.value.reason == 'bad_lane'
    sim.set_fault(1)
    with pytest.raises(TurnstileRefused) as info:
        controller.open_passages(1, 1)
    assert info.value.reason == 'lane_unavailable'
    assert controller.counters['naks'] == 2
    with pytest.raises(ValueError):
        controller.open_passages(1, 0)


def test_lost_order_is_resent(sim, controller):
    sim.drop_next(2)                    # the first two OPEN frames vanish
    controller.open_passages(1, 2)
    assert list(sim.executed) == [(1, 2, 'in')]
    assert controller.counters['retries'] >= 2     # more if the box is slow
    assert len(passages(controller, 2)) == 2


def test_lost_ack_does_not_open_twice(sim, controller):
    sim.auto_pass = False
    sim.lose_answers(1)                 # executed, but its ACK is lost
    controller.open_passages(3, 2)
    assert list(sim.executed) == [(3, 2, 'in')]
    assert sim.counters['resent_orders'] >= 1
    assert controller.query_status().lane(3).pending == 2


def test_silent_line_times_out_after_bounded_retries():
    master, slave = os.openpty()        # nobody answers on this line
    tty.setraw(slave)
    try:
        controller = TurnstileController(port=os.ttyname(slave),
            ack_timeout=0.05, retries=2)
        with controller:
            with pytest.raises(TurnstileTimeout):
                controller.open_passages(1, 1)
            assert controller.counters['retries'] == 2
            assert controller.counters['timeouts'] == 1
            written = os.read(master, 4096)
        frames = tp.FrameParser().feed(written)
        # three times the same frame (same SEQ): a resend, not a new order
        assert len(frames) == 3 and len(set(frames)) == 1
        assert isinstance(tp.decode(frames[0]), tp.Open)
        assert controller.status()['ok'] is False
    finally:
        os.close(master)
        os.close(slave)


def test_noise_and_corrupt_frames_are_counted_not_reported(sim, controller):
    sim.inject(b'\x00\xff\x03garbage\x02\x01')     # incl. a cut frame
    sim.inject_corrupt_frame(lane=1)
    sim.inject(tp.encode_frame(tp.PASSAGE, b'\x01\x01\x09\x00'))  # bad dir
    controller.open_passages(1, 1)
    event = passages(controller, 1)[0]
    assert (event.lane, event.remaining) == (1, 0)
    assert wait_for(lambda: controller.counters['malformed'] == 1)
    stats = controller.parser.stats()
    assert stats['corrupt_frames'] >= 2 and stats['discarded_bytes'] >= 11
    assert controller.counters['passages'] == 1
    assert controller.events.empty()
    assert controller.status()['errors'] >= 3
    # the reader thread lives on
    controller.open_passages(2, 1)
    assert passages(controller, 1)[0].lane == 2


def test_alarm_events_and_callbacks(sim, controller):
    seen = []

    def broken(event):
        seen.append(event)
        raise RuntimeError('a listener bug must not kill the reader')
    controller.add_listener(broken)
    sim.raise_alarm(2, 'tailgating')
    event = controller.events.get(timeout=10)
    assert isinstance(event, AlarmEvent)
    assert (event.lane, event.code, event.active) == (2, 'tailgating', True)
    assert controller.query_status().lane(2).state == 'alarm'
    sim.raise_alarm(2, 'tailgating', active=False)
    assert controller.events.get(timeout=10).active is False
    assert controller.counters['callback_errors'] == 2 and len(seen) == 2
    sim.walk(1)                         # nobody opened lane 1: forced
    assert controller.events.get(timeout=10).code == 'forced'


def test_resent_event_is_acked_but_reported_once(sim, controller):
    sim.auto_pass = False
    controller.open_passages(1, 1)
    sim.drop_next(1, command=tp.ACK)    # the box's ACK is lost
    sim.walk(1)
    assert passages(controller, 1)[0].lane == 1
    assert wait_for(lambda: controller.counters['duplicates'] >= 1)
    assert wait_for(lambda: sim.unacked() == 0)
    with pytest.raises(queue.Empty):
        controller.events.get(timeout=0.3)


def test_missing_port_does_not_crash():
    controller = TurnstileController(port='/dev/does-not-exist',
        ack_timeout=0.05, retries=0)
    with controller:
        assert controller.ok is False
        with pytest.raises(TurnstileTimeout):
            controller.open_passages(1, 1)
        assert controller.status()['ok'] is False


def test_loop_url_echo_is_ignored():
    controller = TurnstileController(url='loop://', ack_timeout=0.05,
        retries=1)
    with controller:
        with pytest.raises(TurnstileTimeout):
            controller.open_passages(1, 1)
        # our own OPENs came back: seen, not mistaken for answers
        assert wait_for(lambda: controller.counters['unexpected'] == 2)


def test_registry_sim_runs_the_whole_path():
    turnstile = create('turnstile', 'sim', {'passage_delay': 0.01,
        'ack_timeout': 0.3})
    try:
        turnstile.open_passages(5, 2)       # the box's call: (channel, n)
        assert len(passages(turnstile, 2)) == 2
        assert turnstile.status()['ok'] is True
    finally:
        turnstile.close()
    assert turnstile.simulator._stop.is_set()


def test_simulator_command_line():
    process = subprocess.Popen([sys.executable, '-m',
        'scenic_iotbox.drivers.turnstile_sim', '--lanes', '2', '--delay',
        '0.01'], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        path = process.stdout.readline().strip()
        assert path.startswith('/dev/')
        with TurnstileController(port=path, ack_timeout=0.5) as controller:
            controller.open_passages(2, 1)
            assert passages(controller, 1)[0].lane == 2
    finally:
        process.terminate()
        process.wait(10)
    assert 'Open(' in process.stderr.read()
