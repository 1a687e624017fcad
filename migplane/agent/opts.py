"""Options of the agent (group ``[agent]``).

The agent also reads the core's options (``[DEFAULT] my_live_migration_ip``,
``[live_migration]``) and the driver's own group from the same file.
"""

from oslo_config import cfg

GROUP = "agent"
DEFAULT_PORT = 7480
MIN_TOKEN_CHARS = 16
DEFAULT_STATE_DIR = "/var/lib/migplane"
#: Deepest nesting of objects and arrays in an answer from a peer.
PEER_ANSWER_DEPTH = 64

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
    cfg.PortOpt(
        "migration_plane_port",
        help="TCP port of the one question a peer agent may ask over the migration "
             "plane when the management plane is down: where a guest runs and whether "
             "it is paused (GET /v1/instances/<name>, peers' certificates only). "
             "Served on my_live_migration_ip only, never on a wildcard address; the "
             "same port on every host, and cert_file must name my_live_migration_ip. "
             "Unset: not served, and not asked."),
    cfg.ListOpt(
        "auth_tokens",
        default=[],
        secret=True,
        help="Operator tokens (sent by the CLI as 'Authorization: Bearer <token>'), "
             "at least %d characters each; list several to rotate them. They are "
             "never sent to other agents: peers authenticate with their host "
             "certificates." % MIN_TOKEN_CHARS),
    cfg.ListOpt(
        "operator_names",
        default=[],
        help="Operators may authenticate with a client certificate instead of a "
             "token: the certificate must be signed by ca_file and carry one of these "
             "subjectAltName DNS names. Never one of the peers' host names: an "
             "operator is not a peer, and a peer is not an operator."),
    cfg.DictOpt(
        "peers",
        default={},
        mutable=True,
        help="The other agents this one works with, by host name, e.g. "
             "'host-b:https://192.0.2.12:7480,host-c:https://192.0.2.13:7480'. A "
             "migration may only target one of them, always at this URL (never one a "
             "request names), and only these host names' certificates are accepted "
             "for peer calls (slots, destination steps). Each URL must be https://."),
    cfg.StrOpt(
        "cert_file",
        mutable=True,
        help="This host's own PEM certificate (chain), served as the HTTPS "
             "certificate and presented as the client certificate to peers. Its "
             "subjectAltName must hold this host's name ([live_migration] hostname) as "
             "a DNS name and the address peers dial. Required unless "
             "insecure_lab_mode. SIGHUP (systemctl reload) reads it, key_file, "
             "ca_file and peers again: new connections get the new certificate, "
             "migrations under way continue."),
    cfg.StrOpt(
        "key_file",
        mutable=True,
        help="PEM private key of cert_file; readable by its owner only."),
    cfg.StrOpt(
        "ca_file",
        deprecated_name="peer_ca_file",
        mutable=True,
        help="PEM CA bundle that signs the peers' certificates: verifies the peers "
             "this agent calls and the client certificates of peers calling it. "
             "Required when peers are set."),
    cfg.BoolOpt(
        "insecure_lab_mode",
        default=False,
        help="For a throw-away lab only: serve plain HTTP without cert_file, accept "
             "short tokens, readable keys, a wildcard bind_host and http:// peers. "
             "Peer calls still need a verified certificate. Never in production."),
    cfg.IntOpt(
        "threads",
        default=16,
        min=2,
        deprecated_for_removal=True,
        deprecated_reason="The server serves each connection in its own thread, up "
                          "to max_connections.",
        help="Ignored."),
    cfg.IntOpt(
        "max_connections",
        default=512,
        min=4,
        help="Connections served at once (one thread each); beyond, new connections "
             "are closed at once."),
    cfg.FloatOpt(
        "request_timeout",
        default=10.0,
        min=0.5,
        help="Seconds a client has, from connecting, to finish the TLS handshake and "
             "send the whole request (line, headers, body); then the connection is "
             "closed. Authentication comes after, so a slow or idle connection never "
             "holds anything but its own thread."),
    cfg.IntOpt(
        "max_header_bytes",
        default=16384,
        min=1024,
        help="Largest request line plus headers accepted, in bytes (431 beyond)."),
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
        "slot_max_lifetime",
        default=86400,
        min=60,
        help="Seconds an incoming migration's slot may be held in all, renewals "
             "included; then it expires even if its source keeps renewing it."),
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
        default=DEFAULT_STATE_DIR,
        help="Directory of this agent's state: the SQLite database of migration "
             "records and of the slots peers hold here (migrations.sqlite3), written "
             "at each step, so that an agent that restarts finds the migrations it was "
             "running and finishes them, and still serves the steps of its incoming "
             "ones. Created 0700 (files 0600); a directory others may read is refused "
             "at start. Empty: kept in memory only and lost with the process (the "
             "agent warns at start)."),
    cfg.IntOpt(
        "max_slots_per_peer",
        min=0,
        help="Slots of incoming migrations one peer may hold here at once. Unset or "
             "0: [live_migration] max_concurrent (an evacuating source may rightly "
             "hold them all); lower it so that one peer cannot take every slot."),
    cfg.IntOpt(
        "max_unauthenticated_per_address",
        default=64,
        min=1,
        help="Connections one client address may hold open before they authenticate "
             "(a token checked, or a client certificate naming a peer or an operator); "
             "one more from it closes its oldest such one. When max_connections is "
             "reached, the oldest connection that has not authenticated is closed to "
             "let a new one in, so idle clients cannot lock out authenticated ones."),
    cfg.IntOpt(
        "peer_answer_bytes",
        default=1024 * 1024,
        min=4096,
        help="Largest answer read from a peer agent, in bytes (headers and body); a "
             "larger one fails the step. Its JSON may nest %d levels at most."
             % PEER_ANSWER_DEPTH),
    cfg.FloatOpt(
        "peer_answer_timeout",
        default=30.0,
        min=1.0,
        help="Seconds a peer agent has to send its whole answer to one call, once it "
             "starts answering (step_timeout bounds the wait for the first byte)."),
    cfg.DictOpt(
        "wire_pins",
        default={},
        help="Versions of the objects this agent sends to its peers and clients, as "
             "name:version pairs (e.g. MigrateData:1.0,HostFacts:1.0), during a rolling "
             "upgrade until every host speaks the newer versions; envelopes:off sends "
             "the plain bodies of the release before versioned bodies. Empty: the "
             "newest versions. The MIGPLANE_WIRE_PINS environment variable "
             "(name=version,...) overrides it name by name."),
    cfg.IntOpt(
        "history_days",
        default=30,
        min=0,
        help="Finished migration records older than this many days are deleted "
             "(besides the 'history' count); 0 keeps them until 'history' drops them."),
    cfg.HostAddressOpt(
        "metrics_bind_host",
        help="An address of a scrape network on which GET /metrics is also served, "
             "over plain HTTP and without authentication, on metrics_port. Unset: "
             "metrics are served only on the agent's own address, to operators (a "
             "token or an operator certificate). Give a wildcard (0.0.0.0, ::) only "
             "if every network of this host may read the metrics."),
    cfg.PortOpt(
        "metrics_port",
        default=9480,
        help="TCP port of metrics_bind_host."),
]


def tokens(conf):
    """The accepted tokens, blanks dropped."""
    return [t.strip() for t in conf[GROUP].auth_tokens if t and t.strip()]


def register_opts(conf):
    conf.register_opts(agent_opts, group=GROUP)


def list_opts():
    """The agent's options for oslo-config-generator."""
    return [(GROUP, agent_opts)]



def config_text(sections):
    """An agent.conf as text, from ``{group: {option: value}}`` (``DEFAULT`` for
    the default group): lists are joined with commas, dicts written as
    ``key:value`` pairs, booleans in lower case; an option whose value is None
    is left out. The lab, the benchmark and tests write their agents' files
    with it."""
    lines = []
    for group, options in sections.items():
        lines.append("[%s]" % group)
        for name, value in options.items():
            if value is None:
                continue
            if isinstance(value, bool):
                value = "true" if value else "false"
            elif isinstance(value, dict):
                value = ",".join("%s:%s" % kv for kv in sorted(value.items()))
            elif isinstance(value, (list, tuple)):
                value = ",".join(str(v) for v in value)
            lines.append("%s = %s" % (name, value))
        lines.append("")
    return "\n".join(lines)
