"""Client of a migplane agent, and a driver that runs on another host.

:class:`RemoteDriver` implements the destination role
(:class:`~migplane.core.driver.DestinationDriver`) by calling the agent of the
host it stands for, so the core :class:`LiveMigration` runs unchanged with a
local source driver and a remote destination. Every error the agent
answers is raised again as the same :mod:`migplane.core.exception` class.
"""

import http.client
import io
import json
import logging
import re
import socket
import ssl
import threading
import time
import urllib.parse

import requests

from migplane.agent import errors
from migplane.agent import wire
from migplane.core import address
from migplane.core import driver as driver_mod

LOG = logging.getLogger(__name__)
USER_AGENT = "migplane-agent-client/1"
CONNECT_TIMEOUT = 10
#: The most of an agent's ``GET /metrics`` text read (an agent exports a few KiB).
MAX_METRICS_BYTES = 1 << 20


def check_url(url, field="url"):
    """Accept only ``http(s)://host[:port]`` with nothing that could smuggle a path."""
    try:
        parts = urllib.parse.urlsplit(url)
        parts.port  # noqa: B018 - parses the port, raising ValueError when bad
    except ValueError as err:
        raise errors.BadRequest(field=field, reason="is not a URL (%s), got %r"
                                % (err, url))
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise errors.BadRequest(field=field, reason="must be an http:// or https:// URL, "
                                                    "got %r" % url)
    if parts.username or parts.password or parts.query or parts.fragment \
            or parts.path not in ("", "/"):
        raise errors.BadRequest(field=field, reason="must be scheme://host[:port] only, "
                                                    "got %r" % url)
    address.parse_host(parts.netloc, field=field)
    return "%s://%s" % (parts.scheme, parts.netloc)


def json_depth(raw):
    """How deep the arrays and objects of JSON text ``raw`` nest (strings skipped)."""
    depth = deepest = 0
    for bracket in re.findall(r"[\[\]{}]", re.sub(r'"(?:[^"\\]|\\.)*"', "", raw)):
        depth += 1 if bracket in "[{" else -1
        deepest = max(deepest, depth)
    return deepest


def _no_constant(name):
    raise ValueError("%s is not JSON" % name)


