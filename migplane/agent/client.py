"""Client of a migplane agent, and a driver that runs on another host.

:class:`RemoteDriver` implements :class:`MigrationDriver` by calling the
agent of the host it stands for, so the core :class:`LiveMigration` runs
unchanged with one local and one remote driver. Every error the agent
answers is raised again as the same :mod:`migplane.core.exception` class.
"""

import logging
import urllib.parse

import requests

from migplane.agent import errors
from migplane.agent import wire
from migplane.core import address
from migplane.core import driver as driver_mod

LOG = logging.getLogger(__name__)
USER_AGENT = "migplane-agent-client/1"
CONNECT_TIMEOUT = 10


def check_url(url, field="url"):
    """Accept only ``http(s)://host[:port]`` with nothing that could smuggle a path."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise errors.BadRequest(field=field, reason="must be an http:// or https:// URL, "
                                                    "got %r" % url)
    if parts.username or parts.password or parts.query or parts.fragment \
            or parts.path not in ("", "/"):
        raise errors.BadRequest(field=field, reason="must be scheme://host[:port] only, "
                                                    "got %r" % url)
    address.parse_host(parts.netloc, field=field)
    return "%s://%s" % (parts.scheme, parts.netloc)


class AgentClient:
    """JSON over HTTP(S) to one agent, with a bearer token."""

    def __init__(self, url, token, ca_file=None, timeout=600, session=None):
        self.url = check_url(url)
        self.token = token
        self.verify = ca_file or True
        self.timeout = timeout
        self.session = session or requests.Session()
        self.slot_lease_s = 120

    def __repr__(self):
        return "AgentClient(%s)" % self.url

    def request(self, method, path, body=None, params=None, timeout=None):
        headers = {"User-Agent": USER_AGENT, "Accept": "application/json"}
        if self.token:
            headers["Authorization"] = "Bearer %s" % self.token
        try:
            response = self.session.request(
                method, self.url + path, json=body, params=params, headers=headers,
                verify=self.verify, timeout=(CONNECT_TIMEOUT, timeout or self.timeout))
        except requests.RequestException as err:
            raise errors.AgentUnreachable(url=self.url, reason=_short(err))
        try:
            data = response.json()
        except ValueError:
            data = {"error": {"type": "AgentRequestError",
                              "message": response.text[:200] or "an empty answer"}}
        if response.status_code >= 400:
            raise errors.from_body(self.url, response.status_code, data)
        return data

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


def _short(err):
    text = str(err)
    for marker in ("Failed to establish a new connection: ", "Caused by "):
        if marker in text:
            text = text.split(marker, 1)[1]
    return text.rstrip(")'\"")[:300]


class RemoteDriver(driver_mod.MigrationDriver):
    """The driver of another host, reached through its agent."""

    def __init__(self, client, hostname=None):  # no conf: the remote agent has it
        self.client = client
        self._facts = None
        self._hostname = hostname

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
        return wire.load_info(self.client.get(
            "/v1/instances/%s" % urllib.parse.quote(instance, safe="")))

    def _data_step(self, name, instance, migrate_data):
        answer = self.client.step(name, instance=instance,
                                  migrate_data=wire.dump_data(migrate_data))
        data = answer.get("migrate_data")
        return None if data is None else wire.load_data(data)

    # -- destination side ----------------------------------------------------

    def check_can_live_migrate_destination(self, instance, block_migration=False):
        answer = self.client.step("check_can_live_migrate_destination", instance=instance,
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

    # -- source side ---------------------------------------------------------

    def check_can_live_migrate_source(self, instance, migrate_data):
        return self._data_step("check_can_live_migrate_source", instance, migrate_data)

    def live_migration(self, instance, migrate_data, uris, settings):
        self.client.step("live_migration", instance=instance,
                         migrate_data=wire.dump_data(migrate_data),
                         uris=wire.dump_uris(uris), settings=wire.dump_settings(settings))

    def get_job_progress(self, instance):
        answer = self.client.step("get_job_progress", instance=instance)
        return wire.load_progress(answer["progress"])

    def abort_job(self, instance):
        self.client.step("abort_job", instance=instance)

    def force_complete(self, instance, post_copy):
        self.client.step("force_complete", instance=instance, post_copy=bool(post_copy))

    def set_max_downtime(self, instance, downtime_ms):
        self.client.step("set_max_downtime", instance=instance,
                         downtime_ms=int(downtime_ms))

    def post_live_migration_at_source(self, instance, migrate_data):
        self._data_step("post_live_migration_at_source", instance, migrate_data)

    def rollback_live_migration_at_source(self, instance, migrate_data):
        self._data_step("rollback_live_migration_at_source", instance, migrate_data)
