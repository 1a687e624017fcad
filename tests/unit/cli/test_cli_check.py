"""``migplane check``: a verdict per check, the probe goes over real TCP on 127.0.0.1."""

import json

import pytest

from migplane.agent import testing
from migplane.cli.commands import check as check_mod

TOKEN = testing.TOKEN


@pytest.fixture
def loopback_b(world, start_agent):
    """host-b whose migration-plane address is 127.0.0.1, so the probe can bind it."""
    world.hosts["host-b"].addresses["127.0.0.1"] = "migration"
    a = start_agent("host-a")
    # its agent binds 127.0.0.1 too: only a lab may do that
    b = start_agent("host-b", my_live_migration_ip="127.0.0.1",
                    agent_options={"insecure_lab_mode": True})
    return a, b


def args(a, b):
    return ["--from", a.url, "--to", b.url, "--token", TOKEN]


def test_all_checks_pass(cli, loopback_b):
    code, out, _ = cli("check", *args(*loopback_b))
    assert code == 0, out
    assert "PASS  inbound address configured  host-b: my_live_migration_ip = 127.0.0.1" \
        in out
    assert "PASS  inbound address present     127.0.0.1 is on mig0 of host-b (up)" in out
    assert "PASS  separate route" in out and "127.0.0.1 via mig0" in out
    assert "control to host-b via mgmt0" in out
    assert "PASS  reachable                   TCP 127.0.0.1 -> 127.0.0.1 port" in out
    assert "OK: the migration plane is usable" in out


def test_json_verdicts(cli, loopback_b):
    code, out, _ = cli("check", "--json", *args(*loopback_b))
    result = json.loads(out)
    assert code == 0 and result["ok"] is True
    assert [c["name"] for c in result["checks"]] == [
        check_mod.CONFIGURED, check_mod.PRESENT, check_mod.ROUTE, check_mod.REACHABLE]


def test_destination_without_inbound_address(cli, world, start_agent):
    a, b = start_agent("host-a"), start_agent("host-b")
    code, out, _ = cli("check", *args(a, b))
    assert code == 1
    assert "FAIL  inbound address configured  host-b has neither my_live_migration_ip" \
        in out
    assert out.count("SKIP") == 2 and "NOT OK" in out


def test_destination_whose_inbound_address_is_missing(cli, world, start_agent):
    a = start_agent("host-a")
    b = start_agent("host-b", my_live_migration_ip="198.51.100.99")
    code, out, _ = cli("check", *args(a, b))
    assert code == 1
    assert "PASS  inbound address configured  host-b: my_live_migration_ip = " \
           "198.51.100.99" in out
    assert "FAIL  inbound address present" in out
    assert "198.51.100.99 of host-b is unusable: it is not an address of this host" in out


def test_inbound_interface_down(cli, world, loopback_b):
    world.set_link("host-b", "migration", False)
    code, out, _ = cli("check", *args(*loopback_b))
    assert code == 1 and "127.0.0.1 is on mig0 of host-b, which is down" in out


def test_source_route_over_the_management_interface(cli, loopback_b):
    a, b = loopback_b
    a.agent.facts.route_overrides["127.0.0.1"] = "mgmt0"
    code, out, _ = cli("check", *args(a, b))
    assert code == 1
    assert "FAIL  separate route              host-a's migration data would share the " \
           "management interface: data to 127.0.0.1 via mgmt0" in out


def test_unreachable_inbound_address(cli, loopback_b, monkeypatch):
    a, b = loopback_b
    from migplane.agent import probe
    connect = probe.connect

    def refuse(host, port, payload, timeout=5.0):
        return connect(host, 9, payload, timeout)  # nothing listens on port 9
    monkeypatch.setattr(probe, "connect", refuse)
    code, out, _ = cli("check", *args(a, b))
    assert code == 1 and "FAIL  reachable" in out and "ConnectionRefusedError" in out


def test_inbound_checks_with_a_cidr():
    facts = {"my_live_migration_ip": None, "inbound_cidr": "198.51.100.0/24",
             "inbound": {"address": None, "error": "matches none"}}
    checks, addr = check_mod.inbound_checks("host-b", facts)
    assert addr is None and checks[0].verdict == "FAIL" and "matches none" in checks[0].detail
    facts["inbound"] = {"address": "198.51.100.12", "source": "cidr", "error": None}
    facts["interfaces"] = [{"ifname": "mig0", "up": True,
                            "addresses": [{"address": "198.51.100.12"}]}]
    checks, addr = check_mod.inbound_checks("host-b", facts)
    assert addr == "198.51.100.12" and "inbound_cidr 198.51.100.0/24 selects" in \
        checks[0].detail
