"""The demo's gate box, as `make demo` runs it (the ``demo_box`` fixture):
the demo's annual card goes in and out at MAIN-IN / MAIN-OUT and the gate
staff see the headcount follow in the back office."""
from demo_box import until
from tryton_rpc import TrytonRPC

ANNUAL_CARD = '04A1B2C3D4E5F6'  # scripts/load_demo.py DEMO_CARDS


def test_demo_box_admits_the_demo_card(demo_server, demo_box):
    "The demo box lets the demo annual card in and out; the headcount follows"
    status = demo_box.get('/status')
    assert status['enrolled'] and status['counts']['cards'] == 2
    rpc = TrytonRPC(demo_server.url, demo_server.database, 'gate',
        'gate-demo')
    main, = rpc.model('scenic.zone', 'search', [('code', '=', 'MAIN')],
        0, None, None)

    def inside():
        return rpc.model('scenic.zone', 'read', [main],
            ['inside'])[0]['inside']
    before = inside()

    # The annual card binds its holder's face: at a re-entry the staff
    # compare the photo (whichever test took it in first).
    answer = demo_box.scan('MAIN-IN', ANNUAL_CARD, binding_confirmed=True)
    assert (answer['decision'], answer['reason']) == ('open', 'ok'), answer
    assert answer['turnstile'] == {'ok': True, 'channel': 1, 'passages': 1}
    assert until(lambda: inside() == before + 1), inside()

    answer = demo_box.scan('MAIN-OUT', ANNUAL_CARD)
    assert (answer['decision'], answer['turnstile']['channel']) == (
        'open', 3)
    assert until(lambda: inside() == before), inside()

    box, = rpc.model('scenic.gate.box', 'search_read', [], 0, None, None,
        ['online', 'alarm'])
    assert (box['online'], box['alarm']) == (True, None)