class PeerTransport:
    """One HTTP(S) exchange with a peer agent, every part of it bounded.

    A peer is hostile until proven otherwise, its certificate notwithstanding:
    its answer is read only up to ``max_bytes`` (headers and body), must
    arrive whole within ``answer_timeout`` s of its first byte (which it has
    ``timeout`` s to send), may nest ``max_depth`` levels, and a redirect is
    an error, never followed. Plain :mod:`http.client` on a socket of our own,
    so that the deadline can cut a trickling answer off.
    """

    def __init__(self, url, ssl_context, peer_name, max_bytes=1024 * 1024,
                 answer_timeout=30.0, max_depth=64):
        self.url = url
        self.parts = urllib.parse.urlsplit(url)
        self.ssl_context = ssl_context
        self.peer_name = peer_name
        self.max_bytes = max_bytes
        self.answer_timeout = answer_timeout
        self.max_depth = max_depth

    def _connect(self, timeout):
        host, port = self.parts.hostname, self.parts.port
        port = port or (443 if self.parts.scheme == "https" else 80)
        sock = socket.create_connection((host, port), timeout=timeout)
        try:
            if self.parts.scheme == "https":
                sock = self.ssl_context.wrap_socket(sock, server_hostname=self.peer_name)
        except BaseException:
            sock.close()
            raise
        return sock

    def exchange(self, method, path, body, headers, timeout, whole=False):
        """``(status, content_type, body bytes)``; OSError/ssl errors on failure.

        ``timeout`` bounds the wait for the answer's first byte (a driver step may
        take that long), then the answer has ``answer_timeout`` s; ``whole``: the
        call takes at most ``answer_timeout`` s in all (not a step).
        """
        if whole:
            timeout = min(timeout, self.answer_timeout)
        begun = time.monotonic()
        sock = self._connect(min(CONNECT_TIMEOUT, timeout))
        cutoff = threading.Timer(timeout - (time.monotonic() - begun), _cut, args=(sock,))
        cutoff.daemon = True
        started = None

        def limit():
            """The bound of the part under way: all of it, or the answer from its
            first byte: ``(since, seconds)``."""
            if whole or started is None:
                return begun, timeout
            return started, self.answer_timeout

        try:
            conn = http.client.HTTPConnection(self.parts.hostname, self.parts.port)
            conn.sock = sock
            sock.settimeout(timeout)
            cutoff.start()
            conn.request(method, path, body=body, headers=headers)
            first = sock.recv(1)  # (TLS: after any session tickets) the answer's first byte
            if not first:
                raise ConnectionError("the peer closed the connection without answering")
            started = time.monotonic()
            if not whole:  # the answer starts: it has answer_timeout s in all
                cutoff.cancel()
                cutoff = threading.Timer(self.answer_timeout, _cut, args=(sock,))
                cutoff.daemon = True
                cutoff.start()
                sock.settimeout(self.answer_timeout)
            response = http.client.HTTPResponse(_Answer(first, sock), method=method)
            response.begin()
            return self._read(response, *limit())
        except (http.client.HTTPException, ValueError, OSError) as err:
            since, bound = limit()
            if started is not None and time.monotonic() - since >= bound:
                raise _Refused("its answer took more than %s s" % bound)
            if isinstance(err, OSError):
                raise
            raise _Refused("malformed HTTP (%s)" % type(err).__name__)
        finally:
            cutoff.cancel()
            sock.close()

    def _read(self, response, since, bound):
        if 300 <= response.status < 400:
            where = response.getheader("Location")
            raise _Refused("a redirect (%d%s), which is never followed" % (
                response.status, ", to %s" % errors.printable(where)[:200] if where else ""))
        length = response.getheader("Content-Length")
        if length is not None and (not length.isascii() or not length.isdigit()
                                   or int(length) > self.max_bytes):
            raise _Refused("%s bytes, more than the %d read from a peer"
                           % (errors.printable(length)[:20], self.max_bytes))
        data = response.read(self.max_bytes + 1)
        if len(data) > self.max_bytes:
            raise _Refused("more than the %d bytes read from a peer" % self.max_bytes)
        if time.monotonic() - since >= bound:
            raise _Refused("its answer took more than %s s" % bound)
        return response.status, response.getheader("Content-Type") or "", data

    def load(self, data):
        """The JSON of an answer, its depth checked before it is parsed."""
        text = data.decode("utf-8")
        if json_depth(text) > self.max_depth:
            raise _Refused("JSON nested deeper than %d levels" % self.max_depth)
        return json.loads(text, parse_constant=_no_constant)


class _Answer(io.RawIOBase):
    """The answer's bytes: its first one (already read), then the socket's."""

    def __init__(self, first, sock):
        super().__init__()
        self._first = first
        self._sock = sock

    def readable(self):
        return True

    def readinto(self, buffer):
        if self._first:
            buffer[:1], self._first = self._first, b""
            return 1
        return self._sock.recv_into(buffer)

    def makefile(self, mode="rb"):
        return io.BufferedReader(self)


class _Refused(Exception):
    """An answer of a peer that is refused before it is read as an answer."""


def _cut(sock):
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass


