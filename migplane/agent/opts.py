"""Options of the agent (group ``[agent]``).

The agent also reads the core's options (``[DEFAULT] my_live_migration_ip``,
``[live_migration]``) and the driver's own group from the same file.
"""

from oslo_config import cfg

GROUP = "agent"
DEFAULT_PORT = 7480

agent_opts = [
    cfg.HostAddressOpt(
        "bind_host",
        default="127.0.0.1",
        help="Management address the agent listens on. Use this host's management "
             "address: the agent must never be reachable on the migration network."),
    cfg.PortOpt(
        "port",
        default=DEFAULT_PORT,
        help="TCP port the agent listens on."),
    cfg.ListOpt(
        "auth_tokens",
        default=[],
        secret=True,
        help="Tokens accepted from clients and peer agents (sent as "
             "'Authorization: Bearer <token>'). At least one is required; list "
             "several to rotate them."),
    cfg.StrOpt(
        "peer_token",
        secret=True,
        help="Token this agent presents to other agents (the destination of a "
             "migration it coordinates). Defaults to the first of auth_tokens."),
    cfg.DictOpt(
        "peers",
        default={},
        help="Other agents by host name, e.g. 'host-b:https://192.0.2.12:7480'. When "
             "set, a migration may only target these agents, so a client cannot make "
             "this agent send its peer_token elsewhere."),
    cfg.StrOpt(
        "cert_file",
        help="PEM certificate (chain) to serve HTTPS with; with key_file. Without "
             "both, the agent serves plain HTTP."),
    cfg.StrOpt(
        "key_file",
        help="PEM private key of cert_file."),
    cfg.StrOpt(
        "peer_ca_file",
        help="CA bundle to verify peer agents' HTTPS certificates with. Defaults to "
             "the system trust store."),
    cfg.IntOpt(
        "threads",
        default=16,
        min=2,
        help="Worker threads of the HTTP server (requests served at once)."),
    cfg.IntOpt(
        "step_timeout",
        default=600,
        min=1,
        help="Seconds to wait for a peer agent to answer one driver step."),
    cfg.IntOpt(
        "slot_lease",
        default=120,
        min=10,
        help="Seconds an incoming migration's slot is kept without a renewal from "
             "its source agent, so a source that died cannot hold it forever."),
    cfg.IntOpt(
        "history",
        default=100,
        min=1,
        help="Finished migrations this agent remembers for 'migplane list'."),
    cfg.IntOpt(
        "max_body_bytes",
        default=1024 * 1024,
        min=1024,
        help="Largest request body accepted, in bytes."),
    cfg.StrOpt(
        "state_dir",
        help="Directory of this agent's state: the SQLite database of migration "
             "records (migrations.sqlite3), written at each step, so that an agent "
             "that restarts finds the migrations it was running and finishes them "
             "(e.g. /var/lib/migplane). Unset: records are kept in memory only and "
             "lost with the process (the agent warns at start)."),
    cfg.IntOpt(
        "history_days",
        default=30,
        min=0,
        help="Finished migration records older than this many days are deleted "
             "(besides the 'history' count); 0 keeps them until 'history' drops them."),
]


def tokens(conf):
    """The accepted tokens, blanks dropped."""
    return [t.strip() for t in conf[GROUP].auth_tokens if t and t.strip()]


def peer_token(conf):
    token = conf[GROUP].peer_token
    if token:
        return token
    accepted = tokens(conf)
    return accepted[0] if accepted else None


def register_opts(conf):
    conf.register_opts(agent_opts, group=GROUP)


def list_opts():
    """The agent's options for oslo-config-generator."""
    return [(GROUP, agent_opts)]

