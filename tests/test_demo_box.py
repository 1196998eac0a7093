"""The demo's gate box, as `make demo` runs it (the ``demo_box`` fixture):
the demo's annual card goes in and out at MAIN-IN / MAIN-OUT and the gate
staff see the headcount follow in the back office."""
from proteus import Model

from back_office import back_office
from demo_box import until, zone_inside


def test_demo_box_admits_the_demo_card(demo_server, demo_box):
    "The demo box lets the demo annual card in and out; the headcount follows"
    status = demo_box.get('/status')
    assert status['enrolled'] and status['counts']['cards'] == 2
    office = back_office(demo_server.url, demo_server.database, 'gate',
        'gate-demo')
    inside = zone_inside(office)
    before = inside()

    answer = demo_box.tap_annual_card('MAIN-IN')
    assert (answer['decision'], answer['reason']) == ('open', 'ok'), answer
    assert answer['turnstile'] == {'ok': True, 'channel': 1, 'passages': 1}
    assert until(lambda: inside() == before + 1), inside()

    answer = demo_box.tap_annual_card('MAIN-OUT')
    assert (answer['decision'], answer['turnstile']['channel']) == (
        'open', 3)
    assert until(lambda: inside() == before), inside()

    box, = Model.get('scenic.gate.box', config=office).find(
        [('name', '=', 'Main gate box')])     # load_demo.DEMO_BOX
    assert (box.online, box.alarm) == (True, None)
