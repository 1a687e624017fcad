"""The agent's state and operations, independent of HTTP.

Holds this host's driver, settings, slots, migrations and probes; the HTTP
layer (``app`` and ``api``) only validates, calls in here and serialises.
"""

import dataclasses
import logging
import threading
import time
import urllib.parse

from migplane.agent import client as client_mod
from migplane.agent import errors
from migplane.agent import evacuations
from migplane.agent import hostfacts
from migplane.agent import metrics as metrics_mod
from migplane.agent import migrations
from migplane.agent import opts
from migplane.agent import probe
from migplane.agent import reconcile
from migplane.agent import safety
from migplane.agent import slots as slots_mod
from migplane.agent import store as store_mod
from migplane.agent import tls
from migplane.agent import whereplane
from migplane.agent import wire
from migplane.core import driver as driver_mod
from migplane.core import events
from migplane.core import exception
from migplane.core import flow as flow_mod
from migplane.core import inbound
from migplane.core import loader
from migplane.core import migrate_data as md
from migplane.core import settings as settings_mod
from migplane.core import settle
from migplane.core import settling
from migplane.core import strategy as strategy_mod
from migplane.core import trust
from migplane.core import uri as uri_mod

LOG = logging.getLogger(__name__)
VERSION = "1"


def _resources(driver):
    found = driver.host_resources()
    return found.to_dict() if found is not None else None


