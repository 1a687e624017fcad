"""The destination agent down while its libvirtd runs (issue 16), on the lab.

Real libvirtd + QEMU, agents and CLI: the job goes on between the daemons and
the guest arrives, held paused by the handover; the source agent cannot ask
the destination whether it may resume it, so ``migplane migrate`` exits 5
(unresolved) saying nothing may be started by hand. Once the destination agent
is back, the source agent's reconciliation resumes the guest there and the
record says completed; the guest never ran on two hosts.
"""

import json
import time

import pytest

from migplane.lab import agents as agents_mod
from migplane.lab import guest
from migplane.lab.console import ConsoleWatcher

libvirt = pytest.importorskip("libvirt")
pytestmark = pytest.mark.lab


def _record(agents, args, migration_id):
    done = agents.run_cli("show", migration_id, "--json", *args, timeout=60)
    return json.loads(done.stdout) if done.returncode == 0 else None


def test_destination_agent_down_while_its_libvirtd_runs(lab, lab_agents):
    agents = lab_agents
    a, b = lab.hosts
    name = "ag-settle"
    args = agents.cli_args()  # both agents, named while both run
    try:
        with ConsoleWatcher.for_domain(lab.hosts, name) as w:
            guest.define_guest(a, name, lab.build_guest(), memory_mib=64,
                               cmdline=guest.cmdline(tick_ms=50, dirty_mib=4,
                                                     rate_mib_s=2, stamp_mib=48))
            w.wait_ready()
            cli = agents.start_cli(
                "migrate", name, "--from", "host-a", "--to", "host-b",
                # static: post-copy is not armed, so the paused handover is used
                "--bandwidth", "4", "--strategy", "static", "--json", *args)
            try:
                agents.transferring(name, args)
                agents.kill(b)  # libvirtd of host-b goes on receiving the guest
                out, err = cli.communicate(timeout=300)
            finally:
                if cli.poll() is None:
                    cli.kill()
            record = json.loads(out)
            assert cli.returncode == 5, (out, err)
            assert record["result"]["verdict"] == "unresolved"
            assert "Do not start %s by hand" % name in record["error"]
            # held paused on host-b, gone from host-a: one copy, not running
            assert guest.domains(b)[name][0] == libvirt.VIR_DOMAIN_PAUSED
            assert name not in guest.domains(a)
            agents.start(b, my_ip=b.mig_ip)
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline:
                shown = _record(agents, args, record["id"])
                if shown and shown["result"]["verdict"] != "unresolved":
                    break
                time.sleep(1)
            assert shown["result"]["verdict"] == "completed", shown["result"]
            assert shown["result"]["running_on"] == "host-b"
            w.wait_ticks(10, host="host-b", timeout=60)
        assert guest.domains(b)[name] == (libvirt.VIR_DOMAIN_RUNNING, True)
        assert name not in guest.domains(a)
        continuity = w.continuity()
        assert continuity, continuity
        assert len(w.boot_ids()) == 1 and w.max_bad() == 0
    finally:
        if b.name not in agents.pids:
            agents.start(b, my_ip=b.mig_ip)
        for host in lab.hosts:
            guest.destroy_guest(host, name)


def test_peers_ask_where_a_guest_runs_over_the_migration_plane(lab, lab_agents):
    """With host-a's management link down, its agent's certificate still gets the
    one answer from host-b's agent on host-b's migration address, and nothing
    else; host-b's management address is unreachable meanwhile."""
    agents = lab_agents
    a, b = lab.hosts
    name = "ag-where"
    cert, key = agents.cert(a)
    port = agents_mod.MIGRATION_PLANE_PORT

    def ask(host_ip, path, port=port):
        done = a.run(["curl", "-sS", "--max-time", "5", "--cacert", agents.ca_file,
                      "--cert", str(cert), "--key", str(key), "-o", "-", "-w",
                      "\n%{http_code}", "https://%s:%d%s" % (host_ip, port, path)],
                     check=False, timeout=30)
        body, _, code = done.stdout.rpartition("\n")
        return code, body

    try:
        guest.define_guest(b, name, lab.build_guest(), memory_mib=64,
                           cmdline=guest.cmdline(tick_ms=50))
        a.set_link("management", False)
        code, body = ask(b.mig_ip, "/v1/instances/%s" % name)
        assert code == "200", body
        assert '"state": "running"' in body or '"state":"running"' in body, body
        assert ask(b.mig_ip, "/v1/host")[0] == "404"
        # the agent's own port on the management plane: cut off
        assert ask(b.mgmt_ip, "/v1/instances/%s" % name, port=agents_mod.PORT)[0] == "000"
    finally:
        a.set_link("management", True)
        guest.destroy_guest(b, name)
