"""The agent's state and operations, independent of HTTP.

Holds this host's driver, settings, slots, migrations and probes; the HTTP
layer (``app`` and ``api``) only validates, calls in here and serialises.
"""

import dataclasses
import logging

from migplane.agent import client as client_mod
from migplane.agent import errors
from migplane.agent import hostfacts
from migplane.agent import migrations
from migplane.agent import opts
from migplane.agent import probe
from migplane.agent import reconcile
from migplane.agent import slots as slots_mod
from migplane.agent import store as store_mod
from migplane.core import exception
from migplane.core import flow as flow_mod
from migplane.core import inbound
from migplane.core import loader
from migplane.core import settings as settings_mod
from migplane.core import uri as uri_mod

LOG = logging.getLogger(__name__)
VERSION = "1"


class Agent:
    """One host's agent. ``driver`` defaults to ``[live_migration] driver``."""

    def __init__(self, conf, driver=None, facts=hostfacts):
        opts.register_opts(conf)
        self.conf = conf
        self.options = conf[opts.GROUP]
        self.tokens = opts.tokens(conf)
        if not self.tokens:
            raise exception.ConfigError(
                group=opts.GROUP, option="auth_tokens", value="",
                reason="at least one token is required: the agent refuses to serve "
                       "without authentication")
        if bool(self.options.cert_file) != bool(self.options.key_file):
            raise exception.ConflictingOptions(
                options="[agent] cert_file and key_file",
                reason="set both to serve HTTPS, or neither")
        self.peers = {}
        for name, url in (self.options.peers or {}).items():
            try:
                self.peers[name] = client_mod.check_url(url)
            except errors.BadRequest:
                raise exception.ConfigError(group=opts.GROUP, option="peers", value=url,
                                            reason="peer %r: want https://host:port"
                                            % name)
        self.driver = driver if driver is not None else loader.load_driver(conf)
        self.settings = settings_mod.load(conf)
        self.hostname = self.driver.hostname
        self.facts = facts
        self.slots = slots_mod.HostSlots(self.hostname, self.settings.concurrency,
                                         lease_s=self.options.slot_lease)
        self.store = self._open_store()
        self.registry = migrations.MigrationRegistry(
            history=self.options.history, store=self.store, facts=facts,
            max_age_s=self.options.history_days * 86400 or None)
        self.probes = probe.Probes()
        self.clock, self.sleep = self.driver.flow_timing()
        self.reconciler = reconcile.Reconciler(self)
        self.reconcile()  # in threads: the agent serves while they settle

    def _open_store(self):
        state_dir = self.options.state_dir
        if not state_dir:
            LOG.warning("[agent] state_dir is unset: migration records are kept in "
                        "memory only; a restart of this agent loses them")
            return store_mod.RecordStore(None)
        store = store_mod.RecordStore(state_dir)
        if store.moved_aside:
            LOG.error("Migration records: %s was unreadable and moved aside to %s",
                      store.error, store.moved_aside)
        return store

    def reconcile(self):
        """Settle the migrations that were in flight when this agent last stopped."""
        return self.reconciler.start()

    @property
    def tls(self):
        return bool(self.options.cert_file and self.options.key_file)

    # -- peers -------------------------------------------------------------------

    def peer(self, destination):
        """A :class:`RemoteDriver` for the destination a request names."""
        url = client_mod.check_url(destination["url"], field="destination.url")
        if self.peers:
            allowed = set(self.peers.values())
            host = destination.get("host")
            if host is not None and host in self.peers and self.peers[host] != url:
                raise errors.Forbidden(reason="destination.host %r is %s in [agent] peers, "
                                              "not %s" % (host, self.peers[host], url))
            if url not in allowed:
                raise errors.Forbidden(reason="destination.url %r is not one of [agent] "
                                              "peers (%s)" % (url, ", ".join(sorted(allowed))))
        client = client_mod.AgentClient(url, opts.peer_token(self.conf),
                                        ca_file=self.options.peer_ca_file,
                                        timeout=self.options.step_timeout)
        remote = client_mod.RemoteDriver(client)
        facts = remote.facts()
        expected = destination.get("host")
        if expected and expected != facts["hostname"]:
            raise errors.BadRequest(field="destination.host",
                                    reason="is %r but the agent at %s is %r"
                                           % (expected, url, facts["hostname"]))
        if facts["hostname"] == self.hostname:
            raise errors.BadRequest(field="destination.url",
                                    reason="%s is this host (%s): source and destination "
                                           "must differ" % (url, self.hostname))
        return remote

    # -- host facts ----------------------------------------------------------------

    def inbound(self):
        """This host's inbound migration address, as pre_live_migration() would pick it."""
        try:
            addr, source = inbound.select(self.settings.host, self.driver.local_addresses())
            return {"address": addr, "source": source, "error": None}
        except exception.MigplaneError as err:
            return {"address": None, "source": None, "error": str(err)}

    def host_facts(self):
        def optional(what, function):
            try:
                return function()
            except Exception as err:
                LOG.warning("Cannot read %s: %s", what, err)
                return None

        host = self.settings.host
        return {
            "hostname": self.hostname,
            "agent": {"version": VERSION, "bind_host": self.options.bind_host,
                      "port": self.options.port, "tls": self.tls,
                      "max_concurrent": self.settings.concurrency.max_concurrent,
                      "when_busy": self.settings.concurrency.when_busy,
                      "busy_timeout": self.settings.concurrency.busy_timeout,
                      "running": self.slots.running,
                      "incoming": [dataclasses.asdict(lease)
                                   for lease in self.slots.leases()],
                      "peers": self.peers,
                      "records": {"path": self.store.path, "durable": self.store.durable,
                                  "error": self.store.error,
                                  "moved_aside": self.store.moved_aside}},
            "my_live_migration_ip": host.my_live_migration_ip,
            "inbound_cidr": str(host.inbound_cidr) if host.inbound_cidr else None,
            "inbound": self.inbound(),
            "local_addresses": self.driver.local_addresses(),
            "interfaces": optional("interfaces", self.facts.interfaces),
            "routes": optional("routes", self.facts.routes),
            "driver": self.driver.describe().to_dict(),
            "migration": dataclasses.asdict(self.settings.migration),
        }

    # -- migrations ------------------------------------------------------------------

    def migration_settings(self, overrides):
        return self.settings.migration.replace(**(overrides or {}))

    def plan_inbound(self, instance, block_migration):
        """What pre_live_migration() would answer, preparing nothing."""
        return self.driver.plan_inbound(instance, block_migration)

    def plan(self, body):
        """The dry run behind ``migplane explain``: resolve, change nothing."""
        instance = body["instance"]
        block = body.get("block_migration", False)
        settings = self.migration_settings(body.get("options"))
        remote = self.peer(body["destination"])
        info = self.driver.get_instance_info(instance)
        data = remote.plan_inbound(instance, block)
        caps = self.driver.describe()
        uris = uri_mod.resolve(settings, data, caps.capabilities,
                               dest_hostname=remote.hostname, block_migration=block,
                               driver=caps.name)
        plan = {"instance": info.to_dict(), "source": self.hostname,
                "destination": remote.hostname, "destination_url": remote.client.url,
                "block_migration": block, "migrate_data": data.to_primitive(),
                "uris": uris.to_dict(), "settings": dataclasses.asdict(settings),
                "driver": caps.to_dict(), "hypervisor": None}
        plan["hypervisor"] = self.driver.describe_migration(instance, data, uris, settings)
        return plan

    def start_migration(self, body):
        instance = body["instance"]
        migration_id = self.registry.new_id()
        self.registry.claim(instance, migration_id)  # 409 when it is already moving
        try:
            return self._start_migration(body, instance, migration_id)
        finally:
            self.registry.unclaim(instance, migration_id)

    def _start_migration(self, body, instance, migration_id):
        block = body.get("block_migration", False)
        settings = self.migration_settings(body.get("options"))
        remote = self.peer(body["destination"])
        record = migrations.MigrationRecord(
            migration_id, instance, self.hostname, remote.hostname, remote.client.url,
            block, body.get("options") or {}, facts=self.facts)
        limiter = slots_mod.MigrationSlots(
            self.slots, remote.client, migration_id, instance,
            cancelled=lambda: record.abort_requested)
        flow = flow_mod.LiveMigration(instance, self.driver,
                                      migrations.PreparedData(remote, record), settings,
                                      block_migration=block, limiter=limiter,
                                      migration_id=migration_id, clock=self.clock,
                                      sleep=self.sleep)
        LOG.info("Migration %s: %s from %s to %s (%s)%s", migration_id, instance,
                 self.hostname, remote.hostname, remote.client.url,
                 " with block migration" if block else "")
        self.registry.start(record, flow)
        return record

    def migration(self, migration_id):
        record = self.registry.get(migration_id)
        if record is None:
            raise errors.NotFound(what="Migration", name=migration_id)
        return record

    def abort(self, migration_id):
        record = self.migration(migration_id)
        self._require_active(record, "abort")
        record.abort_requested = True
        if record.flow is not None:
            record.flow.abort()
        else:  # being reconciled after a restart: the reconciler acts on the flag
            record.note("abort_requested", message="abort requested")
        return record

    def force_complete(self, migration_id):
        record = self.migration(migration_id)
        self._require_active(record, "force-complete")
        if record.flow is None:
            raise exception.MigrationError(
                instance=record.instance, step="force-complete",
                reason="migration %s is being reconciled after an agent restart; only "
                       "abort is possible" % record.id)
        record.flow.force_complete()
        return record

    def _require_active(self, record, action):
        if not record.active:
            raise exception.MigrationError(
                instance=record.instance, step=action,
                reason="migration %s already ended (%s)" % (record.id, record.status))

    # -- slots for incoming migrations ----------------------------------------------

    def take_slot(self, body):
        try:
            lease = self.slots.lease(body["migration_id"], body["source"], body["instance"])
        except exception.TooManyMigrations as err:
            err.kwargs["when_busy"] = self.settings.concurrency.when_busy
            raise
        return {"migration_id": lease.migration_id, "lease_s": self.slots.lease_s,
                "host": self.hostname}
