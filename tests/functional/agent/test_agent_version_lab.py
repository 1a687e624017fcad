"""``migplane-agent --version`` names the libvirt and QEMU its driver really talks to."""

import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.lab


def test_agent_version_asks_the_hosts_libvirtd(lab, tmp_path):
    host = lab.hosts[0]
    conf = tmp_path / "agent.conf"
    conf.write_text("[live_migration]\ndriver = libvirt\nhostname = %s\n"
                    "[driver_libvirt]\nconnection_uri = %s\n" % (host.name, host.uri))
    agent = Path(sys.executable).parent / "migplane-agent"
    done = subprocess.run([str(agent), "--config-file", str(conf), "--version"],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert re.search(r"^driver: libvirt \S+ \(libvirt \d+\.\d+\.\d+, QEMU \d+\.\d+\.\d+\)$",
                     done.stdout, re.M), done.stdout
