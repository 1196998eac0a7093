"""Fixtures of the driver tests (run: pytest iot-box/tests/drivers)."""
import pytest


def pytest_configure(config):
    config.addinivalue_line('markers', 'pcsc_integration: needs pcscd and '
        'vsmartcard-vpcd (Debian packages); skipped without them')


@pytest.fixture
def sim():
    from scenic_iotbox.drivers.turnstile_sim import TurnstileSimulator
    simulator = TurnstileSimulator(lanes=4, passage_delay=0.01,
        event_retry=0.2).start()
    yield simulator
    simulator.stop()


@pytest.fixture
def controller(sim):
    from scenic_iotbox.drivers.turnstile import TurnstileController
    driver = TurnstileController(port=sim.path, ack_timeout=0.5, retries=3)
    yield driver
    driver.close()
