"""Serving the app with cheroot, over HTTPS when a certificate is configured."""

import logging
import threading

from cheroot import wsgi
from cheroot.ssl import builtin

LOG = logging.getLogger(__name__)


class AgentServer:
    """A cheroot WSGI server for one app; ``port=0`` picks a free port."""

    def __init__(self, app, host, port, threads=16, cert_file=None, key_file=None):
        self.server = wsgi.Server((host, port), app, numthreads=threads,
                                  server_name="migplane-agent", timeout=30,
                                  shutdown_timeout=5)
        # How often the accept loop looks up: bounds how long stop() takes.
        self.server.expiration_interval = 0.1
        if cert_file and key_file:
            self.server.ssl_adapter = builtin.BuiltinSSLAdapter(cert_file, key_file)
        self.scheme = "https" if cert_file and key_file else "http"
        self._thread = None

    def prepare(self):
        """Bind the socket (raises OSError naming the address when it cannot)."""
        self.server.prepare()
        return self

    @property
    def address(self):
        host, port = self.server.bind_addr[:2]
        return host, port

    @property
    def url(self):
        host, port = self.address
        if ":" in host:
            host = "[%s]" % host
        return "%s://%s:%d" % (self.scheme, host, port)

    def serve_forever(self):
        LOG.info("migplane-agent serving on %s", self.url)
        self.server.serve()

    def start(self):
        """Serve in a background thread (tests, the demo)."""
        self.prepare()
        self._thread = threading.Thread(target=self.serve_forever, daemon=True,
                                        name="agent-server")
        self._thread.start()
        return self

    def stop(self):
        self.server.stop()
        if self._thread is not None:
            self._thread.join(10)
