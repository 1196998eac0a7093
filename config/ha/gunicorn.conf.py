# gunicorn settings for trytond on a Patroni cluster (bench/failover.py
# and tests/test_failover.py start gunicorn with `--config` this file).
#
# trytond's pool (psycopg_pool) reconnects after a failed attempt with an
# exponential backoff: 1, 2, 4, 8, 16 s...  A failover takes Patroni's ttl
# (~20 s), so the attempt after the promotion could come ~10 s late and
# every request waits for it.  Retry every half second instead: a failed
# attempt against a dead or read-only host costs a few milliseconds.
import psycopg_pool.base

psycopg_pool.base.AttemptWithBackoff.INITIAL_DELAY = 0.5
psycopg_pool.base.AttemptWithBackoff.DELAY_BACKOFF = 1.0

# Caches: trytond clears the caches of the other processes at once (through
# PostgreSQL LISTEN/NOTIFY) only with `[cache] clean_timeout = 0`; otherwise
# a worker keeps quoting a price edited in sao for up to clean_timeout
# seconds.  The configuration files set it (config/trytond-postgresql.conf,
# bench/_measure.py); a file without [cache] gets it from the environment,
# and a worker whose configuration says otherwise refuses to start.
import os  # noqa: E402

os.environ.setdefault('TRYTOND_CACHE__CLEAN_TIMEOUT', '0')


def post_worker_init(worker):
    from trytond import config
    uri = config.get('database', 'uri') or ''
    timeout = config.getint('cache', 'clean_timeout')
    if uri.startswith(('postgresql', 'postgres:')) and timeout:
        worker.log.error("[cache] clean_timeout = %s: the workers would "
            "answer with stale prices for up to that many seconds after a "
            "change; set it to 0 on PostgreSQL", timeout)
        # gunicorn stops (instead of restarting the worker) on this code
        raise SystemExit(3)
