"""``migplane check``: is the migration plane between two hosts usable?

Each check has a verdict (PASS, FAIL, SKIP) and one line saying why, so an
operator sees which host and which setting to fix.
"""

import argparse
import dataclasses
import ipaddress
import sys
import time
import urllib.parse

from migplane.agent import errors as agent_errors
from migplane.cli import errors
from migplane.cli import output

PASS, FAIL, SKIP = "PASS", "FAIL", "SKIP"
CONFIGURED = "inbound address configured"
PRESENT = "inbound address present"
ROUTE = "separate route"
REACHABLE = "reachable"


@dataclasses.dataclass
class Check:
    name: str
    verdict: str
    detail: str

    def to_dict(self):
        return dataclasses.asdict(self)


def add_parser(subparsers, parents):
    p = subparsers.add_parser(
        "check", parents=parents, help="check the migration plane between two hosts",
        description="Check that the destination's inbound migration address is "
                    "configured and present, that the source's route to it leaves "
                    "through another interface than its route to the destination's "
                    "management address, and that it is reachable over TCP from the "
                    "source. Changes nothing (the probe listens for a few seconds).",
        epilog=errors.EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--from", dest="source", required=True, metavar="HOST")
    p.add_argument("--to", dest="destination", required=True, metavar="HOST")
    p.set_defaults(run=run)
    return p


def _ip(text):
    try:
        return ipaddress.ip_address(text.split("%", 1)[0])
    except ValueError:
        return None


def _present(facts, addr):
    """The interface holding ``addr`` on the destination, and whether it is up."""
    wanted = _ip(addr)
    for iface in facts.get("interfaces") or []:
        for a in iface["addresses"]:
            if wanted is not None and _ip(a["address"]) == wanted:
                return iface
    return None


def inbound_checks(dest_name, facts):
    """Checks 1-2: configured, and present on the destination. Returns the address."""
    configured = facts.get("my_live_migration_ip")
    cidr = facts.get("inbound_cidr")
    inbound = facts.get("inbound") or {}
    if not configured and not cidr:
        return [Check(CONFIGURED, FAIL, "%s has neither my_live_migration_ip nor "
                      "[live_migration] inbound_cidr set: migration data would go to its "
                      "host name on the management network" % dest_name)], None
    if not configured and not inbound.get("address"):
        return [Check(CONFIGURED, FAIL, inbound.get("error") or "no address selected")], None
    setting = ("my_live_migration_ip = %s" % configured if configured
               else "inbound_cidr %s selects %s" % (cidr, inbound["address"]))
    checks = [Check(CONFIGURED, PASS, "%s: %s" % (dest_name, setting))]
    if inbound.get("error"):
        return checks + [Check(PRESENT, FAIL, inbound["error"])], None
    addr = inbound["address"]
    if _ip(addr) is None:
        return checks + [Check(PRESENT, PASS, "%s is a host name; %s resolves it"
                               % (addr, dest_name))], addr
    iface = _present(facts, addr)
    if iface is None and facts.get("interfaces") is not None:
        return checks + [Check(PRESENT, FAIL, "%s is on no interface of %s" % (
            addr, dest_name))], None
    if iface is not None and not iface.get("up"):
        return checks + [Check(PRESENT, FAIL, "%s is on %s of %s, which is down" % (
            addr, iface["ifname"], dest_name))], None
    return checks + [Check(PRESENT, PASS, "%s is on %s of %s (up)" % (
        addr, iface["ifname"] if iface else "an interface", dest_name))], addr


def route_check(source, src_name, dest_name, inbound, management):
    """Check 3: the data and the control traffic leave the source separately."""
    data = source.get("/v1/host/route", params={"to": inbound})
    mgmt = source.get("/v1/host/route", params={"to": management})
    if not data.get("dev"):
        return Check(ROUTE, FAIL, "%s has no route to %s: %s" % (
            src_name, inbound, data.get("error")))
    if not mgmt.get("dev"):
        return Check(ROUTE, FAIL, "%s has no route to %s (%s's management "
                     "address): %s" % (src_name, management, dest_name, mgmt.get("error")))
    text = "data to %s via %s (src %s); control to %s via %s (src %s)" % (
        inbound, data["dev"], data.get("src"), management, mgmt["dev"], mgmt.get("src"))
    if data["dev"] == mgmt["dev"]:
        return Check(ROUTE, FAIL, "%s's migration data would share the management "
                     "interface: %s" % (src_name, text))
    return Check(ROUTE, PASS, text)


def reach_check(source, dest, src_name, dest_name, inbound):
    """Check 4: a TCP connection from the source reaches the inbound address."""
    listening = dest.post("/v1/probes", {"timeout": 10})
    answer = source.post("/v1/probes/connect", {
        "address": listening["address"], "port": listening["port"],
        "payload": listening["payload"], "timeout": 5})
    if not answer.get("connected"):
        return Check(REACHABLE, FAIL, "%s cannot connect to %s port %s: %s" % (
            src_name, listening["address"], listening["port"], answer.get("error")))
    deadline = time.monotonic() + 5
    state = listening
    while time.monotonic() < deadline:
        state = dest.get("/v1/probes/%s" % listening["id"])
        if state.get("received") or not state.get("open"):
            break
        time.sleep(0.1)
    if not state.get("received"):
        return Check(REACHABLE, FAIL, "%s connected to %s port %s but %s did not see "
                     "the probe arrive" % (src_name, listening["address"],
                                           listening["port"], dest_name))
    return Check(REACHABLE, PASS, "TCP %s -> %s port %s in %.1f ms" % (
        state.get("received_from"), listening["address"], listening["port"],
        1000 * answer.get("seconds", 0)))


def management_address(dest_facts, dest_url):
    """What the control connection dials: the destination's host name."""
    return dest_facts.get("hostname") or urllib.parse.urlsplit(dest_url).hostname


def checks(directory, source_host, dest_host):
    source = directory.client(source_host, "--from")
    dest = directory.client(dest_host, "--to")
    dest_facts = dest.get("/v1/host")
    src_facts = source.get("/v1/host")
    src_name, dest_name = src_facts["hostname"], dest_facts["hostname"]
    results, inbound = inbound_checks(dest_name, dest_facts)
    if inbound is None:
        return results + [Check(ROUTE, SKIP, "no usable inbound address"),
                          Check(REACHABLE, SKIP, "no usable inbound address")]
    try:
        results.append(route_check(source, src_name, dest_name, inbound,
                                   management_address(dest_facts, dest.url)))
    except agent_errors.BadRequest as err:
        results.append(Check(ROUTE, FAIL, str(err)))
    try:
        results.append(reach_check(source, dest, src_name, dest_name, inbound))
    except agent_errors.AgentError as err:
        results.append(Check(REACHABLE, FAIL, str(err)))
    return results


def run(args, directory):
    results = checks(directory, args.source, args.destination)
    ok = all(c.verdict != FAIL for c in results)
    if args.json:
        output.emit_json({"ok": ok, "checks": [c.to_dict() for c in results]})
    else:
        for c in results:
            sys.stdout.write("%-4s  %-27s %s\n" % (c.verdict, c.name, c.detail))
        sys.stdout.write("\n%s\n" % ("OK: the migration plane is usable" if ok else
                                     "NOT OK: fix the FAIL lines above"))
    return errors.OK if ok else errors.FAILED
