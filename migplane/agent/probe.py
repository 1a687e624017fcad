"""A one-shot TCP probe of the migration plane, for ``migplane check``.

The destination listens briefly on its inbound address; the source dials
it, as the hypervisor will, and sends a random nonce. Only the expected
nonce counts, so a stray connection cannot pass the check. Nothing listens
once the probe is over.
"""

import logging
import secrets
import socket
import threading
import time

from migplane.core import address

LOG = logging.getLogger(__name__)
MAX_OPEN = 4


class Probe:
    def __init__(self, host, timeout):
        self.id = secrets.token_hex(8)
        self.nonce = secrets.token_hex(16)
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self._sock = socket.socket(family, socket.SOCK_STREAM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if family == socket.AF_INET6:
            self._sock.bind(socket.getaddrinfo(host, 0, family)[0][4])
        else:
            self._sock.bind((host, 0))
        self._sock.listen(4)
        self._sock.settimeout(0.2)
        self.address = host
        self.port = self._sock.getsockname()[1]
        self.deadline = time.monotonic() + timeout
        self.received_from = None
        self.done = threading.Event()
        threading.Thread(target=self._serve, daemon=True, name="probe-%s" % self.id).start()

    def _serve(self):
        try:
            while time.monotonic() < self.deadline and self.received_from is None:
                try:
                    conn, peer = self._sock.accept()
                except TimeoutError:
                    continue
                with conn:
                    conn.settimeout(2)
                    try:
                        data = conn.recv(64)
                    except OSError:
                        continue
                    if data.strip() == self.nonce.encode():
                        self.received_from = peer[0]
                        conn.sendall(b"ok\n")
        finally:
            self._sock.close()
            self.done.set()

    def to_dict(self):
        return {"id": self.id, "address": self.address, "port": self.port,
                "payload": self.nonce, "received": self.received_from is not None,
                "received_from": self.received_from, "open": not self.done.is_set()}


class Probes:
    def __init__(self):
        self._probes = {}
        self._lock = threading.Lock()

    def listen(self, host, timeout):
        with self._lock:
            self._probes = {k: p for k, p in self._probes.items()
                            if not p.done.is_set() or p.deadline > time.monotonic() - 300}
            if sum(not p.done.is_set() for p in self._probes.values()) >= MAX_OPEN:
                raise OSError("%d probes are already open" % MAX_OPEN)
            probe = Probe(host, timeout)
            self._probes[probe.id] = probe
        LOG.info("Probe %s listening on %s port %d for %.0f s", probe.id, host,
                 probe.port, timeout)
        return probe

    def get(self, probe_id):
        with self._lock:
            return self._probes.get(probe_id)


def connect(host, port, payload, timeout=5.0):
    """Dial ``host:port`` and send ``payload``; report what happened, never raise."""
    parsed = address.parse_host(host, field="address", allow_port=False)
    started = time.monotonic()
    try:
        with socket.create_connection((parsed.host, port), timeout=timeout) as sock:
            local = sock.getsockname()[0]
            sock.sendall(payload.encode() + b"\n")
            answer = sock.recv(16)
        return {"connected": True, "acknowledged": answer.strip() == b"ok",
                "local_address": local, "error": None,
                "seconds": round(time.monotonic() - started, 3)}
    except OSError as err:
        return {"connected": False, "acknowledged": False, "local_address": None,
                "error": "%s: %s" % (type(err).__name__, err),
                "seconds": round(time.monotonic() - started, 3)}
