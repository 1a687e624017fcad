"""The agent's HTTP(S) server: one socket can never stall the others.

The accept loop only accepts. Each connection gets its own thread (up to
``max_connections``; beyond that new connections are closed at once), which
does the TLS handshake, then reads the request line, the headers (at most
``max_header_bytes``) and the whole body (at most ``max_body_bytes``; a
chunked body is decoded here, and a larger one is answered 413) within one
total deadline, ``request_timeout``: a peer that connects and says nothing,
or trickles a byte at a time, holds only its own thread and loses it at the
deadline. Only then is the WSGI app (which authenticates) run, and the
connection closed after one response (HTTP/1.0 semantics, no keep-alive).

Until the app has authenticated it (or its verified client certificate names
a peer or an operator), a connection is on the budget of its
client address (``max_unauthenticated_per_address``: one more from that
address closes its oldest unauthenticated one) and may be culled: when
``max_connections`` are open, a new connection closes the oldest one that has
not authenticated, so clients that hold connections open without a valid
credential never lock out those that have one. ``Expect: 100-continue`` is
never answered: a body is read before anything is said to an unknown client.
"""

import errno
import io
import json
import logging
import socket
import ssl
import threading
import time
import urllib.parse
from wsgiref import handlers

from migplane.agent import errors

LOG = logging.getLogger(__name__)
WRITE_TIMEOUT = 60.0
_TOKEN = frozenset("!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyz"
                   "ABCDEFGHIJKLMNOPQRSTUVWXYZ")


class Reject(Exception):
    """A request answered by the server itself (400, 408, 413, 431, 501)."""

    def __init__(self, status, reason):
        super().__init__(reason)
        self.status = status
        self.reason = reason


class _Closed(Exception):
    """The peer went away (or the deadline cut it off) before a whole request."""


_PHRASES = {400: "Bad Request", 408: "Request Timeout", 413: "Content Too Large",
            431: "Request Header Fields Too Large", 501: "Not Implemented",
            503: "Service Unavailable"}


def _head(rfile, limit):
    """The request line and header lines, at most ``limit`` bytes in all."""
    lines, total = [], 0
    while True:
        line = rfile.readline(limit - total + 1)
        if not line:
            raise _Closed()
        total += len(line)
        if total > limit or not line.endswith(b"\n"):
            raise Reject(431, "the request line and headers are larger than %d bytes"
                         % limit)
        if line in (b"\r\n", b"\n"):
            if lines:
                return lines
            continue
        lines.append(line)


def _parse(lines):
    try:
        request_line = lines[0].decode("ascii").rstrip("\r\n")
    except UnicodeDecodeError:
        raise Reject(400, "the request line is not ASCII")
    parts = request_line.split(" ")
    if len(parts) != 3 or parts[2] not in ("HTTP/1.0", "HTTP/1.1") or not parts[0] \
            or set(parts[0]) - _TOKEN or not parts[1].startswith("/"):
        raise Reject(400, "malformed request line")
    headers = []
    for raw in lines[1:]:
        text = raw.decode("latin-1").rstrip("\r\n")
        name, sep, value = text.partition(":")
        if not sep or not name or set(name) - _TOKEN:
            raise Reject(400, "malformed header line")
        if any(c in value for c in "\r\n\x00"):
            raise Reject(400, "a header value holds a control character")
        headers.append((name.lower(), value.strip(" \t")))
    return parts[0], parts[1], parts[2], headers


def _header(headers, name):
    values = [v for n, v in headers if n == name]
    if len(set(values)) > 1:
        raise Reject(400, "conflicting %s headers" % name)
    return values[0] if values else None


