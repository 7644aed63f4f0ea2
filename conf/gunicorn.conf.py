# gunicorn configuration for dmr: `gunicorn -c conf/gunicorn.conf.py wsgi:app`.
# Values come from dmr's settings (conf/dmr.toml, DMR_* environment); see dmr_core/serving.py.
from dmr_core.serving import HOOKS, gunicorn_settings

globals().update(gunicorn_settings())
globals().update(HOOKS)
wsgi_app = "wsgi:app"
