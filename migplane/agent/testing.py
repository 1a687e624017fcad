"""Running agents in-process, for tests and the fake-driver demo.

:class:`WorldFacts` stands in for :mod:`hostfacts` on a fake driver's
simulated host: its interfaces (``mgmt0``, ``mig0``), routes and byte
counters come from the :class:`FakeWorld`, so ``check`` and the per-plane
summary can be exercised without touching the machine's own network.
"""

import time
from pathlib import Path

from migplane import netlink
from migplane.agent import service
from migplane.core import address
from migplane.core import events

IFNAMES = {"management": "mgmt0", "migration": "mig0"}
#: The operator token of agents started by tests (at least 16 characters).
TOKEN = "unit-test-token-0123456789"  # noqa: S105 - a test fixture, not a secret


class WorldFacts:
    """Host facts of fake-world host ``host``; ``routes`` may override a route."""

    def __init__(self, world, host):
        self.world = world
        self.host = host
        self.route_overrides = {}

    def _host(self):
        return self.world.hosts[self.host]

    def interfaces(self):
        h = self._host()
        result = []
        for plane, ifname in IFNAMES.items():
            addrs = [a for a, p in h.addresses.items() if p == plane]
            result.append({
                "ifname": ifname, "operstate": "UP" if h.link_up[plane] else "DOWN",
                "up": h.link_up[plane],
                "addresses": [{"address": a, "prefixlen": 64 if ":" in a else 24,
                               "family": "inet6" if ":" in a else "inet",
                               "scope": "global"} for a in sorted(addrs)],
                "tx_bytes": int(h.bytes_sent[plane]), "rx_bytes": 0})
        return result

    def counters(self):
        return netlink.counters_of(self.interfaces())

    def routes(self):
        return []

    def route_to(self, target):
        host = address.parse_host(target, field="to", allow_port=False).host
        if host in self.route_overrides:
            dev = self.route_overrides[host]
        else:
            peer, plane = self.world.resolve(host)
            if peer is None:
                return {"to": host, "dev": None, "src": None, "gateway": None,
                        "error": "Network is unreachable"}
            dev = IFNAMES[plane]
        plane = next(p for p, i in IFNAMES.items() if i == dev)
        src = next((a for a, p in self._host().addresses.items() if p == plane), None)
        return {"to": host, "dev": dev, "src": src, "gateway": None, "error": None}


def paced(world, real_s=0.002):
    """A flow ``sleep`` on the world's clock that also lets real time pass a little,
    so other threads (a CLI polling, a second migration) see a migration run."""
    def sleep(seconds):
        time.sleep(real_s)
        world.clock.sleep(seconds)
    return sleep


class TestPKI:
    """A throw-away CA under ``directory`` issuing each host's agent certificate once
    (:meth:`renew` issues it again, in place, as an operator rotating it would)."""

    def __init__(self, directory, addresses=("127.0.0.1", "::1")):
        from migplane import pki
        self._pki = pki
        self.dir = Path(directory)
        self.addresses = list(addresses)
        self.ca_key, self.ca_cert = pki.ensure_ca(self.dir / "ca", "unit-tests CA", days=30)
        self.ca_file = str(self.ca_cert)
        self._issued = {}

    def issue(self, hostname):
        """``(cert_file, key_file)`` of ``hostname`` (SAN: its name and the addresses)."""
        if hostname not in self._issued:
            self.renew(hostname)
        return self._issued[hostname]

    def renew(self, hostname, days=30):
        """A new certificate and key for ``hostname`` in the same files; its serial."""
        cert, key = self._pki.issue_agent(self.ca_key, self.ca_cert, self.dir / hostname,
                                          hostname, self.addresses, days=days)
        self._issued[hostname] = (str(cert), str(key))
        from migplane.agent import tls
        return tls.read_certificate(cert).serial

    def options(self, hostname):
        """The ``[agent]`` options that give ``hostname``'s agent its certificate."""
        cert, key = self.issue(hostname)
        return {"cert_file": cert, "key_file": key, "ca_file": self.ca_file}


def introduce(locals_):
    """Make every one of ``locals_`` still serving a peer of every other (an agent
    restarted under the same host name replaces the stopped one)."""
    serving = [local for local in locals_ if not local.stopped]
    for local in serving:
        for other in serving:
            if other is not local:
                local.agent.peers[other.agent.hostname] = other.url


class LocalAgent:
    """An agent serving on ``host:port`` in a thread of this process."""

    def __init__(self, conf, driver=None, facts=None, host="127.0.0.1", port=0):
        from migplane.agent import main
        kwargs = {"facts": facts} if facts is not None else {}
        self.agent = service.Agent(conf, driver=driver, **kwargs)
        self.server = main.server_for(self.agent, host, port)
        self.stopped = False

    @property
    def url(self):
        return self.server.url

    def start(self):
        self.server.start()
        return self

    def stop(self):
        self.stopped = True
        self.agent.reconciler.stop()
        self.server.stop()


