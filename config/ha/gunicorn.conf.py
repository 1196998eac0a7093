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
