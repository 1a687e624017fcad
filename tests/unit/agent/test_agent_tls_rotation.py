"""Certificate rotation: the agent reads its TLS files and peers again, all or nothing.

New connections are served with the new certificate; a connection (or a peer
client) opened before keeps the old one; a bad new file leaves the agent
serving with what it had, and the error names the file.
"""

import logging
import socket
import ssl
import urllib.parse

import pytest

from migplane import pki as pki_mod
from migplane.agent import testing
from migplane.agent import tls
from migplane.core import exception


@pytest.fixture
def own_pki(tmp_path):
    """A CA of this test's own: its certificates are renewed in place."""
    return testing.TestPKI(tmp_path / "pki")


@pytest.fixture
def rotating(world, start_agent, own_pki, monkeypatch):
    """host-a's and host-b's agents with certificates from ``own_pki`` (which the
    operator's client trusts)."""
    world.add_guest("host-a", "vm1", memory_mib=256, dirty_mib_s=5)
    a = start_agent("host-a", agent_options=own_pki.options("host-a"))
    b = start_agent("host-b", agent_options=own_pki.options("host-b"))
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", own_pki.ca_file)
    return a, b


def connect(local, ca_file):
    """An open TLS connection to ``local`` (verified against ``ca_file``)."""
    parts = urllib.parse.urlsplit(local.url)
    context = ssl.create_default_context(cafile=ca_file)
    raw = socket.create_connection((parts.hostname, parts.port), timeout=10)
    return context.wrap_socket(raw, server_hostname=parts.hostname)


def served_serial(local, ca_file):
    """The serial of the certificate ``local`` serves a new connection."""
    with connect(local, ca_file) as conn:
        return int(conn.getpeercert()["serialNumber"], 16)


def reload(local):
    local.agent.reload_tls()
    local.server.set_ssl_context(local.agent.server_context)


def test_new_connections_see_the_renewed_certificate_open_ones_keep_theirs(
        rotating, own_pki, client):
    a, _ = rotating
    old = a.agent.certificate.serial
    assert served_serial(a, own_pki.ca_file) == old
    before = connect(a, own_pki.ca_file)  # handshake done with the old certificate
    new = own_pki.renew("host-a")
    assert new != old
    assert served_serial(a, own_pki.ca_file) == old  # nothing read before the reload
    reload(a)
    assert a.agent.certificate.serial == new
    assert served_serial(a, own_pki.ca_file) == new
    with before:
        assert int(before.getpeercert()["serialNumber"], 16) == old
        before.sendall(b"GET /v1/host HTTP/1.0\r\nAuthorization: Bearer %s\r\n\r\n"
                       % testing.TOKEN.encode())
        assert before.recv(64).startswith(b"HTTP/1.0 200")
    assert client(a).get("/v1/host")["hostname"] == "host-a"


def test_peer_calls_after_a_rotation_present_the_new_certificate(rotating, own_pki,
                                                                 client):
    a, b = rotating
    a.agent.conf.set_override("peers", {"host-b": b.url}, group="agent")
    new = own_pki.renew("host-a")
    reload(a)
    seen, app = [], b.server.app

    def recording(environ, start_response):  # the certificates host-b is called with
        cert = environ.get("migplane.peer_cert")
        if cert:
            seen.append(int(cert["serialNumber"], 16))
        return app(environ, start_response)

    b.server.app = recording
    record = client(a).post("/v1/migrations", {
        "instance": "vm1", "destination": {"host": "host-b"}})
    assert testing.wait_for(client(a), record["id"])["status"] == "completed"
    assert seen and set(seen) == {new}