def wait_for(client, migration_id, timeout=60.0, poll=0.02):
    """Poll an agent until migration ``migration_id`` ends; return its record."""
    deadline = time.monotonic() + timeout
    while True:
        record = client.get("/v1/migrations/%s" % migration_id)
        if record["status"] not in events.ACTIVE:
            return record
        if time.monotonic() > deadline:
            raise AssertionError("migration %s still %s after %.0f s (step %s)" % (
                migration_id, record["status"], timeout, record.get("step")))
        time.sleep(poll)


def request(local, method, path, token=TOKEN, body=None, raw=None, headers=None,
            peer=None):
    """One raw HTTP request to ``local``: as an operator (``token``) or as the agent
    ``peer`` (its certificate, no token). ``body`` is sent as given (a plain
    body is read as the agent's own version). Returns the ``requests`` response,
    whose ``json()`` is the answer's fields (``envelope()``: the body as sent)."""
    import json

    import requests
    headers = dict(headers or {})
    if token and peer is None:
        headers["Authorization"] = "Bearer %s" % token
    data = raw if raw is not None else (json.dumps(body) if body is not None else None)
    if data is not None:
        headers.setdefault("Content-Type", "application/json")
    cert = None if peer is None else (peer.agent.options.cert_file,
                                      peer.agent.options.key_file)
    return _Answer(requests.request(method, local.url + path, data=data, headers=headers,
                                    timeout=10, cert=cert))


class _Answer:
    """A ``requests`` response whose ``json()`` unwraps the versioned answer."""

    def __init__(self, response):
        self._response = response

    def __getattr__(self, name):
        return getattr(self._response, name)

    def envelope(self):
        return self._response.json()

    def json(self):
        from migplane.agent import wire

        return wire.load_answer(self._response.json())


def peer_step(source, destination, name, body, migration_id="m1"):
    """Destination step ``name`` called by agent ``source``, holding a slot there."""
    if destination.agent.slots.get(migration_id) is None:
        destination.agent.slots.lease(migration_id, source.agent.hostname,
                                      body.get("instance", "vm1"))
    return request(destination, "POST", "/v1/steps/%s" % name, peer=source,
                   body=dict(body, migration_id=migration_id))


class HostilePeer:
    """A malicious agent for tests: it holds a valid certificate of the test CA for
    ``hostname`` (so peers accept it as that host) and answers what ``tamper``
    makes of the real answers of ``upstream`` (the agent it stands in front of,
    called with ``caller``'s certificate, the host the hostile one is a peer of).

    ``tamper(method, path, status, data)`` returns None (answer as upstream did),
    ``(status, data)`` to answer other JSON, or ``bytes``: a raw HTTP answer,
    written as it is (``b""`` closes the connection). ``trickle`` seconds are
    slept between raw bytes. ``seen`` lists the ``(method, path, body)`` called.
    """

    def __init__(self, pki, hostname, upstream, caller, tamper=None, trickle=0.0):
        import http.server
        import json
        import ssl
        import threading

        import requests

        peer = self
        self.hostname = hostname
        self.tamper = tamper or (lambda method, path, status, data: None)
        self.trickle = trickle
        self.seen = []
        cert, key = pki.issue(hostname)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(cert, key)
        context.load_verify_locations(pki.ca_file)
        context.verify_mode = ssl.CERT_OPTIONAL

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.0"

            def log_message(self, *args):
                pass

            def _any(self):
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                peer.seen.append((self.command, self.path, body))
                upstream_answer = requests.request(
                    self.command, upstream.url + self.path, data=body or None,
                    headers={"Content-Type": "application/json"}, timeout=30,
                    cert=(caller.agent.options.cert_file, caller.agent.options.key_file),
                    verify=pki.ca_file)
                status, data = upstream_answer.status_code, upstream_answer.json()
                changed = peer.tamper(self.command, self.path, status, data)
                if isinstance(changed, bytes):
                    step = 1 if peer.trickle else len(changed) or 1
                    for i in range(0, len(changed), step):
                        self.wfile.write(changed[i:i + step])
                        self.wfile.flush()
                        time.sleep(peer.trickle)
                    return
                if changed is not None:
                    status, data = changed
                payload = json.dumps(data).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            do_GET = do_POST = do_PUT = do_DELETE = _any

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.server.socket = context.wrap_socket(self.server.socket, server_side=True)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self):
        return "https://127.0.0.1:%d" % self.server.server_address[1]

    def stop(self):
        self.server.shutdown()
        self.server.server_close()
