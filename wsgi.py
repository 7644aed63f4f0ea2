"""WSGI entry point: ``gunicorn -c conf/gunicorn.conf.py wsgi:app``."""

from dmr_core.app import create_app

app = create_app()
