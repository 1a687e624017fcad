"""``migplane-agent``: serve this host's migration steps on the management plane.

Usage: ``migplane-agent --config-file /etc/migplane/agent.conf``. The file
holds ``[agent]`` (bind_host, port, auth_tokens, cert_file, key_file, ca_file,
peers, ...),
``[DEFAULT] my_live_migration_ip``, ``[live_migration]`` and the driver's
group. Exit status: 0 after SIGTERM/SIGINT, 2 on a configuration error,
1 when the server cannot start.

SIGHUP (``systemctl reload migplane-agent``) reads the configuration files
again and, with them, the TLS files and peers: new connections are served
with the new certificate, connections and migrations under way keep theirs.
When anything new is wrong the agent logs it and keeps what it had. Under
systemd (``etc/systemd/migplane-agent.service``, ``Type=notify``) the agent
reports READY=1 once it serves, RELOADING=1 and READY=1 around a reload,
and STOPPING=1.
"""

import signal
import sys
import threading
import time

from oslo_config import cfg
from oslo_log import log as logging

from migplane.agent import app as app_mod
from migplane.agent import metrics as metrics_mod
from migplane.agent import opts
from migplane.agent import server as server_mod
from migplane.agent import service
from migplane.agent import systemd
from migplane.agent import whereplane
from migplane.agent import wire
from migplane.core import exception
from migplane.core import opts as core_opts

LOG = logging.getLogger(__name__)
DOMAIN = "migplane-agent"
VERSION_HELP = ("--version prints the versions of migplane and of the libvirt and QEMU "
                "that the configured driver sees, then exits. SIGHUP reads the "
                "certificate, key, CA and peers again.")
#: Seconds between two looks at the certificate's expiry date.
EXPIRY_CHECK_S = 86400


def build_conf(argv):
    """Parse ``argv`` (the oslo.config CLI: --config-file, --config-dir, ...)."""
    conf = cfg.ConfigOpts()
    logging.register_options(conf)
    core_opts.register_opts(conf)
    opts.register_opts(conf)
    conf(argv, project="migplane", prog=DOMAIN, epilog=VERSION_HELP,
         default_config_files=cfg.find_config_files(project="migplane", prog=DOMAIN))
    return conf


def build(conf):
    """The agent and its server, bound but not yet serving."""
    wire.configure_pins(conf[opts.GROUP].wire_pins)
    agent = service.Agent(conf)
    options = conf[opts.GROUP]
    return agent, server_for(agent, options.bind_host, options.port)


def serve(server, name):
    thread = threading.Thread(target=server.serve_forever, name=name)
    thread.start()
    return thread


def server_for(agent, host, port):
    """The HTTP(S) server of ``agent`` on ``host:port``, with its ``[agent]`` limits."""
    options = agent.options
    return server_mod.AgentServer(
        app_mod.create_app(agent), host, port, ssl_context=agent.server_context,
        request_timeout=options.request_timeout, max_connections=options.max_connections,
        max_header_bytes=options.max_header_bytes, max_body_bytes=options.max_body_bytes,
        max_unauthenticated_per_address=options.max_unauthenticated_per_address,
        known_certificate=agent.known_certificate)


def reload_tls(conf, agent, server, where=None):
    """SIGHUP: the configuration files, then the TLS files and peers, read again; on
    any error the agent logs it (naming the file or option) and keeps serving as
    before. True when the new ones are in use."""
    systemd.reloading()
    try:
        try:
            conf.mutate_config_files()
        except (cfg.Error, ValueError) as err:
            raise exception.ConfigError(group="DEFAULT", option="config_file",
                                        value=", ".join(conf.config_file or ()),
                                        reason="cannot be read again: %s" % err)
        agent.reload_tls()
        server.set_ssl_context(agent.server_context)
        if where is not None:  # the migration plane's question: the same files
            where.set_ssl_context(whereplane.context(agent.options))
        return True
    except exception.MigplaneError as err:
        LOG.error("Reload refused, still serving with the certificate, key, CA and peers "
                  "read before: %s", err)
        return False
    finally:
        systemd.ready("Serving on %s" % server.url)


