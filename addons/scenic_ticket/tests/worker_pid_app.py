"""trytond's WSGI application answering with the worker's process id in
`X-Worker-Pid`: test_cache_sync.py sees which gunicorn worker answered.
Served from this directory (gunicorn --pythonpath), not imported by the
module."""
import os

from trytond.application import app as trytond_app


def app(environ, start_response):
    def start(status, headers, exc_info=None):
        return start_response(status,
            list(headers) + [('X-Worker-Pid', str(os.getpid()))], exc_info)
    return trytond_app(environ, start)