def _chunked(rfile, max_body, header_limit):
    body = bytearray()
    while True:
        line = rfile.readline(1026)
        if not line:
            raise _Closed()
        if not line.endswith(b"\n"):
            raise Reject(400, "a chunk size line is too long")
        size_text = line.split(b";", 1)[0].strip()
        try:
            if not size_text or size_text.startswith((b"-", b"+", b"0x")):
                raise ValueError
            size = int(size_text, 16)
        except ValueError:
            raise Reject(400, "malformed chunk size %r" % size_text[:20])
        if size == 0:  # then trailer lines, bounded like the headers, up to a blank one
            trailer = 0
            while True:
                line = rfile.readline(header_limit + 1)
                trailer += len(line)
                if not line:
                    raise _Closed()
                if trailer > header_limit:
                    raise Reject(431, "the trailer is larger than %d bytes" % header_limit)
                if line in (b"\r\n", b"\n"):
                    return bytes(body)
        if len(body) + size > max_body:
            raise Reject(413, "the request body is larger than %d bytes" % max_body)
        chunk = rfile.read(size)
        if len(chunk) < size:
            raise _Closed()
        body += chunk
        if rfile.readline(3) not in (b"\r\n", b"\n"):
            raise Reject(400, "a chunk is not followed by CRLF")


def read_request(rfile, wfile, max_header_bytes, max_body_bytes):
    """``(method, target, version, headers, body)`` of one request, or Reject/_Closed."""
    method, target, version, headers = _parse(_head(rfile, max_header_bytes))
    length = _header(headers, "content-length")
    coding = _header(headers, "transfer-encoding")
    if coding is not None and length is not None:
        raise Reject(400, "both Content-Length and Transfer-Encoding")
    if coding is not None and coding.lower() != "chunked":
        raise Reject(501, "transfer coding %r is not supported" % coding[:40])
    if length is not None and (not length.isascii() or not length.isdigit()):
        raise Reject(400, "Content-Length %r is not a number" % length[:40])
    if length is not None and int(length) > max_body_bytes:
        raise Reject(413, "the request body is larger than %d bytes" % max_body_bytes)
    if coding is not None:
        body = _chunked(rfile, max_body_bytes, max_header_bytes)
    elif length:
        body = rfile.read(int(length))
        if len(body) < int(length):
            raise _Closed()
    else:
        body = b""
    headers = [(n, v) for n, v in headers if n not in ("transfer-encoding",
                                                       "content-length", "expect")]
    return method, target, version, headers, body


def environ_for(method, target, version, headers, body, server, client, scheme,
                peer_cert, authenticated=None):
    path, _, query = target.partition("?")
    environ = {
        "REQUEST_METHOD": method, "SCRIPT_NAME": "",
        "PATH_INFO": urllib.parse.unquote(path, encoding="latin-1"),
        "QUERY_STRING": query, "SERVER_NAME": str(server[0]),
        "SERVER_PORT": str(server[1]), "SERVER_PROTOCOL": version,
        "REMOTE_ADDR": str(client[0]), "REMOTE_PORT": str(client[1]),
        "CONTENT_LENGTH": str(len(body)), "wsgi.url_scheme": scheme,
        "migplane.peer_cert": peer_cert,
        # the app calls it once the caller proved who it is
        "migplane.authenticated": authenticated or (lambda: None),
    }
    for name, value in headers:
        if name == "content-type":
            environ["CONTENT_TYPE"] = value
            continue
        if "_" in name:  # never let 'x_auth_token' pose as 'x-auth-token'
            continue
        key = "HTTP_" + name.upper().replace("-", "_")
        environ[key] = "%s,%s" % (environ[key], value) if key in environ else value
    return environ


def _reply_error(wfile, status, reason):
    err = errors.AgentError(reason=reason)
    payload = json.dumps(errors.to_body(err, status)).encode()
    wfile.write(("HTTP/1.0 %d %s\r\nContent-Type: application/json\r\n"
                 "Content-Length: %d\r\nConnection: close\r\n\r\n"
                 % (status, _PHRASES.get(status, "Error"), len(payload))).encode()
                + payload)
    wfile.flush()


def _drain(conn, limit=4 * 1024 * 1024, seconds=2.0, pause=0.2):
    """Read (and drop) what the client still sends, a little, so that closing the
    socket does not reset the connection before the client reads our answer:
    until it pauses for ``pause`` s, or ``limit`` bytes or ``seconds`` pass."""
    deadline = time.monotonic() + seconds
    try:
        while limit > 0 and time.monotonic() < deadline:
            conn.settimeout(pause)
            chunk = conn.recv(65536)
            if not chunk:
                return
            limit -= len(chunk)
    except (OSError, ssl.SSLError, ValueError):
        pass


