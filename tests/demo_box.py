"""The demo's gate box as the tests talk to it (fixture ``demo_box`` in
conftest.py), and ``until``, the bounded wait of the cross-module tests."""
import json
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

ANNUAL_CARD = '04A1B2C3D4E5F6'  # scripts/load_demo.py DEMO_CARDS
DEMO_BOX_STAFF_TOKEN = 'demo-box-staff'     # scripts/demo.py


@dataclass(frozen=True)
class DemoBox:
    "The demo's box: url of its local API, its log."
    url: str
    log: Path

    def get(self, path):
        "GET <path> as JSON, None if the box does not answer."
        try:
            with urllib.request.urlopen(self.url + path, timeout=5) as answer:
                return json.loads(answer.read())
        except (OSError, ValueError):
            return None

    def scan(self, gate, data, medium='rfid', lane=1, **extra):
        "POST /scan: the box's answer."
        headers = {'Content-Type': 'application/json'}
        if 'binding_confirmed' in extra:        # the staff screen's verdict
            headers['Authorization'] = f'Bearer {DEMO_BOX_STAFF_TOKEN}'
        request = urllib.request.Request(f'{self.url}/scan', method='POST',
            data=json.dumps(dict(extra, gate=gate, lane=lane, medium=medium,
                    data=data)).encode(), headers=headers)
        with urllib.request.urlopen(request, timeout=30) as answer:
            return json.loads(answer.read())


    def tap_annual_card(self, gate):
        """The demo's annual card at `gate`, lane 1. It binds its holder's
        face: at a re-entry the staff have compared the photo (whichever
        test took the card in first)."""
        return self.scan(gate, ANNUAL_CARD, binding_confirmed=True)


def zone_inside(office, code='MAIN'):
    """A function giving the people inside zone `code` as the back office
    (a proteus configuration) reads them now."""
    from proteus import Model
    Zone = Model.get('scenic.zone', config=office)
    zone, = Zone.find([('code', '=', code)])
    return lambda: Zone(zone.id).inside


def until(condition, timeout=30, interval=0.2):
    "condition()'s first truthy value within timeout, else its last value."
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(interval)
    return condition()
