"""``GET /metrics``: the agent's metrics in the Prometheus text format.

An operator read: a token of ``[agent] auth_tokens`` (Prometheus'
``authorization`` with ``credentials_file``) or an operator certificate
(``tls_config`` with ``cert_file``/``key_file``). ``[agent]
metrics_bind_host`` serves the same text without authentication on a
separate address for a scrape network.
"""

import flask

from migplane.agent import api
from migplane.agent import metrics

bp = flask.Blueprint("metrics", __name__)


@bp.get("/metrics")
def export():
    api.body()
    return flask.Response(api.agent().metrics.exposition(), status=200,
                          content_type=metrics.CONTENT_TYPE)