class _Handler(handlers.SimpleHandler):
    server_software = "migplane-agent"
    os_environ = {}  # the agent's own environment never reaches the app

    def log_exception(self, exc_info):
        LOG.error("Error while writing a response", exc_info=exc_info)


class _Conn:
    """One open connection, as the accept loop accounts for it."""

    __slots__ = ("holder", "address", "opened", "authenticated", "culled")

    def __init__(self, holder, address):
        self.holder = holder
        self.address = address
        self.opened = time.monotonic()
        self.authenticated = False
        self.culled = False


class AgentServer:
    """Serve ``app`` on ``host:port`` (``port=0`` picks a free port); see the module doc."""

    def __init__(self, app, host, port, ssl_context=None, request_timeout=10.0,
                 max_connections=512, max_header_bytes=16384, max_body_bytes=1024 * 1024,
                 max_unauthenticated_per_address=64, known_certificate=None):
        self.app = app
        self.host = host
        self.port = port
        self.ssl_context = ssl_context
        self.scheme = "https" if ssl_context is not None else "http"
        self.request_timeout = request_timeout
        self.max_connections = max_connections
        self.max_header_bytes = max_header_bytes
        self.max_body_bytes = max_body_bytes
        self.max_unauthenticated_per_address = max_unauthenticated_per_address
        #: Whether a verified client certificate already proves a caller the app
        #: accepts (a peer's, an operator's): its connection leaves the budget then.
        self.known_certificate = known_certificate or (lambda cert: False)
        self._conns = {}  # id(holder) -> _Conn
        self.culled = 0
        self.socket = None
        self._active = 0
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._thread = None
        self._deadlines = {}  # socket holder -> monotonic deadline of its request read

    def prepare(self):
        """Bind the socket (raises OSError naming the address when it cannot)."""
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        self.socket = socket.create_server((self.host, self.port), family=family,
                                           backlog=1024)
        self.socket.settimeout(0.2)  # accept() wakes up to notice stop()
        self._bound = self.socket.getsockname()[:2]
        return self

    @property
    def address(self):
        """Where it listens (the bound port, still known once stopped)."""
        if self.socket is None:  # not bound yet: what it will bind
            return self.host, self.port
        return self._bound

    @property
    def url(self):
        host, port = self.address
        if ":" in host:
            host = "[%s]" % host
        return "%s://%s:%d" % (self.scheme, host, port)

    def set_ssl_context(self, context):
        """Serve new connections with ``context`` (a rotated certificate); the
        connections already open keep the one they were accepted with."""
        with self._lock:
            self.ssl_context = context

    @property
    def active(self):
        """Connections being served now."""
        return self._active

    def serve_forever(self):
        LOG.info("migplane-agent serving on %s", self.url)
        threading.Thread(target=self._reap, daemon=True, name="agent-reaper").start()
        while not self._stopping.is_set():
            try:
                conn, client = self.socket.accept()
            except TimeoutError:
                continue  # look at _stopping again
            except OSError as err:
                if self._stopping.is_set():
                    break
                if err.errno in (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM):
                    LOG.warning("Cannot accept a connection: %s", err)
                    self._stopping.wait(0.1)
                continue
            holder = [conn]
            with self._lock:
                victim = self._make_room(client[0])
                full = self._active >= self.max_connections
                if not full:
                    self._active += 1
                    self._conns[id(holder)] = _Conn(holder, client[0])
            if victim is not None:
                _shutdown(victim.holder)
            if full:
                LOG.warning("%d connections open, all authenticated: closing the one "
                            "from %s", self._active, client[0])
                conn.close()
                continue
            threading.Thread(target=self._serve, args=(holder, client), daemon=True,
                             name="agent-conn").start()

    def _make_room(self, address):
        """Cull (under the lock) the connection a new one from ``address`` replaces:
        that address's oldest unauthenticated one when it holds its share, else
        the oldest unauthenticated one when every connection is taken."""
        waiting = [c for c in self._conns.values() if not c.authenticated and not c.culled]
        mine = [c for c in waiting if c.address == address]
        victim = None
        if len(mine) >= self.max_unauthenticated_per_address:
            victim = min(mine, key=lambda c: c.opened)
        elif self._active >= self.max_connections and waiting:
            victim = min(waiting, key=lambda c: c.opened)
        if victim is not None:
            victim.culled = True
            self._active -= 1
            self.culled += 1
            LOG.info("Closing an unauthenticated connection from %s to let a new one in",
                     victim.address)
        return victim

    def _authenticated(self, holder):
        with self._lock:
            found = self._conns.get(id(holder))
            if found is not None:
                found.authenticated = True

    def _reap(self):
        """One thread cuts off every connection past its request-read deadline."""
        while not self._stopping.wait(0.1):
            now = time.monotonic()
            with self._lock:
                late = [k for k, (deadline, _) in self._deadlines.items() if deadline <= now]
                holders = [self._deadlines.pop(k)[1] for k in late]
            for holder in holders:
                _shutdown(holder)

    def _watch(self, holder):
        with self._lock:
            self._deadlines[id(holder)] = (time.monotonic() + self.request_timeout, holder)

    def _unwatch(self, holder):
        with self._lock:
            self._deadlines.pop(id(holder), None)

    def _serve(self, holder, client):
        conn = holder[0]
        self._watch(holder)
        rfile = wfile = None
        try:
            conn.settimeout(self.request_timeout)
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            peer_cert = None
            with self._lock:
                context = self.ssl_context
            if context is not None:
                conn = holder[0] = context.wrap_socket(conn, server_side=True)
                peer_cert = conn.getpeercert() or None
                if peer_cert is not None and self.known_certificate(peer_cert):
                    self._authenticated(holder)  # a peer's (or operator's) certificate
            rfile = conn.makefile("rb")
            wfile = conn.makefile("wb")
            try:
                request = read_request(rfile, wfile, self.max_header_bytes,
                                       self.max_body_bytes)
            except Reject as rejected:
                self._unwatch(holder)
                conn.settimeout(WRITE_TIMEOUT)
                _reply_error(wfile, rejected.status, rejected.reason)
                _drain(conn)
                return
            self._unwatch(holder)
            conn.settimeout(WRITE_TIMEOUT)
            environ = environ_for(*request, server=self.address, client=client,
                                  scheme=self.scheme, peer_cert=peer_cert,
                                  authenticated=lambda: self._authenticated(holder))
            handler = _Handler(io.BytesIO(request[4]), wfile, _LogStream(), environ,
                               multithread=True, multiprocess=False)
            handler.http_version = "1.0"
            handler.run(self.app)
            wfile.flush()
        except (_Closed, OSError, ssl.SSLError, ValueError) as err:
            LOG.debug("Connection from %s ended: %s", client[0], type(err).__name__)
        finally:
            self._unwatch(holder)
            for closing in (rfile, wfile, conn):
                try:
                    if closing is not None:
                        closing.close()
                except OSError:
                    pass
            with self._lock:
                found = self._conns.pop(id(holder), None)
                if found is None or not found.culled:
                    self._active -= 1

    def start(self):
        """Serve in a background thread (tests, the demo)."""
        if self.socket is None:
            self.prepare()
        self._thread = threading.Thread(target=self.serve_forever, daemon=True,
                                        name="agent-server")
        self._thread.start()
        return self

    # Alike the dashboard's poller in shape only; the server also closes its socket.
    def stop(self):
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(10)
        if self.socket is not None:
            self.socket.close()


def _shutdown(holder):
    """Unblock the read a connection's thread waits in (it then closes it)."""
    try:
        socket.socket.shutdown(holder[0], socket.SHUT_RDWR)
    except OSError:
        pass


class _LogStream:
    """wsgi.errors: what an app writes there goes to the log, escaped."""

    def write(self, text):
        if text.strip():
            LOG.warning("%s", text.strip().encode("unicode_escape").decode("ascii"))

    def writelines(self, lines):
        for line in lines:
            self.write(line)

    def flush(self):
        pass
