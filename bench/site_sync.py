#!/usr/bin/env python3
"""Site sync: a busy remote site's day over a slow, lossy, dropping link.

    sudo python bench/site_sync.py [--sales 10000] [--scans 40000]
        [--rate 256kbit] [--delay 0.3] [--loss 0.05] [--outage 60]
        [--outage-after 5] [--deadline 900]

The box in the site role (scenic_iotbox: Store, SiteDesk, SyncEngine,
Validator) enrols and syncs, the link drops, the window sells `--sales`
tickets from its site allotment (signed with the delegated key) and the
gates record `--scans` scans (the first 50 decided by the box's validator
on the site's codes), then the link comes back: `--rate` (tc tbf on both
ends of a veth pair into a network namespace), `--delay` s each way,
`--loss` of the proxy's chunks stalled 0.4 s (a retransmission timeout),
and down for `--outage` s, `--outage-after` s into the catch-up.  The ERP
is the iot-box tests' fake (box_fakes.FakeErp: PROTOCOL.md, stores by
nonce): this measures the box and the link, not the ERP's database.

Printed (one JSON line): time to sell, CPU per sale, time and CPU of the
catch-up, CPU per record (sales + scans), bytes of request bodies as sent
(gzip) against the records' JSON, bytes through the proxy each way, rounds,
resets, and the convergence checks (every sale and scan on the ERP once).
Exit 1 when it did not converge exactly once, 2 when it could not run
(needs root, `ip` and `tc`).
"""
import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / 'iot-box' / 'tests'), str(ROOT / 'iot-box'),
    str(Path(__file__).resolve().parent)]

import _measure  # noqa: E402

_measure.ensure_venv('scenic_iotbox', 'scenic_common')


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--sales', type=int, default=10000)
    parser.add_argument('--scans', type=int, default=40000)
    parser.add_argument('--rate', default='256kbit')
    parser.add_argument('--delay', type=float, default=0.3)
    parser.add_argument('--loss', type=float, default=0.05)
    parser.add_argument('--outage', type=float, default=60.0)
    parser.add_argument('--outage-after', type=float, default=5.0)
    parser.add_argument('--deadline', type=float, default=900.0)
    args = parser.parse_args()
    from shaped_link import unavailable
    reason = unavailable()
    if reason:
        print(f'site_sync: cannot shape a link here: {reason}',
            file=sys.stderr)
        return 2
    from site_day import run_day
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory() as tmp:
        report = run_day(Path(tmp), sales=args.sales, scans=args.scans,
            rate=args.rate, delay=args.delay, loss=args.loss,
            outage=args.outage, outage_after=args.outage_after,
            deadline=args.deadline,
            log=lambda m: print(m, file=sys.stderr))
    converged = (report['left'] == {'sales': 0, 'scans': 0}
        and report['erp_sales_nonces'] == report['box_sales_nonces']
        and report['erp_scan_nonces'] == report['box_scan_nonces'])
    records = args.sales + args.scans
    result = {k: v for k, v in report.items() if not k.endswith('nonces')}
    result.update({
        'converged_exactly_once': converged,
        'sync_cpu_ms_per_record': round(
            report['sync_cpu_s'] * 1000 / records, 3),
        # through the proxy: what crossed the link (headers, resends and
        # answers included); body_bytes_sent also counts bodies the outage
        # cut before they got through
        'wire_bytes_up': report['link']['up_bytes'],
        'wire_bytes_down': report['link']['down_bytes'],
        'wire_bytes_per_record': round((report['link']['up_bytes']
            + report['link']['down_bytes']) / records, 1),
        'compression': round(report['raw_json_bytes']
            / max(report['link']['up_bytes'], 1), 1),
        'loadavg_before': [round(x, 2) for x in load_before],
        'loadavg_after': [round(x, 2) for x in os.getloadavg()],
        'cpus': os.cpu_count(),
        'at': time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime()),
        })
    print(json.dumps(result))
    print(f"site day: {args.sales} sales + {args.scans} scans over "
        f"{args.rate}, {args.delay} s, {args.loss:.0%} stalls, "
        f"{args.outage:.0f} s outage: synced in {report['sync_s']} s, "
        f"{result['wire_bytes_up'] / 1024:.0f} KiB up, "
        f"{result['wire_bytes_down'] / 1024:.0f} KiB down "
        f"(×{result['compression']} smaller than the JSON), "
        f"{result['sync_cpu_ms_per_record']} ms CPU/record; "
        f"exactly once: {converged}", file=sys.stderr)
    return 0 if converged else 1


if __name__ == '__main__':
    sys.exit(main())
