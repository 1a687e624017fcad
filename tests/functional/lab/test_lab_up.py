"""A 2-host lab is really up: own libvirtds, names, UUIDs and both planes."""

import json
import xml.etree.ElementTree as ET

import libvirt
import pytest

pytestmark = pytest.mark.lab


def _caps_uuid(uri):
    conn = libvirt.open(uri)
    try:
        return conn.getHostname(), ET.fromstring(conn.getCapabilities()).findtext("host/uuid")
    finally:
        conn.close()


def test_each_host_has_its_own_libvirtd(lab):
    seen = {h.name: _caps_uuid(h.uri) for h in lab.hosts}
    assert {h: name for h, (name, _) in seen.items()} == {"host-a": "host-a", "host-b": "host-b"}
    uuids = [u for _, u in seen.values()]
    assert len(set(uuids)) == 2 and all(uuids)
    assert len({h.libvirtd_pid for h in lab.hosts}) == 2
    for h in lab.hosts:
        assert h.run(["hostname"]).stdout.strip() == h.name
        assert h.libvirtd_alive()


def test_hosts_reach_each_other_on_both_planes(lab):
    a, b = lab.hosts
    for ip in b.addresses():
        assert a.ping(ip), f"host-a cannot reach {ip}"
    for ip in a.addresses():
        assert b.ping(ip), f"host-b cannot reach {ip}"


def test_controller_sees_only_the_management_plane(lab):
    for h in lab.hosts:
        assert lab.controller_ping(h.mgmt_ip)
        assert lab.controller_ping(h.mgmt_ip6)
        assert not lab.controller_ping(h.mig_ip)
        assert not lab.controller_ping(h.mig_ip6)
    # and it reaches every libvirtd by name over TCP, as peers do
    for h in lab.hosts:
        cp = lab.run_controller(["virsh", "-c", h.tcp_uri, "hostname"])
        assert cp.stdout.strip() == h.name


def test_peers_resolve_names_to_the_right_plane(lab):
    a, b = lab.hosts
    out = a.run(["getent", "hosts", b.name]).stdout.split()
    assert out[0] == b.mgmt_ip
    out = a.run(["getent", "hosts", b.mig_name]).stdout.split()
    assert out[0] == b.mig_ip


def test_status_is_json_and_healthy(lab):
    st = lab.status()
    json.dumps(st)
    assert st["healthy"]
    assert [h["name"] for h in st["hosts"]] == ["host-a", "host-b"]
    for h in st["hosts"]:
        assert h["links"] == {"management": True, "migration": True}
        assert set(h["counters"]) == {"management", "migration"}



def _libvirtd_tcp_addrs(host):
    """Local addresses libvirtd's TCP socket (port 16509) is bound to in `host`."""
    out = host.run(["ss", "-Hltn", "sport = :16509"]).stdout
    return {line.split()[3].rsplit(":", 1)[0].strip("[]") for line in out.splitlines()}


def _virsh_hostname(frm, uri):
    return frm.run(["virsh", "-c", uri, "hostname"], check=False, timeout=30)


def test_libvirtd_listens_on_management_unless_told_otherwise(lab):
    from migplane.lab import Lab

    a, b = lab.hosts
    mig_uri = f"qemu+tcp://{b.mig_name}/system"
    assert _libvirtd_tcp_addrs(b) == {b.mgmt_ip}
    assert _virsh_hostname(a, mig_uri).returncode != 0       # not on the migration plane
    old_pid = b.libvirtd_pid
    try:
        b.set_libvirtd_listen("all")
        assert b.libvirtd_alive() and b.libvirtd_pid != old_pid
        assert _libvirtd_tcp_addrs(b) <= {"*", "0.0.0.0", "::"}
        assert _virsh_hostname(a, mig_uri).stdout.strip() == "host-b"
        again = Lab.load(lab.name).host("host-b")             # kept in the state file
        assert again.libvirtd_listen == "all" and again.libvirtd_pid == b.libvirtd_pid
    finally:
        b.set_libvirtd_listen("management")
    assert _libvirtd_tcp_addrs(b) == {b.mgmt_ip}
    assert Lab.load(lab.name).host("host-b").libvirtd_listen == "management"
    with pytest.raises(ValueError):
        b.set_libvirtd_listen("everywhere")

def test_root_namespace_is_untouched(lab):
    import subprocess

    links = subprocess.run(["ip", "-j", "addr"], capture_output=True, text=True).stdout
    for h in lab.hosts:
        for ip in h.addresses():
            assert ip not in links
    assert "mgmt0" not in links and "mig0" not in links
