"""``migplane certs``: a CA and per-host certificates two agents then use for mTLS."""

import json
import subprocess

import pytest

from migplane.agent import testing
from migplane.agent import tls


def issue(cli, out, *hosts, extra=()):
    code, stdout, err = cli("certs", "--out", out, *hosts, *extra)
    assert code == 0, err
    return stdout


def files(out, host):
    return {"cert_file": str(out / host / "agent-cert.pem"),
            "key_file": str(out / host / "agent-key.pem"),
            "ca_file": str(out / host / "ca-cert.pem")}


def test_two_hosts_issued_by_certs_migrate_between_their_agents(
        cli, tmp_path, world, start_agent, client, monkeypatch):
    out = tmp_path / "pki"
    issue(cli, out, "host-a=127.0.0.1,198.51.100.11", "host-b=127.0.0.1,198.51.100.12")
    world.add_guest("host-a", "vm1", memory_mib=256, dirty_mib_s=5)
    a = start_agent("host-a", agent_options=files(out, "host-a"))
    start_agent("host-b", agent_options=files(out, "host-b"),
                my_live_migration_ip="198.51.100.12")
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(out / "ca" / "ca-cert.pem"))
    record = client(a).post("/v1/migrations", {"instance": "vm1",
                                               "destination": {"host": "host-b"}})
    assert testing.wait_for(client(a), record["id"])["status"] == "completed"
    assert world.where("vm1") == ["host-b"]


def test_what_a_host_certificate_holds(cli, tmp_path):
    out = tmp_path / "pki"
    issue(cli, out, "host-a=192.0.2.11,198.51.100.11,2001:db8:1::11")
    cert = out / "host-a" / "agent-cert.pem"
    text = subprocess.run(["openssl", "x509", "-in", cert, "-noout", "-text"],
                          capture_output=True, text=True, check=True).stdout
    assert "TLS Web Server Authentication, TLS Web Client Authentication" in text
    assert "Digital Signature, Key Encipherment" in text
    assert "DNS:host-a, IP Address:192.0.2.11, IP Address:198.51.100.11, " \
           "IP Address:2001:DB8:1:0:0:0:0:11" in text
    assert "CN=host-a" in text or "CN = host-a" in text
    subprocess.run(["openssl", "verify", "-CAfile", out / "ca" / "ca-cert.pem", cert],
                   check=True, capture_output=True)
    for key in (out / "host-a" / "agent-key.pem", out / "ca" / "ca-key.pem"):
        assert key.stat().st_mode & 0o777 == 0o600
    for directory in (out / "ca", out / "host-a"):
        assert directory.stat().st_mode & 0o777 == 0o700
    assert (out / "host-a" / "ca-cert.pem").read_bytes() == \
        (out / "ca" / "ca-cert.pem").read_bytes()


def test_a_second_run_renews_under_the_same_ca(cli, tmp_path):
    out = tmp_path / "pki"
    first = json.loads(issue(cli, out, "host-a=192.0.2.11", extra=["--json"]))
    ca = (out / "ca" / "ca-cert.pem").read_bytes()
    second = json.loads(issue(cli, out, "host-a=192.0.2.11", "host-b=192.0.2.12",
                              extra=["--json", "--days", "90"]))
    assert first["ca"]["created"] and not second["ca"]["created"]
    assert (out / "ca" / "ca-cert.pem").read_bytes() == ca
    assert first["hosts"][0]["serial"] != second["hosts"][0]["serial"]
    assert [h["host"] for h in second["hosts"]] == ["host-a", "host-b"]
    cert = tls.read_certificate(out / "host-b" / "agent-cert.pem")
    assert 89 * 86400 < cert.not_after - cert.not_before <= 90 * 86400


@pytest.mark.parametrize("hosts,message", [
    (["host-a"], "names no address"),
    (["host-a="], "names no address"),
    (["192.0.2.11=192.0.2.11"], "host name comes first"),
    (["host-a-=192.0.2.11"], "host-a-"),
    (["host-a=192.0.2.11/24"], "192.0.2.11/24"),
    (["host-a=192.0.2.11", "host-a=192.0.2.12"], "given twice"),
    (["ca=192.0.2.11"], "OUT/ca"),
    (["operators=192.0.2.11"], "OUT/operators"),
])
def test_bad_hosts_are_usage_errors_naming_them(cli, tmp_path, capsys, hosts, message):
    try:
        code, _, err = cli("certs", "--out", tmp_path / "pki", *hosts)
    except SystemExit as done:  # argparse's usage error
        code, err = done.code, capsys.readouterr().err
    assert code == 2
    assert not (tmp_path / "pki").exists()
    assert message in err and "Traceback" not in err


def test_an_operator_certificate_is_accepted_instead_of_a_token(
        cli, tmp_path, world, start_agent, monkeypatch):
    import requests

    out = tmp_path / "pki"
    issue(cli, out, "host-a=127.0.0.1", extra=["--operator", "prometheus"])
    operator = (str(out / "operators" / "prometheus" / "operator-cert.pem"),
                str(out / "operators" / "prometheus" / "operator-key.pem"))
    text = subprocess.run(["openssl", "x509", "-in", operator[0], "-noout", "-text"],
                          capture_output=True, text=True, check=True).stdout
    assert "TLS Web Client Authentication" in text and "Server" not in text
    assert (out / "operators" / "prometheus" / "operator-key.pem").stat().st_mode \
        & 0o777 == 0o600
    a = start_agent("host-a", agent_options=dict(files(out, "host-a"),
                                                 operator_names=["prometheus"]))
    ca = str(out / "ca" / "ca-cert.pem")
    assert requests.get(a.url + "/v1/host", cert=operator, verify=ca,
                        timeout=10).status_code == 200
    assert requests.get(a.url + "/v1/host", verify=ca, timeout=10).status_code == 401


def test_nothing_to_issue_is_a_usage_error(cli, tmp_path):
    code, _, err = cli("certs", "--out", tmp_path / "pki")
    assert code == 2 and "--operator" in err
