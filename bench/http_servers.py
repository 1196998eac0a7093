#!/usr/bin/env python3
"""HTTP servers alone: CPU per request of gunicorn (gthread) and granian
(WSGI) serving the same trivial WSGI application, no database.

    python bench/http_servers.py [--clients 1,16,64,256] [--seconds 8]
        [--workers 2] [--threads 4] [--http gunicorn,granian]

What the booking engine's HTTP server costs by itself: each client POSTs a
booking-sized JSON body on a keep-alive connection and reads an
order-sized JSON answer (bench/http_app.py, which reads the body and
answers at once), as bench/reservation_rush.py's clients do. One JSON line
per server and client count: requests/s, p50/p99, the server's CPU (master
and workers) per request, the load generator's, and the rest of the
machine's (`others_pct`); a summary line last. bench/reservation_rush.py
--http measures the same servers with the engine and PostgreSQL behind
them; see bench/README.md, "The booking engine".
"""
import argparse
import asyncio
import json
import signal
import sys
import tempfile
import time

import _measure
from _measure import BenchError, percentile

BODY = json.dumps({
        'slot': 123456,
        'items': [{'ticket_type': 'ADULT', 'visitors': [
                    {'name': '王伟', 'id_type': 'resident_id',
                        'id_number': '11010119900307001X'},
                    {'name': '李芳', 'id_type': 'resident_id',
                        'id_number': '310104198512120021'}]}],
        'contact': {'name': '王伟', 'phone': '13800138000'},
        }, ensure_ascii=False).encode()
REQUEST = (b'POST /bench/scenic/v1/orders HTTP/1.1\r\nHost: 127.0.0.1\r\n'
    b'Authorization: Bearer bench\r\nAccept: application/json\r\n'
    b'Idempotency-Key: 0123456789abcdef0123456789abcdef\r\n'
    b'Content-Type: application/json\r\n'
    b'Content-Length: ' + str(len(BODY)).encode() + b'\r\n\r\n' + BODY)


def log(message):
    print(f"http_servers: {message}", file=sys.stderr, flush=True)


async def client(port, deadline, latencies, errors):
    reader, writer = await asyncio.open_connection('127.0.0.1', port)
    try:
        while time.monotonic() < deadline:
            start = time.perf_counter()
            writer.write(REQUEST)
            head = await reader.readuntil(b'\r\n\r\n')
            length = 0
            for line in head.split(b'\r\n')[1:]:
                name, _, value = line.partition(b':')
                if name.strip().lower() == b'content-length':
                    length = int(value)
            await reader.readexactly(length)
            if not head.startswith(b'HTTP/1.1 200'):
                errors.append(head[:40])
            latencies.append(time.perf_counter() - start)
    finally:
        writer.close()


def run(port, clients, seconds, meter):
    latencies, errors = [], []

    async def main():
        deadline = time.monotonic() + seconds
        await asyncio.gather(*[client(port, deadline, latencies, errors)
                for _ in range(clients)])
    with meter.measure() as cpu:
        started = time.monotonic()
        asyncio.run(main())
        duration = time.monotonic() - started
    return latencies, errors, duration, cpu


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--clients', default='1,16,64,256')
    parser.add_argument('--seconds', type=float, default=8)
    parser.add_argument('--workers', type=int, default=2)
    parser.add_argument('--threads', type=int, default=4)
    parser.add_argument('--http', default=','.join(_measure.HTTP_SERVERS))
    args = parser.parse_args(argv)
    try:
        args.clients = [int(c) for c in args.clients.split(',') if c]
    except ValueError:
        parser.error("--clients takes integers, e.g. 1,16,64")
    args.http = [h for h in args.http.split(',') if h]
    unknown = set(args.http) - set(_measure.HTTP_SERVERS)
    if unknown or not args.http:
        parser.error(f"--http takes {', '.join(_measure.HTTP_SERVERS)}")
    if min(args.clients, default=0) < 1 or args.seconds <= 0:
        parser.error("positive client counts and seconds")
    return args


def main(argv=None):
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, _measure.terminate)
    lines = []
    for http in args.http:
        with tempfile.TemporaryDirectory(prefix='scenic-http-') as tmpdir:
            conf = _measure.write_config(tmpdir, 'sqlite://', 'unused')
            server = _measure.Server(conf, tmpdir, 'bench', args.workers,
                args.threads, log, ready_path='/', app='http_app:app',
                pythonpath=_measure.ROOT / 'bench', http=http)
            try:
                server.start()
                meter = _measure.CPUMeter({'server': server.process.pid})
                run(server.port, 4, 1, meter)  # warm-up
                for clients in args.clients:
                    latencies, errors, duration, cpu = run(server.port,
                        clients, args.seconds, meter)
                    if errors:
                        raise BenchError(f"{http}: {len(errors)} answers "
                            f"were not 200, e.g. {errors[0]!r}")
                    count = len(latencies) or 1
                    line = {
                        'http': http, 'clients': clients,
                        'workers': args.workers, 'threads': args.threads,
                        'requests_per_s': round(len(latencies) / duration),
                        'p50_ms': percentile(latencies, 50, 1000, 2),
                        'p99_ms': percentile(latencies, 99, 1000, 2),
                        'server_cpu_ms_per_request': _measure.ms_per(
                            cpu, 'server', count),
                        'loadgen_cpu_ms_per_request': _measure.ms_per(
                            cpu, 'loadgen', count),
                        'server_pct': cpu['server_pct'],
                        'others_pct': cpu['others_pct'],
                        }
                    lines.append(line)
                    print(json.dumps(line), flush=True)
            finally:
                server.stop()
    summary = {'summary': True, 'server_cpu_ms_per_request': {
            http: {str(l['clients']): l['server_cpu_ms_per_request']
                for l in lines if l['http'] == http}
            for http in args.http}}
    print(json.dumps(summary), flush=True)
    return 0


if __name__ == '__main__':
    try:
        sys.exit(main())
    except BenchError as error:
        log(f"ERROR: {error}")
        sys.exit(2)
    except KeyboardInterrupt:
        sys.exit(130)
