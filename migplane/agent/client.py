"""Client of a migplane agent, and a driver that runs on another host.

:class:`RemoteDriver` implements :class:`MigrationDriver` by calling the
agent of the host it stands for, so the core :class:`LiveMigration` runs
unchanged with one local and one remote driver. Every error the agent
answers is raised again as the same :mod:`migplane.core.exception` class.
"""

import logging
import re
import urllib.parse

import requests

from migplane.agent import errors
from migplane.agent import wire
from migplane.core import address
from migplane.core import driver as driver_mod
from migplane.core import exception

LOG = logging.getLogger(__name__)
USER_AGENT = "migplane-agent-client/1"
CONNECT_TIMEOUT = 10


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


class _PeerAdapter(requests.adapters.HTTPAdapter):
    """HTTPS to one peer: this host's certificate, the peer's name verified."""

    def __init__(self, ssl_context, peer_name):
        self._ssl_context = ssl_context
        self._peer_name = peer_name
        super().__init__()

    def init_poolmanager(self, *args, **kwargs):
        kwargs["ssl_context"] = self._ssl_context
        kwargs["assert_hostname"] = self._peer_name
        super().init_poolmanager(*args, **kwargs)


class AgentClient:
    """JSON over HTTP(S) to one agent.

    An operator's client sends a bearer ``token``; an agent calling a peer sends
    none and authenticates with ``ssl_context`` (its own certificate) instead,
    verifying that the peer's certificate is for ``peer_name``.
    """

    def __init__(self, url, token, ca_file=None, timeout=600, session=None,
                 ssl_context=None, peer_name=None, cert=None):
        self.url = check_url(url)
        self.token = token
        self.verify = ca_file or True
        self.timeout = timeout
        self.session = session or requests.Session()
        if cert is not None:  # an operator's client certificate: (cert_file, key_file)
            self.session.cert = tuple(cert)
        self.peer_name = peer_name
        if ssl_context is not None:
            self.session.trust_env = False
            self.session.mount(self.url + "/", _PeerAdapter(ssl_context, peer_name))
        self.slot_lease_s = 120

    def __repr__(self):
        return "AgentClient(%s)" % self.url

    def request(self, method, path, body=None, params=None, timeout=None):
        headers = {"User-Agent": USER_AGENT, "Accept": "application/json"}
        if self.token:
            headers["Authorization"] = "Bearer %s" % self.token
        if body and method in ("POST", "PUT"):
            body = wire.dump_request(path, body)
        try:
            response = self.session.request(
                method, self.url + path, json=body, params=params, headers=headers,
                verify=self.verify, timeout=(CONNECT_TIMEOUT, timeout or self.timeout))
        except requests.RequestException as err:
            raise errors.AgentUnreachable(url=self.url, reason=_short(err))
        try:
            data = response.json()
        except ValueError:
            # e.g. a proxy's HTML error page: say what came, not the markup
            raise errors.AgentRequestError(url=self.url, status_code=response.status_code,
                                           reason=_not_json(response))
        if response.status_code >= 400:
            raise errors.from_body(self.url, response.status_code, data)
        return wire.load_answer(data)

    def get(self, path, **kwargs):
        return self.request("GET", path, **kwargs)

    def post(self, path, body=None, **kwargs):
        return self.request("POST", path, body=body if body is not None else {}, **kwargs)

    def step(self, name, **body):
        return self.post("/v1/steps/%s" % name, body)

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
    text = " ".join(re.sub(r"<[^>]*>", " ", response.text or "").split())
    return "not a JSON answer (%s)%s" % (kind.split(";")[0], ": %s" % text[:120]
                                         if text else ", empty")


def _short(err):
    text = str(err)
    for marker in ("Failed to establish a new connection: ", "Caused by "):
        if marker in text:
            text = text.split(marker, 1)[1]
    return text.rstrip(")'\"")[:300]


class RemoteDriver(driver_mod.MigrationDriver):
    """The destination's driver, reached through its agent.

    Only the destination-side steps cross the wire, each with the id of the
    migration whose slot the caller holds there. ``identity`` is the host name
    the peer's certificate proved (checked again by the core plan check).
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

    # -- source side: never remote --------------------------------------------

    def _local_only(self, step):
        raise exception.UnsupportedFeature(
            driver="remote", feature="%s (source-side steps are not remote operations: "
                                     "the source agent runs them itself)" % step)

    def check_can_live_migrate_source(self, instance, migrate_data):
        self._local_only("check_can_live_migrate_source")

    def live_migration(self, instance, migrate_data, uris, settings):
        self._local_only("live_migration")

    def get_job_progress(self, instance):
        self._local_only("get_job_progress")

    def abort_job(self, instance):
        self._local_only("abort_job")

    def force_complete(self, instance, post_copy):
        self._local_only("force_complete")

    def set_max_downtime(self, instance, downtime_ms):
        self._local_only("set_max_downtime")

    def post_live_migration_at_source(self, instance, migrate_data):
        self._local_only("post_live_migration_at_source")

    def rollback_live_migration_at_source(self, instance, migrate_data):
        self._local_only("rollback_live_migration_at_source")
