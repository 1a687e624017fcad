"""The ``examples:`` that end each subcommand's ``--help``.

One command per line, written exactly as an operator types it, with the
names the README uses (host-a, host-b, guest vm1, a migration ID from
``migplane list``). ``tests/unit/test_readme.py`` runs every agent-command
example against two agents and parse-checks the others, so none can rot.
"""

EXAMPLES = {
    "migrate": (
        "migplane migrate vm1 --from host-a --to host-b",
        "migplane migrate vm1 --from host-b --to host-a --bandwidth 200 --postcopy",
        "migplane migrate vm1 --from host-a --to host-b --detach --json",
    ),
    "explain": (
        "migplane explain vm1 --from host-a --to host-b",
        "migplane explain vm1 --from host-a --to host-b --block --json",
    ),
    "evacuate": (
        "migplane evacuate host-a --to host-b --dry-run",
        "migplane evacuate host-a --to host-b --dry-run --json",
        "migplane evacuate host-a --to host-b",
    ),
    "check": (
        "migplane check --from host-a --to host-b",
        "migplane --json check --from host-a --to host-b",
    ),
    "list": (
        "migplane list",
        "migplane list --on host-a --json",
    ),
    "show": (
        "migplane show ID",
        "migplane show ID --json",
    ),
    "abort": (
        "migplane abort ID",
    ),
    "force-complete": (
        "migplane force-complete ID --on host-a",
    ),
    "certs": (
        "migplane certs --out /tmp/pki host-a=192.0.2.11,198.51.100.11 "
        "host-b=192.0.2.12,198.51.100.12",
        "migplane certs --out /tmp/pki host-c=192.0.2.13,2001:db8:3::11 --days 90 --json",
        "migplane certs --out /tmp/pki --operator prometheus",
    ),
    "dashboard": (
        "migplane dashboard",
        "migplane dashboard --port 8080 --on host-a,host-b",
    ),
    "resume": (
        "migplane resume ID --on host-a",
    ),
    "release": (
        "migplane release ID --on host-a",
    ),
    "demo": (
        "migplane demo",
        "migplane demo --memory 256 --bandwidth 32 --keep",
    ),
}


def epilog(command, rest=""):
    """``examples:`` of ``command`` followed by ``rest`` (e.g. the exit codes)."""
    lines = EXAMPLES.get(command)
    if not lines:
        return rest
    return "examples:\n%s\n\n%s" % ("\n".join("  " + line for line in lines), rest)
