"""Certificates rotated mid-migration on the lab, with no downtime of the agents.

Real libvirtd + QEMU: while a guest migrates host-a -> host-b, both agents
get new certificates from the same CA in their files and a SIGHUP (what
``systemctl reload migplane-agent`` sends). The migration, whose steps are
peer calls over mutual TLS, completes; the CLI that follows it never loses
the agent; new connections are served with the new certificates.
"""

import json

import pytest

from migplane.agent import tls
from migplane.lab import guest
from migplane.lab.console import ConsoleWatcher

libvirt = pytest.importorskip("libvirt")
pytestmark = pytest.mark.lab


def test_certificates_rotate_while_a_guest_migrates(lab, lab_agents):
    agents = lab_agents
    a, b = lab.hosts
    name = "ag-rotate"
    old = {h.name: agents.served_serial(h) for h in (a, b)}
    assert old == {h.name: tls.read_certificate(agents.cert(h)[0]).serial for h in (a, b)}
    try:
        with ConsoleWatcher.for_domain(lab.hosts, name) as w:
            guest.define_guest(a, name, lab.build_guest(), memory_mib=64,
                               cmdline=guest.cmdline(tick_ms=50, dirty_mib=8,
                                                     rate_mib_s=2, stamp_mib=24))
            w.wait_ready()
            # 4 MiB/s: the transfer takes about 20 s, long enough to rotate both
            watcher = agents.start_cli("migrate", name, "--from", "host-a", "--to", "host-b",
                                       "--bandwidth", "4", *agents.cli_args())
            try:
                record = agents.transferring(name)
                assert record and record["status"] == "running", record
                new = {h.name: agents.rotate_certificate(h) for h in (b, a)}
                # still transferring: the rotation happened mid-migration
                shown = json.loads(agents.run_cli("show", record["id"], "--json",
                                                  *agents.cli_args(), timeout=60).stdout)
                assert shown["status"] == "running", shown["status"]
                served = {h.name: agents.served_serial(h) for h in (a, b)}
                out, err = watcher.communicate(timeout=300)
            finally:
                if watcher.poll() is None:
                    watcher.kill()
            assert watcher.returncode == 0, out + err
            w.wait_ticks(10, host="host-b", timeout=60)

        assert served == new and all(new[n] != old[n] for n in new)
        assert "Migration %s of %s: completed (guest running on host-b)" % (
            record["id"], name) in out
        assert "reconnecting" not in err, err
        shown = json.loads(agents.run_cli("show", record["id"], "--json",
                                          *agents.cli_args(), timeout=60).stdout)
        assert shown["status"] == "completed"
        steps = [e["message"] for e in shown["events"] if e["kind"] == "step"]
        assert steps[-2:] == ["post_live_migration_at_destination",
                              "post_live_migration_at_source"]
        continuity = w.continuity()
        assert continuity, continuity
        assert len(w.boot_ids()) == 1 and w.max_bad() == 0
        for host in (a, b):
            assert "Reload refused" not in agents.tail(host, chars=10 ** 6)
    finally:
        for host in lab.hosts:
            guest.destroy_guest(host, name)