class Agent:
    """One host's agent. ``driver`` defaults to ``[live_migration] driver``."""

    def __init__(self, conf, driver=None, facts=hostfacts):
        opts.register_opts(conf)
        self.conf = conf
        self.options = conf[opts.GROUP]
        self.tokens = opts.tokens(conf)
        self.settings = settings_mod.load(conf)
        safety.check(self.options, self.tokens, self.settings)
        self.driver = driver if driver is not None else loader.load_driver(conf)
        self.hostname = self.driver.hostname
        self.peers, self.server_context, self.client_context, self.certificate = \
            self._read_tls()
        self.facts = facts
        self.store = self._open_store()
        self.slots = slots_mod.HostSlots(self.hostname, self.settings.concurrency,
                                         lease_s=self.options.slot_lease,
                                         max_lifetime_s=self.options.slot_max_lifetime,
                                         store=self.store,
                                         max_per_peer=self.options.max_slots_per_peer)
        self.metrics = metrics_mod.AgentMetrics(facts=facts, api=VERSION)
        self.registry = migrations.MigrationRegistry(
            history=self.options.history, store=self.store, facts=facts,
            max_age_s=self.options.history_days * 86400 or None, observer=self.metrics,
            hostname=self.driver.hostname)
        self.evacuations = evacuations.EvacuationRegistry()
        self.probes = probe.Probes()
        self.metrics.agent = self
        self.clock, self.sleep = self.driver.flow_timing()
        self.reconciler = reconcile.Reconciler(self)
        self.registry.on_unresolved = self.reconciler.settle_later
        self.reconcile()  # in threads: the agent serves while they settle

    def _open_store(self):
        state_dir = self.options.state_dir
        if not state_dir:
            LOG.warning("[agent] state_dir is empty: migration records and the slots "
                        "of incoming migrations are kept in memory only; a restart of "
                        "this agent loses them")
            return store_mod.RecordStore(None)
        try:
            store = store_mod.RecordStore(state_dir)
        except store_mod.UnsafeStateDir as err:
            raise exception.ConfigError(group=opts.GROUP, option="state_dir",
                                        value=state_dir, reason=str(err))
        if store.moved_aside:
            LOG.error("Migration records: %s was unreadable and moved aside to %s",
                      store.error, store.moved_aside)
        return store

    def reconcile(self):
        """Settle the migrations that were in flight when this agent last stopped, or
        that ended unresolved."""
        return self.reconciler.start()

    @property
    def tls(self):
        return self.server_context is not None

    def _read_tls(self):
        """``(peers, server context, client context, certificate)`` from ``[agent]``
        as the files hold them now (ConfigError naming the first bad one)."""
        peers = safety.peers(self.options, self.hostname)
        if not self.options.cert_file:
            return peers, None, None, None
        files = self.options.cert_file, self.options.key_file, self.options.ca_file
        server, client = tls.server_context(*files), tls.client_context(*files)
        tls.check_own_certificate(self.options.cert_file, self.hostname,
                                  self.options.ca_file)
        return peers, server, client, tls.read_certificate(self.options.cert_file)

    def reload_tls(self):
        """Read ``[agent]`` cert_file, key_file, ca_file and peers again (SIGHUP).

        All or nothing: when anything is wrong the agent keeps what it had and
        raises the ConfigError naming it. Peer calls already under way keep the
        context they started with (a migration in flight continues); the server
        takes :attr:`server_context` for its new connections.
        """
        safety.check(self.options, self.tokens, self.settings)
        peers, server, client, certificate = self._read_tls()
        if (server is None) != (self.server_context is None):
            raise exception.ConfigError(
                group=opts.GROUP, option="cert_file", value=self.options.cert_file or "",
                reason="switching between HTTP and HTTPS needs a restart")
        self.peers, self.server_context, self.client_context, self.certificate = \
            peers, server, client, certificate
        LOG.info("TLS files and peers read again: certificate %s (serial %x), peers %s",
                 self.options.cert_file, certificate.serial if certificate else 0,
                 ", ".join(sorted(peers)) or "none")

    def warn_if_certificate_expires(self, now=None):
        """Log a warning when this agent's certificate ends within
        :data:`tls.EXPIRY_WARNING_DAYS` days; True when it did."""
        if self.certificate is None:
            return False
        now = time.time() if now is None else now
        if not tls.expires_soon(self.certificate.not_after, now):
            return False
        days = (self.certificate.not_after - now) / 86400
        LOG.warning("The agent's certificate %s (serial %x) %s: issue a new one and "
                    "reload the agent (systemctl reload migplane-agent)",
                    self.certificate.path, self.certificate.serial,
                    "expires in %.0f days" % days if days > 0 else "has expired")
        return True

    # -- peers -------------------------------------------------------------------

    def known_certificate(self, cert):
        """Whether a verified client certificate names a peer or an operator."""
        return (tls.peer_identity(cert, self.peers) is not None
                or tls.peer_identity(cert, self.options.operator_names or ()) is not None)

    def peer_name(self, destination):
        """The configured peer a request's ``destination`` names (by host or URL)."""
        host = destination.get("host")
        url = destination.get("url")
        if url is not None:
            url = client_mod.check_url(url, field="destination.url")
        if not self.peers:
            raise errors.Forbidden(reason="this agent has no [agent] peers: it migrates "
                                          "only to configured peer agents")
        if host is None:
            host = next((n for n, u in sorted(self.peers.items()) if u == url), None)
            if host is None:
                raise errors.Forbidden(reason="destination.url %r is not one of [agent] "
                                              "peers (%s)" % (url, ", ".join(
                                                  sorted(self.peers.values()))))
        if host not in self.peers:
            raise errors.Forbidden(reason="destination.host %r is not one of [agent] "
                                          "peers (%s)" % (host, ", ".join(sorted(self.peers))))
        if url is not None and url != self.peers[host]:
            raise errors.Forbidden(reason="destination.host %r is %s in [agent] peers, "
                                          "not %s" % (host, self.peers[host], url))
        return host

    def peer(self, destination):
        """A :class:`RemoteDriver` for the configured peer ``destination`` names.

        The peer is called at its configured URL with this host's certificate (no
        token) and must prove, with its own certificate, that it is that host.
        """
        name = self.peer_name(destination)
        client = client_mod.AgentClient(self.peers[name], None,
                                        ca_file=self.options.ca_file,
                                        timeout=self.options.step_timeout,
                                        ssl_context=self.client_context, peer_name=name,
                                        answer_bytes=self.options.peer_answer_bytes,
                                        answer_timeout=self.options.peer_answer_timeout)
        remote = client_mod.RemoteDriver(client, identity=name)
        try:
            facts = remote.facts()
        except (errors.Unauthorized, errors.Forbidden) as err:
            raise errors.PeerRefused(peer=name, reason="%s (is %s in its [agent] peers, "
                                     "with a certificate from its ca_file?)"
                                     % (err, self.hostname))
        if facts.get("hostname") != name:
            raise errors.Forbidden(reason="the peer authenticated as %r calls itself %r"
                                          % (name, facts.get("hostname")))
        remote.where = whereplane.client(self, name, facts.get("my_live_migration_ip"))
        return remote

    def plan_networks(self, remote):
        """``(allowed, management)`` CIDRs for the plan check of a migration to
        ``remote`` (``trust.plan_networks``), from this host's interfaces and its
        routes to the peer's agent and host name (the management plane)."""
        try:
            interfaces = self.facts.interfaces() or []
        except Exception as err:  # no facts: only the configured list can allow
            LOG.warning("Cannot read this host's interfaces for the plan check: %s", err)
            interfaces = []
        routed = set()
        for target in (urllib.parse.urlsplit(remote.client.url).hostname, remote.hostname):
            try:
                dev = self.facts.route_to(target).get("dev")
            except Exception as err:
                LOG.warning("Cannot find the route to %s: %s", target, err)
                dev = None
            if dev:
                routed.add(dev)
        inbound_cidr = self.settings.host.inbound_cidr
        return trust.plan_networks(
            interfaces, routed, self.options.bind_host,
            self.settings.migration.migration_networks, self.inbound()["address"],
            None if inbound_cidr is None else str(inbound_cidr))

    def own_addresses(self):
        """This host's addresses (all it knows of): never a migration's destination."""
        found = set(self.driver.local_addresses() or ())
        for value in (self.settings.host.my_live_migration_ip, self.inbound()["address"]):
            if value:
                found.add(str(value))
        return tuple(sorted(found))

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
            "driver": wire.dump_driver_info(self.driver.describe()),
            "resources": optional("resources", lambda: _resources(self.driver)),
            "migration": wire.dump_settings(self.settings.migration),
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
        allowed, management = self.plan_networks(remote)
        settings = settings.replace(migration_networks=allowed,
                                    management_networks=management,
                                    source_addresses=self.own_addresses())
        info = self.driver.get_instance_info(instance)
        data = remote.plan_inbound(instance, block)
        caps = self.driver.describe()
        uris = uri_mod.resolve(settings, data, caps.capabilities,
                               dest_hostname=remote.hostname, block_migration=block,
                               driver=caps.name)
        verdict = trust.check_plan(uris, allowed, management, remote.hostname,
                                   remote.identity,
                                   source_addresses=settings.source_addresses)
        plan = {"instance": info.to_dict(), "source": self.hostname,
                "destination": remote.hostname, "destination_url": remote.client.url,
                "block_migration": block, "migrate_data": data.to_primitive(),
                "uris": uris.to_dict(), "settings": dataclasses.asdict(settings),
                "driver": caps.to_dict(), "hypervisor": None,
                "trust": dataclasses.asdict(verdict)}
        measured, link, strategy = flow_mod.preview(self.driver, instance, info, settings,
                                                    uris, caps.capabilities)
        plan["convergence"] = wire.dump_convergence(measured, link, strategy)
        # The call the flow would make: with what the plan arms at the start.
        plan["hypervisor"] = self.driver.describe_migration(
            instance, data, uris, strategy.transfer_settings(settings))
        return plan

    def start_migration(self, body):
        instance = body["instance"]
        migration_id = self.registry.new_id()
        self.registry.claim(instance, migration_id)  # 409 when it is already moving
        try:
            return self._start_migration(body, instance, migration_id)
        except BaseException:
            self.registry.unclaim(instance, migration_id)
            raise

    def _start_migration(self, body, instance, migration_id):
        block = body.get("block_migration", False)
        settings = self.migration_settings(body.get("options"))
        remote = self.peer(body["destination"])
        record, flow = self.new_migration(instance, remote, settings, block,
                                          body.get("options"), migration_id=migration_id)
        LOG.info("Migration %s: %s from %s to %s (%s)%s", record.id, instance,
                 self.hostname, remote.hostname, remote.client.url,
                 " with block migration" if block else "")
        self.registry.start(record, flow)
        return record

    def new_migration(self, instance, remote, settings, block=False, options=None,
                      migration_id=None):
        """A record and a flow of ``instance`` to ``remote``, with this host's slots
        and the networks the plan check allows (every migration, evacuations too).

        The caller claims ``instance`` in the registry before starting the flow.
        """
        allowed, management = self.plan_networks(remote)
        settings = settings.replace(migration_networks=allowed,
                                    management_networks=management,
                                    source_addresses=self.own_addresses())
        migration_id = migration_id or self.registry.new_id()
        remote.migration_id = migration_id
        record = migrations.MigrationRecord(
            migration_id, instance, self.hostname, remote.hostname, remote.client.url,
            block, options or {}, facts=self.facts)
        limiter = slots_mod.MigrationSlots(
            self.slots, remote.client, migration_id, instance,
            cancelled=lambda: record.abort_requested,
            unsettled=lambda: flow.verdict in (events.VERDICT_UNRESOLVED,
                                               events.VERDICT_POSTCOPY_PAUSED))
        flow = flow_mod.LiveMigration(instance, self.driver,
                                      migrations.PreparedData(remote, record), settings,
                                      block_migration=block, limiter=limiter,
                                      migration_id=migration_id, clock=self.clock,
                                      sleep=self.sleep)
        return record, flow

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

    def resume(self, migration_id):
        """Resume, by an operator's hand, a post-copy migration left paused.

        The driver recovers the stream again (with a new deadline); a thread
        follows the job and, once it completed, runs the post steps as the
        flow would have. Nothing is resumed when the driver finds no broken
        post-copy of the guest here (NoActiveMigration).
        """
        record = self.migration(migration_id)
        if record.active:
            raise exception.MigrationError(
                instance=record.instance, step="resume",
                reason="migration %s is still %s: a broken post-copy is recovered by the "
                       "driver while it runs; resume is for one left paused" % (
                           record.id, record.status))
        data, uris, settings = self._original(record)
        self.driver.resume_postcopy(record.instance, data, uris, settings)
        record.note("post_copy_resumed", status=events.RUNNING,
                    message="post-copy resumed by hand: the driver recovers the stream")
        thread = threading.Thread(target=self._follow_resumed, args=(record, data),
                                  name="resumed-%s" % record.id, daemon=True)
        thread.start()
        return record

    def release_split(self, migration_id):
        """An operator settled by hand a guest found running on both hosts: let
        it migrate again, once both hosts answer and at most one holds a copy
        (``settle.may_release_split``); otherwise nothing changes (409)."""
        record = self.migration(migration_id)
        if record.verdict != events.VERDICT_SPLIT or record.split_released:
            raise exception.MigrationError(
                instance=record.instance, step="release",
                reason="migration %s ended %s%s: there is no split to release" % (
                    record.id, record.verdict or record.status,
                    " and was released already" if record.split_released else ""))
        label = "Migration %s: " % record.id
        source = settling.side(self.driver, record.instance, label)
        destination = settling.side(self.reconciler.destination(record, take_slot=False),
                                    record.instance, label)
        allowed, why = settle.may_release_split(source, destination)
        hosts = "%s: %s, %s: %s" % (record.source, source.describe(), record.destination,
                                    destination.describe())
        if not allowed:
            raise exception.MigrationError(
                instance=record.instance, step="release",
                reason="not released: %s (%s); settle it by hand first" % (why, hosts))
        LOG.warning("Migration %s: the split of %s released by an operator: %s (%s)",
                    record.id, record.instance, why, hosts)
        record.note(events.SPLIT_RELEASED, message="released by an operator: %s (%s)"
                    % (why, hosts))
        flow_mod.release_split(record.instance)
        return record

    def _original(self, record):
        """What migration ``record`` ran with: ``(MigrateData, MigrationURIs or None,
        MigrationSettings as the job was started)``."""
        data = md.MigrateData(dest_hostname=record.destination,
                              block_migration=record.block_migration)
        if record.migrate_data:
            data = md.MigrateData.from_primitive(record.migrate_data)
        uris = uri_mod.MigrationURIs(**record.uris) if record.uris else None
        settings = self.migration_settings(record.options)
        plan = (record.result or {}).get("plan")
        if plan:
            settings = strategy_mod.MigrationPlan.from_dict(plan).transfer_settings(settings)
        return data, uris, settings

    def _follow_resumed(self, record, data):
        """Wait for a resumed post-copy to end; finish it as the flow would."""
        try:
            while True:
                try:
                    progress = self.driver.get_job_progress(record.instance)
                except exception.MigplaneError as err:
                    LOG.warning("Migration %s: cannot read the resumed job: %s",
                                record.id, err)
                    self.sleep(reconcile.Reconciler.RETRY_S)
                    continue
                record.progress = progress.to_dict()
                if progress.state == driver_mod.JOB_COMPLETED:
                    break
                # never rolled back, whatever the job says: both halves are kept
                if progress.state == driver_mod.JOB_POSTCOPY_PAUSED or progress.finished:
                    err = exception.PostCopyPaused(
                        instance=record.instance, migration_id=record.id,
                        reason=progress.error or "the resumed post-copy ended %s"
                        % progress.state)
                    record.note(events.FAILED, message=str(err))
                    record.finish(None, err, verdict=events.VERDICT_POSTCOPY_PAUSED,
                                  verdict_reason="%s keeps the paused source half, %s the "
                                  "destination half" % (record.source, record.destination))
                    return
                record.save(force=False)
                self.sleep(self.settings.migration.poll_interval)
            # completed: settled as any migration whose flow ended (the settle
            # function, the post steps, the source definition removed)
            self.reconciler.run(record)
        except Exception as err:  # keep the agent up; say what is known
            LOG.exception("Following the resumed migration %s failed", record.id)
            record.finish(None, "following the resumed post-copy failed: %s" % err)

    def _require_active(self, record, action):
        if not record.active:
            raise exception.MigrationError(
                instance=record.instance, step=action,
                reason="migration %s already ended (%s)" % (record.id, record.status))

    # -- slots for incoming migrations ----------------------------------------------

    def take_slot(self, body, peer):
        """A slot for ``peer``'s migration; ``source`` must be the authenticated peer."""
        if body["source"] != peer:
            raise errors.Forbidden(reason="source %r is not the authenticated peer %r"
                                          % (body["source"], peer))
        try:
            lease = self.slots.lease(body["migration_id"], peer, body["instance"],
                                     defined=self.defined)
        except exception.TooManyMigrations as err:
            err.kwargs["when_busy"] = self.settings.concurrency.when_busy
            raise
        self._count_incoming(lease.migration_id)
        return {"migration_id": lease.migration_id, "lease_s": self.slots.lease_s,
                "host": self.hostname}

    def _count_incoming(self, migration_id):
        """Count this host's planes' bytes while the incoming migration holds its slot."""
        try:
            planes = metrics_mod.incoming_planes(self.facts.interfaces(),
                                                 self.inbound()["address"],
                                                 self.options.bind_host)
        except Exception as err:  # a nicety; never refuse a slot for it
            LOG.warning("Metrics: cannot tell which interface is which plane: %s", err)
            return
        self.metrics.incoming_started(migration_id, planes)

    def release_slot(self, migration_id, peer):
        """Give back ``peer``'s slot of ``migration_id``: the lease, or None."""
        lease = self.slots.unlease(migration_id, source=peer)
        if lease is not None:
            self.metrics.incoming_finished(migration_id)
        return lease

    def defined(self, instance):
        """Whether a guest named ``instance`` is defined here (in any state)."""
        try:
            self.driver.get_instance_info(instance)
        except exception.InstanceNotFound:
            return False
        return True

    def require_lease(self, migration_id, peer, instance):
        """The lease ``peer`` holds here for ``migration_id`` of ``instance``, or 403."""
        lease = self.slots.get(migration_id)
        if lease is None or lease.source != peer or lease.instance != instance:
            raise errors.Forbidden(reason="%s holds no slot here for migration %r of %r"
                                          % (peer, migration_id, instance))
        return lease
