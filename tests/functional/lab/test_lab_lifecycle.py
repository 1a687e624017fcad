"""Lab teardown leaves nothing behind, also after the creating process
died without cleaning up; three hosts work; the CLI drives it."""

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from migplane.lab import Lab
from migplane.lab import cli
from migplane.lab.proc import alive
from migplane.lab.proc import netns_pids
from migplane.lab.state import state_path

pytestmark = pytest.mark.lab

ROOT = Path(__file__).resolve().parents[3]


def _leftovers(name, pids, dirs):
    out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    ns = [line.split()[0] for line in out.splitlines() if line.startswith(f"{name}-")]
    etc = [p.name for p in Path("/etc/netns").glob(f"{name}-*")]
    live = [p for p in pids if alive(p)]
    left_dirs = [str(d) for d in dirs if Path(d).exists()]
    state = state_path(name).exists()
    return {k: v for k, v in dict(netns=ns, etc=etc, pids=live, dirs=left_dirs,
                                  state=state).items() if v}


def test_down_after_crash_with_three_hosts_and_a_guest(lab_env):
    """A process builds a 3-host lab, starts a guest on host-c and is SIGKILLed;
    `Lab.load(name).down()` alone must remove everything."""
    name = f"t{os.getpid()}x"
    script = textwrap.dedent(f"""
        import os, signal
        from migplane.lab import Lab, guest
        lab = Lab({name!r}, hosts=3).up()
        a, b, c = lab.hosts
        assert a.ping(c.mig_ip) and c.ping(b.mig_ip6) and b.ping(a.mgmt_ip)
        assert lab.controller_ping(c.mgmt_ip) and not lab.controller_ping(c.mig_ip)
        guest.define_guest(c, "crashg", lab.build_guest())
        os.kill(os.getpid(), signal.SIGKILL)
    """)
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    try:
        cp = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True,
                            text=True, timeout=120)
        assert cp.returncode == -9, cp.stderr
        lab = Lab.load(name)
        assert [h.name for h in lab.hosts] == ["host-a", "host-b", "host-c"]
        pids = [p for h in lab.hosts for p in netns_pids(h.netns)]
        qemu = [p for p in pids if "qemu" in Path(f"/proc/{p}/comm").read_text()]
        assert len(qemu) == 1, "the guest should be running on host-c"
        assert lab.status()["healthy"]
        dirs = [lab.base_dir, lab.image_dir]
        lab.down()
        assert _leftovers(name, pids, dirs) == {}
        Lab(name).down()     # idempotent, even without a state file
    finally:
        if Lab.exists(name):
            Lab.load(name).down()


def test_cli_up_status_down(lab_env, capsys):
    name = f"t{os.getpid()}y"
    try:
        assert cli.main(["up", "--name", name, "--hosts", "1"]) == 0
        up = json.loads(capsys.readouterr().out)
        assert up["healthy"] and up["hosts"][0]["name"] == "host-a"
        assert cli.main(["status", "--name", name]) == 0
        st = json.loads(capsys.readouterr().out)
        assert st["hosts"][0]["libvirtd_alive"]
        assert name in json.loads((cli.main(["list"]), capsys.readouterr().out)[1])["labs"]
        pids = [p for h in Lab.load(name).hosts for p in netns_pids(h.netns)]
        assert cli.main(["down", "--name", name]) == 0
        capsys.readouterr()
        assert _leftovers(name, pids, []) == {}
        assert cli.main(["status", "--name", name]) == 0
        assert json.loads(capsys.readouterr().out)["phase"] == "absent"
    finally:
        if Lab.exists(name):
            Lab.load(name).down()


def test_bad_names_are_refused():
    for bad in ("", "A", "1x", "x" * 21, "a/b", "a b"):
        with pytest.raises(ValueError):
            Lab(bad)