class AgentClient:
    """JSON over HTTP(S) to one agent.

    An operator's client sends a bearer ``token``; an agent calling a peer sends
    none and authenticates with ``ssl_context`` (its own certificate) instead,
    verifying that the peer's certificate is for ``peer_name``.
    """

    def __init__(self, url, token, ca_file=None, timeout=600, session=None,
                 ssl_context=None, peer_name=None, cert=None, answer_bytes=1024 * 1024,
                 answer_timeout=30.0):
        self.url = check_url(url)
        self.token = token
        self.verify = ca_file or True
        self.timeout = timeout
        self.session = session or requests.Session()
        if cert is not None:  # an operator's client certificate: (cert_file, key_file)
            self.session.cert = tuple(cert)
        self.peer_name = peer_name
        #: Set for a peer agent (an agent calling another): see PeerTransport.
        self.transport = None
        if ssl_context is not None or peer_name is not None:
            self.transport = PeerTransport(self.url, ssl_context, peer_name,
                                           max_bytes=answer_bytes,
                                           answer_timeout=answer_timeout)
        self.slot_lease_s = 120

    def __repr__(self):
        return "AgentClient(%s)" % self.url

    def request(self, method, path, body=None, params=None, timeout=None, step=False):
        headers = {"User-Agent": USER_AGENT, "Accept": "application/json"}
        if self.token:
            headers["Authorization"] = "Bearer %s" % self.token
        if body and method in ("POST", "PUT"):
            body = wire.dump_request(path, body)
        if self.transport is not None:
            status, data = self._peer_request(method, path, body, params, headers,
                                              timeout or self.timeout, whole=not step)
        else:
            status, data = self._operator_request(method, path, body, params, headers,
                                                  timeout or self.timeout)
        data = errors.printable_data(data)  # text of another host, to log or show
        if status >= 400:
            raise errors.from_body(self.url, status, data)
        return wire.load_answer(data)

    def _operator_request(self, method, path, body, params, headers, timeout):
        try:
            response = self.session.request(
                method, self.url + path, json=body, params=params, headers=headers,
                verify=self.verify, timeout=(CONNECT_TIMEOUT, timeout),
                allow_redirects=False)
        except requests.RequestException as err:
            raise errors.AgentUnreachable(url=self.url, reason=_short(err))
        if 300 <= response.status_code < 400:
            raise errors.AgentRequestError(
                url=self.url, status_code=response.status_code,
                reason="a redirect (never followed) to %s" % errors.printable(
                    response.headers.get("Location", "nowhere"))[:200])
        try:
            return response.status_code, response.json()
        except (ValueError, RecursionError):
            # e.g. a proxy's HTML error page: say what came, not the markup
            raise errors.AgentRequestError(url=self.url, status_code=response.status_code,
                                           reason=_not_json(response))

    def _peer_request(self, method, path, body, params, headers, timeout, whole):
        if params:
            path = "%s?%s" % (path, urllib.parse.urlencode(params))
        payload = None
        if body is not None and method in ("POST", "PUT"):
            payload = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        headers["Connection"] = "close"
        try:
            status, kind, raw = self.transport.exchange(method, path, payload, headers,
                                                        timeout, whole=whole)
        except _Refused as err:
            raise errors.AnswerRefused(url=self.url, reason=str(err))
        except (OSError, ssl.SSLError) as err:
            raise errors.AgentUnreachable(url=self.url, reason=errors.printable(
                _short(err) or type(err).__name__))
        try:
            return status, self.transport.load(raw)
        except _Refused as err:
            raise errors.AnswerRefused(url=self.url, reason=str(err))
        except (ValueError, RecursionError):
            text = " ".join(re.sub(r"<[^>]*>", " ", raw[:4096].decode(
                "utf-8", "replace")).split())
            raise errors.AgentRequestError(
                url=self.url, status_code=status,
                reason="not a JSON answer (%s)%s" % (
                    errors.printable(kind.split(";")[0] or "no content type"),
                    ": %s" % errors.printable(text[:120]) if text else ", empty"))

    def get(self, path, **kwargs):
        return self.request("GET", path, **kwargs)

    def metrics(self, limit=MAX_METRICS_BYTES):
        """The agent's ``GET /metrics`` text, at most ``limit`` bytes of it."""
        headers = {"User-Agent": USER_AGENT, "Accept": "text/plain"}
        if self.token:
            headers["Authorization"] = "Bearer %s" % self.token
        try:
            with self.session.get(self.url + "/metrics", headers=headers,
                                  verify=self.verify, stream=True,
                                  timeout=(CONNECT_TIMEOUT, self.timeout)) as response:
                data = response.raw.read(limit + 1, decode_content=True)
        except requests.RequestException as err:
            raise errors.AgentUnreachable(url=self.url, reason=_short(err))
        if response.status_code >= 400:
            try:
                body = json.loads(data)
            except ValueError:
                raise errors.AgentRequestError(url=self.url,
                                               status_code=response.status_code,
                                               reason="an error that is not JSON")
            raise errors.from_body(self.url, response.status_code, body)
        if len(data) > limit:
            raise errors.AgentRequestError(url=self.url, status_code=response.status_code,
                                           reason="its metrics exceed %d bytes" % limit)
        return data.decode("utf-8", errors="replace")

    def post(self, path, body=None, **kwargs):
        return self.request("POST", path, body=body if body is not None else {}, **kwargs)

    def step(self, name, **body):
        """A driver step on a peer: it may take ``timeout`` s to start answering."""
        return self.post("/v1/steps/%s" % name, body, step=True)

    # -- host facts and slots ------------------------------------------------

    def host(self):
        return self.get("/v1/host")

    def take_slot(self, migration_id, source, instance):
        answer = self.post("/v1/slots", {"migration_id": migration_id, "source": source,
                                         "instance": instance})
        self.slot_lease_s = answer.get("lease_s", self.slot_lease_s)
        return answer

    def renew_slot(self, migration_id):
        return self.request("PUT", "/v1/slots/%s" % migration_id, body={})

    def release_slot(self, migration_id):
        return self.request("DELETE", "/v1/slots/%s" % migration_id)