@pytest.mark.parametrize("damage,option", [
    ("garbage-cert", "cert_file"),
    ("other-key", "cert_file"),
    ("readable-key", "key_file"),
    ("missing-ca", "ca_file"),
])
def test_a_bad_new_file_keeps_the_old_one_and_names_the_file(
        rotating, own_pki, tmp_path, caplog, damage, option):
    a, _ = rotating
    old = a.agent.certificate.serial
    cert, key = own_pki.issue("host-a")
    conf = a.agent.conf
    if damage == "garbage-cert":
        bad = tmp_path / "garbage.pem"
        bad.write_text("-----BEGIN CERTIFICATE-----\nnot base64\n"
                       "-----END CERTIFICATE-----\n")
        conf.set_override("cert_file", str(bad), group="agent")
    elif damage == "other-key":
        bad = tmp_path / "other"
        _, other_key = pki_mod.issue_agent(own_pki.ca_key, own_pki.ca_cert, bad, "host-a",
                                           ["127.0.0.1"])
        conf.set_override("key_file", str(other_key), group="agent")
        bad = cert
    elif damage == "readable-key":
        bad = tmp_path / "readable-key.pem"
        bad.write_bytes(open(key, "rb").read())
        bad.chmod(0o644)
        conf.set_override("key_file", str(bad), group="agent")
    else:
        bad = tmp_path / "no-such-ca.pem"
        conf.set_override("ca_file", str(bad), group="agent")
    with pytest.raises(exception.ConfigError) as err:
        a.agent.reload_tls()
    assert str(bad) in str(err.value) and option in str(err.value)
    assert a.agent.certificate.serial == old
    assert served_serial(a, own_pki.ca_file) == old


def test_switching_to_plain_http_needs_a_restart(rotating, own_pki):
    a, _ = rotating
    conf = a.agent.conf
    for name in ("cert_file", "key_file"):
        conf.set_override(name, None, group="agent")
    conf.set_override("insecure_lab_mode", True, group="agent")
    with pytest.raises(exception.ConfigError, match="needs a restart"):
        a.agent.reload_tls()
    assert a.agent.tls


def test_peers_are_read_again(rotating):
    a, _ = rotating
    a.agent.conf.set_override("peers", {"host-c": "https://192.0.2.13:7480"},
                              group="agent")
    reload(a)
    assert a.agent.peers == {"host-c": "https://192.0.2.13:7480"}


def test_the_agent_warns_thirty_days_before_its_certificate_expires(
        rotating, own_pki, caplog):
    a, _ = rotating
    not_after = a.agent.certificate.not_after
    caplog.set_level(logging.WARNING, logger="migplane.agent.service")
    assert not a.agent.warn_if_certificate_expires(now=not_after - 31 * 86400)
    assert not caplog.records
    assert a.agent.warn_if_certificate_expires(now=not_after - 29 * 86400)
    assert "expires in 29 days" in caplog.text
    assert own_pki.options("host-a")["cert_file"] in caplog.text
    assert a.agent.warn_if_certificate_expires(now=not_after + 1)
    assert "has expired" in caplog.text


def test_a_certificate_issued_for_a_week_is_warned_of_at_once(rotating, own_pki):
    a, _ = rotating
    own_pki.renew("host-a", days=7)
    reload(a)
    assert a.agent.warn_if_certificate_expires()


def test_certificate_not_after_reads_what_openssl_wrote(own_pki):
    import subprocess

    cert, _ = own_pki.issue("host-a")
    out = subprocess.run(["openssl", "x509", "-in", cert, "-noout", "-enddate", "-serial"],
                         capture_output=True, text=True, check=True).stdout
    fields = dict(line.split("=", 1) for line in out.splitlines())
    assert tls.certificate_not_after(cert) == ssl.cert_time_to_seconds(fields["notAfter"])
    assert tls.read_certificate(cert).serial == int(fields["serial"], 16)


@pytest.mark.parametrize("text", ["", "no PEM here", "-----BEGIN CERTIFICATE-----\n"
                                  "MIIB\n-----END CERTIFICATE-----\n"])
def test_an_unreadable_certificate_is_a_config_error_naming_the_file(tmp_path, text):
    path = tmp_path / "cert.pem"
    path.write_text(text)
    with pytest.raises(exception.ConfigError, match=str(path)):
        tls.read_certificate(path)
