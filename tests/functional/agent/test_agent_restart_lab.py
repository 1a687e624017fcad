"""The source agent SIGKILLed mid-migration on the lab (issue 10, part 4).

Real libvirtd + QEMU: the job goes on without the agent; the restarted agent
finds its record in its state directory, watches the job to its end, runs
the post steps, and the attached ``migplane migrate`` (which kept following
the same ID) reports the real outcome.
"""

import json
import sys
import threading
import time

import pytest

from migplane.bench import faults
from migplane.lab import agents as agents_mod
from migplane.lab import guest
from migplane.lab.console import ConsoleWatcher

libvirt = pytest.importorskip("libvirt")
pytestmark = pytest.mark.lab


def _show(agents, migration_id):
    done = agents.run_cli("show", migration_id, "--json", *agents.cli_args(), timeout=60)
    return json.loads(done.stdout) if done.returncode == 0 else None


def _lines_of(stream):
    """Read ``stream`` in a thread; the lines so far, and the thread."""
    lines = []

    def read():
        for line in stream:
            lines.append(line)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    return lines, reader


def test_migrate_survives_a_sigkill_of_the_source_agent(lab, lab_agents):
    agents = lab_agents
    a, b = lab.hosts
    name = "ag-restart"
    try:
        with ConsoleWatcher.for_domain(lab.hosts, name) as w:
            guest.define_guest(a, name, lab.build_guest(), memory_mib=64,
                               cmdline=guest.cmdline(tick_ms=50, dirty_mib=8,
                                                     rate_mib_s=2, stamp_mib=24))
            w.wait_ready()
            # 4 MiB/s: the transfer takes about 20 s, long enough to kill and restart
            watcher = agents.start_cli("migrate", name, "--from", "host-a", "--to", "host-b",
                                       "--bandwidth", "4", *agents.cli_args())
            out_lines, out_reader = _lines_of(watcher.stdout)
            err_lines, err_reader = _lines_of(watcher.stderr)
            try:
                record = agents.transferring(name)
                assert record and record["status"] == "running", record
                migration_id = record["id"]
                agents.kill(a)  # SIGKILL: no cleanup, the job goes on in libvirtd
                deadline = time.monotonic() + 120
                while not any("reconnecting" in line for line in err_lines):
                    assert time.monotonic() < deadline, "the CLI never found the agent gone"
                    time.sleep(0.1)
                agents.start(a, my_ip=a.mig_ip)
                watcher.wait(timeout=300)
            finally:
                if watcher.poll() is None:
                    watcher.kill()
                    watcher.wait()
            out_reader.join(60)
            err_reader.join(60)
            out, err = "".join(out_lines), "".join(err_lines)
            assert watcher.returncode == 0, out + err
            w.wait_ticks(10, host="host-b", timeout=60)

        # the CLI followed the same migration through the restart and tells the truth
        assert "reconnecting" in err and "reconnected" in err, err
        assert "Migration %s of %s: completed (guest running on host-b)" % (
            migration_id, name) in out
        shown = _show(agents, migration_id)
        assert shown["status"] == "completed" and shown["result"]["running_on"] == "host-b"
        # bytes per plane, counted from before the transfer to after the restart
        assert shown["traffic"]["planes"]["migration"]["tx_bytes"] > 32 << 20
        kinds = [e["kind"] for e in shown["events"]]
        assert "transfer_started" in kinds and "reconciling" in kinds
        assert kinds[-1] == "completed"
        steps = [e["message"] for e in shown["events"] if e["kind"] == "step"]
        assert steps[-2:] == ["post_live_migration_at_destination",
                              "post_live_migration_at_source"]

        # on exactly one host, defined only there (the post steps ran), intact
        assert guest.domains(b)[name] == (libvirt.VIR_DOMAIN_RUNNING, True)
        assert name not in guest.domains(a)
        continuity = w.continuity()
        assert continuity, continuity
        assert len(w.boot_ids()) == 1 and w.max_bad() == 0
        # no slot is held on either agent any more
        held = json.loads(lab.run_controller(
            [sys.executable, "-c", faults.SLOT_PROBE, agents.token, agents.ca_file or "",
             *agents.urls.values()], env=agents_mod.agent_env(), check=False, timeout=60).stdout)
        assert all(s == {"running": 0, "incoming": 0} for s in held.values()), held
    finally:
        for host in lab.hosts:
            guest.destroy_guest(host, name)