def version(argv):
    """``--version``: migplane's and the configured driver's view of libvirt and QEMU."""
    from migplane import version as version_mod

    try:
        conf = build_conf([a for a in argv if a != "--version"])
    except (cfg.Error, ValueError, SystemExit) as err:
        print("migplane-agent: (configuration not read: %s)" % err, file=sys.stderr)
        conf = None
    print(version_mod.report(DOMAIN, conf))
    return 0


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if "--version" in argv:
        return version(argv)
    try:
        conf = build_conf(argv)
    except (cfg.Error, ValueError) as err:
        print("migplane-agent: configuration error: %s" % err, file=sys.stderr)
        return 2
    logging.setup(conf, DOMAIN)
    try:
        agent, server = build(conf)
    except (exception.MigplaneError, cfg.Error, ValueError) as err:
        LOG.error("Configuration error: %s", err)
        print("migplane-agent: %s" % err, file=sys.stderr)
        return 2
    try:
        where = whereplane.server(agent)
    except exception.MigplaneError as err:
        LOG.error("Configuration error: %s", err)
        print("migplane-agent: %s" % err, file=sys.stderr)
        return 2
    servers = [(server, conf.agent.bind_host, conf.agent.port, "agent-server")]
    if where is not None:
        servers.append((where, where.address[0], conf.agent.migration_plane_port,
                        "agent-migration-plane"))
    for each, host, port, _ in list(servers):
        try:
            each.prepare()
        except OSError as err:
            if each is where:  # a safety net, not the agent's service (see whereplane)
                LOG.error("Not answering on the migration plane: cannot listen on %s "
                          "port %s: %s", host, port, err)
                servers.remove((each, host, port, "agent-migration-plane"))
                where = None
                continue
            LOG.error("Cannot listen on %s port %s: %s", host, port, err)
            print("migplane-agent: cannot listen on %s port %s: %s" % (host, port, err),
                  file=sys.stderr)
            return 1

    metrics_host, metrics_server = agent.options.metrics_bind_host, None
    if metrics_host:
        try:
            metrics_server = metrics_mod.serve(agent.metrics, metrics_host,
                                               agent.options.metrics_port)
        except OSError as err:
            LOG.error("Cannot serve metrics on %s port %s: %s", metrics_host,
                      agent.options.metrics_port, err)
            print("migplane-agent: cannot serve metrics on %s port %s: %s"
                  % (metrics_host, agent.options.metrics_port, err), file=sys.stderr)
            return 1
        LOG.info("Metrics served without authentication on http://%s:%s/metrics",
                 metrics_host, agent.options.metrics_port)

    stopping, reload_asked, wake = threading.Event(), threading.Event(), threading.Event()

    def stop(signum, frame):
        LOG.info("Signal %d: stopping", signum)
        stopping.set()
        wake.set()

    def reload(signum, frame):
        reload_asked.set()
        wake.set()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGHUP, reload)
    if agent.options.insecure_lab_mode:
        LOG.warning("insecure_lab_mode is on: this agent is for a throw-away lab only")
    LOG.info("migplane-agent %s for host %s (driver %s, my_live_migration_ip %s, "
             "max_concurrent %s, when_busy %s)", service.VERSION, agent.hostname,
             agent.driver.describe().name, agent.settings.host.my_live_migration_ip,
             agent.settings.concurrency.max_concurrent,
             agent.settings.concurrency.when_busy)
    threads = [(each, serve(each, name)) for each, _, _, name in servers]
    if where is not None:
        LOG.info("Answering peers where a guest runs on the migration plane too, %s "
                 "port %s", servers[1][1], servers[1][2])
    systemd.ready("Serving on %s" % server.url)
    agent.warn_if_certificate_expires()
    next_expiry_check = time.monotonic() + EXPIRY_CHECK_S
    while not stopping.is_set():
        wake.wait(1.0)
        wake.clear()
        if not all(thread.is_alive() for _, thread in threads):
            LOG.error("An HTTP server stopped unexpectedly")
            return 1
        if reload_asked.is_set() and not stopping.is_set():
            reload_asked.clear()
            reload_tls(conf, agent, server, where)
            next_expiry_check = 0
        if time.monotonic() >= next_expiry_check:
            agent.warn_if_certificate_expires()
            next_expiry_check = time.monotonic() + EXPIRY_CHECK_S
    systemd.stopping()
    agent.reconciler.stop()
    if metrics_server is not None:
        metrics_server.shutdown()
    for each, thread in threads:
        each.stop()
        thread.join(10)
    LOG.info("migplane-agent stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
