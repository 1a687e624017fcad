"""The systemd unit of migplane-agent, its installer, and the notifications.

systemd does not run here: the unit is checked with ``systemd-analyze verify``
(which needs no running systemd) and the notifications are read from a
datagram socket of the test's own (the READY/RELOADING/STOPPING sequence of
a real agent: tests/unit/agent/test_agent_main.py).
"""

import configparser
import os
import socket
import subprocess
from pathlib import Path

import pytest

from migplane.agent import opts as agent_opts
from migplane.agent import systemd

ROOT = Path(__file__).resolve().parents[3]
UNIT = ROOT / "etc" / "systemd" / "migplane-agent.service"
INSTALL = ROOT / "tools" / "install-service.sh"


def unit_options(path=UNIT):
    parser = configparser.ConfigParser(interpolation=None, strict=True)
    parser.optionxform = str
    parser.read_string(Path(path).read_text())
    return parser


@pytest.fixture
def fake_agent(tmp_path):
    """An executable standing in for the installed migplane-agent."""
    path = tmp_path / "bin" / "migplane-agent"
    path.parent.mkdir()
    path.write_text("#!/bin/sh\nexit 0\n")
    path.chmod(0o755)
    return path


def install(root, agent):
    return subprocess.run(["bash", str(INSTALL), "--root", str(root), "--agent", str(agent)],
                          capture_output=True, text=True, timeout=60, check=False)


def verify(unit):
    """``systemd-analyze verify``'s complaints about ``unit`` ('' when none): it
    exits 0 on unknown keys and bad values, so its output is what tells."""
    done = subprocess.run(["systemd-analyze", "verify", str(unit)], capture_output=True,
                          text=True, timeout=60, check=False)
    return (done.stdout + done.stderr).strip() or ("exit %d" % done.returncode
                                                   if done.returncode else "")


def test_the_installed_unit_verifies(tmp_path, fake_agent):
    done = install(tmp_path / "root", fake_agent)
    assert done.returncode == 0, done.stderr
    unit = tmp_path / "root" / "etc" / "systemd" / "system" / "migplane-agent.service"
    assert verify(unit) == ""
    service = unit_options(unit)["Service"]
    assert service["ExecStart"].startswith("%s --config-file " % fake_agent)
    assert (tmp_path / "root" / "etc" / "migplane").stat().st_mode & 0o777 == 0o700


def test_verify_catches_a_broken_unit(tmp_path, fake_agent):
    """The check above could fail: a typo in a key, a bad value, a missing binary."""
    done = install(tmp_path / "root", fake_agent)
    assert done.returncode == 0, done.stderr
    unit = tmp_path / "root" / "etc" / "systemd" / "system" / "migplane-agent.service"
    text = unit.read_text()
    for broken in (text.replace("Restart=on-failure", "Restat=on-failure"),
                   text.replace("Type=notify", "Type=notifyy"),
                   text.replace(str(fake_agent), str(tmp_path / "missing"))):
        unit.write_text(broken)
        assert verify(unit) != ""


def test_the_installer_refuses_a_missing_agent(tmp_path):
    done = install(tmp_path / "root", tmp_path / "no-such-agent")
    assert done.returncode == 2
    assert "no-such-agent" in done.stderr
    assert not (tmp_path / "root" / "etc" / "systemd").exists()


def test_the_unit_is_a_hardened_notify_service_that_reaches_libvirt():
    service = unit_options()["Service"]
    assert service["Type"] == "notify"
    assert service["ExecReload"] == "/bin/kill -HUP $MAINPID"
    assert service["Restart"] == "on-failure"
    assert service["RestartPreventExitStatus"] == "2"  # a configuration error
    assert service["StateDirectory"] == "migplane"
    assert service["StateDirectoryMode"] == "0700"
    for option in ("NoNewPrivileges", "ProtectHome", "PrivateTmp"):
        assert service[option] == "yes", option
    assert service["ProtectSystem"] == "strict"
    writable = service["ReadWritePaths"].split()
    assert "/var/lib/migplane" in writable and "-/run/libvirt" in writable
    assert {"AF_UNIX", "AF_NETLINK"} <= set(service["RestrictAddressFamilies"].split())
    # the option's default (the tests' autouse fixture moves the live one aside)
    assert agent_opts.DEFAULT_STATE_DIR == "/var/lib/" + service["StateDirectory"]


@pytest.mark.parametrize("value,expected", [
    ("/run/systemd/notify", "/run/systemd/notify"),
    ("@abstract/name", "\0abstract/name"),
    ("", None), (None, None), ("vsock:2:1234", None), ("relative", None),
])
def test_notify_socket_addresses(value, expected):
    assert systemd.address(value) == expected


@pytest.fixture
def listener(tmp_path):
    """A datagram socket standing in for systemd's, at a path."""
    path = tmp_path / "notify"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(path))
    sock.settimeout(10)
    yield str(path), sock
    sock.close()


def test_notify_sends_one_datagram_of_lines(listener):
    path, sock = listener
    assert systemd.notify("READY=1", "STATUS=Serving", environ={"NOTIFY_SOCKET": path})
    assert sock.recv(4096) == b"READY=1\nSTATUS=Serving"


def test_notify_reaches_an_abstract_socket():
    name = "migplane-test-%d" % os.getpid()
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind("\0" + name)
        sock.settimeout(10)
        assert systemd.notify("STOPPING=1", environ={"NOTIFY_SOCKET": "@" + name})
        assert sock.recv(4096) == b"STOPPING=1"


def test_notify_without_systemd_does_nothing_and_never_raises(tmp_path, caplog):
    assert not systemd.notify("READY=1", environ={})
    assert not systemd.notify("READY=1",
                              environ={"NOTIFY_SOCKET": str(tmp_path / "gone")})
    assert "Cannot notify systemd" in caplog.text