def _not_json(response):
    """What a non-JSON answer was, in one short line (its type and the start of
    its text with the markup stripped): never a page of HTML in an error."""
    kind = response.headers.get("Content-Type") or "no content type"
    text = " ".join(re.sub(r"<[^>]*>", " ", (response.text or "")[:4096]).split())
    return "not a JSON answer (%s)%s" % (errors.printable(kind.split(";")[0]),
                                         ": %s" % errors.printable(text[:120])
                                         if text else ", empty")


def _short(err):
    text = str(err)
    for marker in ("Failed to establish a new connection: ", "Caused by "):
        if marker in text:
            text = text.split(marker, 1)[1]
    return text.rstrip(")'\"")[:300]


class RemoteDriver(driver_mod.DestinationDriver):
    """The destination's driver, reached through its agent: the destination role.

    Only the destination's steps cross the wire, each with the id of the
    migration whose slot the caller holds there; the source's steps are no
    remote operations (the source agent runs them itself). ``identity`` is
    the host name the peer's certificate proved (checked again by the core
    plan check).
    """

    def __init__(self, client, hostname=None, identity=None, migration_id=None,
                 where=None):
        self.client = client  # no conf: the remote agent has it
        self._facts = None
        self._hostname = hostname
        self.identity = identity
        self.migration_id = migration_id
        #: An AgentClient of the peer's one question on the migration plane, or None.
        self.where = where

    @property
    def hostname(self):
        if self._hostname is None:
            self._hostname = self.facts()["hostname"]
        return self._hostname

    def facts(self):
        if self._facts is None:
            self._facts = self.client.host()
        return self._facts

    def describe(self):
        return wire.load_driver_info(self.facts()["driver"])

    def local_addresses(self):
        return self.client.get("/v1/host")["local_addresses"]

    def get_instance_info(self, instance):
        path = "/v1/instances/%s" % urllib.parse.quote(instance, safe="")
        try:
            return wire.load_info(self.client.get(path))
        except errors.AgentUnreachable as err:
            if self.where is None:
                raise
            LOG.warning("Agent %s unreachable on the management plane (%s); asking "
                        "where %s runs over the migration plane, %s", self.client.url,
                        err, instance, self.where.url)
            return wire.load_info(self.where.get(path))

    def _step(self, name, **body):
        if self.migration_id is not None:
            body["migration_id"] = self.migration_id
        return self.client.step(name, **body)

    def _data_step(self, name, instance, migrate_data):
        answer = self._step(name, instance=instance,
                            migrate_data=wire.dump_data(migrate_data))
        data = answer.get("migrate_data")
        return None if data is None else wire.load_data(data)

    # -- destination side ----------------------------------------------------

    def check_can_live_migrate_destination(self, instance, block_migration=False):
        answer = self._step("check_can_live_migrate_destination", instance=instance,
                            block_migration=bool(block_migration))
        return wire.load_data(answer["migrate_data"])

    def plan_inbound(self, instance, block_migration=False):
        """What pre_live_migration() would answer, without preparing anything."""
        answer = self.client.step("plan_inbound", instance=instance,
                                  block_migration=bool(block_migration))
        return wire.load_data(answer["migrate_data"])

    def pre_live_migration(self, instance, migrate_data):
        return self._data_step("pre_live_migration", instance, migrate_data)

    def post_live_migration_at_destination(self, instance, migrate_data):
        self._data_step("post_live_migration_at_destination", instance, migrate_data)

    def rollback_live_migration_at_destination(self, instance, migrate_data):
        self._data_step("rollback_live_migration_at_destination", instance, migrate_data)

    def pause_instance(self, instance, migrate_data):
        self._data_step("pause_instance", instance, migrate_data)
