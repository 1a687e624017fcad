"""``migplane-agent``: serve this host's migration steps on the management plane.

Usage: ``migplane-agent --config-file /etc/migplane/agent.conf``. The file
holds ``[agent]`` (bind_host, port, auth_tokens, cert_file, key_file, ca_file,
peers, ...),
``[DEFAULT] my_live_migration_ip``, ``[live_migration]`` and the driver's
group. Exit status: 0 after SIGTERM/SIGINT, 2 on a configuration error,
1 when the server cannot start.
"""

import signal
import sys
import threading

from oslo_config import cfg
from oslo_log import log as logging

from migplane.agent import app as app_mod
from migplane.agent import opts
from migplane.agent import server as server_mod
from migplane.agent import service
from migplane.agent import whereplane
from migplane.core import exception
from migplane.core import opts as core_opts

LOG = logging.getLogger(__name__)
DOMAIN = "migplane-agent"
VERSION_HELP = ("--version prints the versions of migplane and of the libvirt and QEMU "
                "that the configured driver sees, then exits.")


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
        max_header_bytes=options.max_header_bytes, max_body_bytes=options.max_body_bytes)


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
    for each, host, port, _ in servers:
        try:
            each.prepare()
        except OSError as err:
            LOG.error("Cannot listen on %s port %s: %s", host, port, err)
            print("migplane-agent: cannot listen on %s port %s: %s" % (host, port, err),
                  file=sys.stderr)
            return 1

    stopping = threading.Event()

    def stop(signum, frame):
        LOG.info("Signal %d: stopping", signum)
        stopping.set()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
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
    while not stopping.wait(1.0):
        if not all(thread.is_alive() for _, thread in threads):
            LOG.error("An HTTP server stopped unexpectedly")
            return 1
    agent.reconciler.stop()
    for each, thread in threads:
        each.stop()
        thread.join(10)
    LOG.info("migplane-agent stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
