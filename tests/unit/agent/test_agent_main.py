"""``migplane-agent`` itself: configuration file, TLS, oslo.log lines, signals."""

import logging
import os
import signal
import socket
import ssl
import threading
import time

import pytest
import requests

from migplane.agent import client as client_mod
from migplane.agent import errors
from migplane.agent import main as agent_main
from migplane.agent import opts as agent_opts
from migplane.agent import testing
from migplane.core import exception

TOKEN = testing.TOKEN


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def tls_lines(pki):
    """The [agent] lines giving host-a its certificate from the test CA."""
    return "\n".join("%s = %s" % kv for kv in pki.options("host-a").items())


def config_text(port, extra="", world="unit-tests", tls=None):
    """Raw text, not ``agent_opts.config_text``: these tests feed the parser
    lines as an operator writes them, malformed ones included."""
    lines = ["[DEFAULT]", "my_live_migration_ip = 198.51.100.11", "",
             "[agent]", "bind_host = 127.0.0.1", "port = %d" % port,
             "auth_tokens = %s" % TOKEN, tls or "insecure_lab_mode = true", extra, "",
             "[live_migration]", "driver = fake", "hostname = host-a",
             "max_concurrent = 2", "when_busy = refuse", "",
             "[driver_fake]", "world = %s" % world]
    return "\n".join(lines) + "\n"


def test_list_opts_names_the_agent_group():
    (group, options), = agent_opts.list_opts()
    assert group == "agent"
    names = {o.name for o in options}
    assert {"bind_host", "port", "auth_tokens", "cert_file", "key_file", "ca_file",
            "peers", "insecure_lab_mode", "request_timeout", "max_header_bytes",
            "max_connections", "slot_max_lifetime"} <= names
    assert "peer_token" not in names  # operator tokens are never sent to peers
    assert next(o for o in options if o.name == "auth_tokens").secret


def test_build_from_a_configuration_file(world, write_config, tls_lines, pki):
    port = free_port()
    text = config_text(port, "peers = host-b:https://192.0.2.12:7480", tls=tls_lines)
    text = text.replace("ca_file", "peer_ca_file")  # the deprecated name still works
    conf = agent_main.build_conf(["--config-file", write_config(text)])
    agent, server = agent_main.build(conf)
    assert agent.hostname == "host-a"
    assert agent.settings.host.my_live_migration_ip == "198.51.100.11"
    assert agent.settings.concurrency.when_busy == "refuse"
    assert agent.tokens == [TOKEN] and agent.tls
    assert agent.options.ca_file == pki.ca_file
    assert agent.peers == {"host-b": "https://192.0.2.12:7480"}
    assert server.address == ("127.0.0.1", port) and server.url.startswith("https://")


def test_plain_http_only_in_insecure_lab_mode(world, write_config):
    port = free_port()
    conf = agent_main.build_conf(["--config-file", write_config(config_text(port))])
    agent, server = agent_main.build(conf)
    assert not agent.tls and server.url.startswith("http://")


@pytest.mark.parametrize("extra,message", [
    ("auth_tokens = ", "auth_tokens"),
    ("peers = host-b:ftp//x", "peers"),
    ("peers = host-b:https://192.0.2.12:7480/x", "peers"),
])
def test_bad_agent_configuration_exits_2(world, write_config, capsys, extra, message):
    path = write_config(config_text(free_port(), extra))
    assert agent_main.main(["--config-file", path]) == 2
    assert message in capsys.readouterr().err


def unsafe_cases(pki, tmp):
    """(extra [agent] lines, text the error must hold) of setups refused at start."""
    cert, key = pki.issue("host-a")
    other_cert, other_key = pki.issue("host-b")
    readable = tmp / "readable-key.pem"
    readable.write_bytes(open(key, "rb").read())
    readable.chmod(0o644)
    garbage = tmp / "garbage.pem"
    garbage.write_text("not a certificate\n")
    tls = "cert_file = %s\nkey_file = %s\nca_file = %s\n" % (cert, key, pki.ca_file)
    return [
        ("", "cert_file"),  # plain HTTP
        ("auth_tokens = short\n" + tls, "auth_tokens"),
        ("cert_file = %s\nkey_file = %s" % (cert, readable), "readable by others"),
        ("bind_host = 0.0.0.0\n" + tls, "bind_host"),
        ("bind_host = ::\n" + tls, "bind_host"),
        ("bind_host = 198.51.100.11\n" + tls, "migration address"),
        ("peers = host-b:http://192.0.2.12:7480\n" + tls, "https://"),
        ("peers = host-b:https://192.0.2.12:7480\ncert_file = %s\nkey_file = %s"
         % (cert, key), "ca_file"),
        ("cert_file = /nonexistent.pem\nkey_file = %s" % key, "/nonexistent.pem"),
        ("cert_file = %s\nkey_file = /nonexistent.key" % cert, "/nonexistent.key"),
        ("cert_file = %s\nkey_file = %s" % (key, cert), "swapped"),
        ("cert_file = %s\nkey_file = %s" % (cert, other_key), "not a pair"),
        ("cert_file = %s\nkey_file = %s" % (garbage, key), "garbage.pem"),
        ("cert_file = %s\nkey_file = %s\nca_file = %s" % (cert, key, garbage),
         "garbage.pem"),
        ("cert_file = /x.pem", "cert_file and key_file"),
    ]


def test_unsafe_setups_refuse_to_start_with_exit_2(world, write_config, capsys, pki,
                                                   tmp_path):
    for extra, message in unsafe_cases(pki, tmp_path):
        text = config_text(free_port(), extra, tls="# no insecure_lab_mode")
        if "auth_tokens = short" in extra:
            text = text.replace("auth_tokens = %s\n" % TOKEN, "")
        path = write_config(text)
        assert agent_main.main(["--config-file", path]) == 2, extra
        err = capsys.readouterr().err
        assert message in err, (extra, err)
        assert "Traceback" not in err and TOKEN not in err and "short" not in err


def test_unparsable_option_exits_2(world, write_config, capsys):
    path = write_config(config_text(free_port()).replace("max_concurrent = 2",
                                                         "max_concurrent = many"))
    assert agent_main.main(["--config-file", path]) == 2
    assert "many" in capsys.readouterr().err


def test_port_in_use_exits_1(world, write_config, capsys):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        path = write_config(config_text(busy.getsockname()[1]))
        assert agent_main.main(["--config-file", path]) == 1
    assert "cannot listen" in capsys.readouterr().err


@pytest.fixture
def restore_process_state():
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    term, intr = signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)
    hup = signal.getsignal(signal.SIGHUP)
    yield
    for handler in list(root.handlers):
        if handler not in handlers:
            root.removeHandler(handler)
    root.setLevel(level)
    signal.signal(signal.SIGTERM, term)
    signal.signal(signal.SIGINT, intr)
    signal.signal(signal.SIGHUP, hup)


def test_main_serves_https_logs_like_oslo_and_stops_on_sigterm(
        world, write_config, tmp_path, pki, tls_lines, restore_process_state):
    cert = pki.ca_file
    port = free_port()
    log = tmp_path / "agent.log"
    path = write_config(config_text(port, tls=tls_lines))
    seen = {}

    def exercise():
        url = "https://127.0.0.1:%d" % port
        for _ in range(1200):  # up to a minute for main() to listen
            try:
                requests.get(url, verify=cert, timeout=2)
                break
            except requests.ConnectionError:
                time.sleep(0.05)
        else:
            return  # main() did not start: it returned, nothing to stop
        try:
            ok = client_mod.AgentClient(url, TOKEN, ca_file=cert)
            seen["host"] = ok.get("/v1/host")["hostname"]
            try:
                client_mod.AgentClient(url, TOKEN).get("/v1/host")  # system CAs
            except errors.AgentUnreachable as err:
                seen["untrusted"] = str(err)
            try:
                client_mod.AgentClient(url.replace("https", "http"), TOKEN).get("/v1/host")
            except errors.AgentError as err:
                seen["plain"] = str(err)
            try:
                client_mod.AgentClient(url, "wrong", ca_file=cert).get("/v1/host")
            except errors.Unauthorized as err:
                seen["wrong"] = str(err)
        finally:
            os.kill(os.getpid(), signal.SIGTERM)

    thread = threading.Thread(target=exercise)
    thread.start()
    code = agent_main.main(["--config-file", path, "--log-file", str(log)])
    thread.join(60)
    assert code == 0
    assert seen["host"] == "host-a"
    assert "CERTIFICATE_VERIFY_FAILED" in seen["untrusted"]
    assert "plain" in seen
    assert "not accepted" in seen["wrong"]
    text = log.read_text()
    assert " INFO migplane.agent.main [-] migplane-agent 1 for host host-a" in text
    assert "serving on https://127.0.0.1:%d" % port in text
    assert '"GET /v1/host" 401' in text and '"GET /v1/host" 200' in text
    assert TOKEN not in text and "wrong" not in text.replace("wrong_", "")
    assert "migplane-agent stopped" in text


def test_agent_refuses_to_start_without_tokens(world, host_conf):
    conf = host_conf("host-a", driver="fake")
    with pytest.raises(exception.ConfigError, match="auth_tokens"):
        testing.LocalAgent(conf)


def served_serial(port, ca_file):
    """The serial of the certificate served on a new connection to ``port``."""
    context = ssl.create_default_context(cafile=ca_file)
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw, \
            context.wrap_socket(raw, server_hostname="127.0.0.1") as conn:
        return int(conn.getpeercert()["serialNumber"], 16)


def test_main_notifies_systemd_and_reads_its_certificate_again_on_sighup(
        world, write_config, tmp_path, restore_process_state, monkeypatch):
    own = testing.TestPKI(tmp_path / "pki")
    tls = "\n".join("%s = %s" % kv for kv in own.options("host-a").items())
    cert = own.options("host-a")["cert_file"]
    port = free_port()
    log = tmp_path / "agent.log"
    path = write_config(config_text(port, tls=tls))
    name = "@migplane-test-notify-%d" % os.getpid()  # an abstract socket, as systemd's
    systemd_socket = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    systemd_socket.bind("\0" + name[1:])
    systemd_socket.settimeout(60)  # only turns a hang into a failure
    monkeypatch.setenv("NOTIFY_SOCKET", name)
    seen = {}

    def notification():
        return dict(line.split("=", 1) for line in
                    systemd_socket.recv(4096).decode().splitlines())

    def exercise():
        try:
            seen["ready"] = notification()
            seen["old"] = served_serial(port, own.ca_file)
            seen["new"] = own.renew("host-a")
            os.kill(os.getpid(), signal.SIGHUP)
            seen["reloading"], seen["reloaded"] = notification(), notification()
            seen["after"] = served_serial(port, own.ca_file)
            with open(cert, "w") as f:
                f.write("not a certificate\n")
            os.kill(os.getpid(), signal.SIGHUP)
            seen["refused"] = [notification(), notification()]
            seen["kept"] = served_serial(port, own.ca_file)
        finally:
            os.kill(os.getpid(), signal.SIGTERM)
            seen["stopping"] = notification()

    thread = threading.Thread(target=exercise)
    thread.start()
    try:
        code = agent_main.main(["--config-file", path, "--log-file", str(log)])
        thread.join(60)
    finally:
        systemd_socket.close()
    assert code == 0
    assert seen["ready"]["READY"] == "1"
    assert seen["ready"]["STATUS"] == "Serving on https://127.0.0.1:%d" % port
    assert seen["new"] != seen["old"]
    assert seen["reloading"]["RELOADING"] == "1" and seen["reloading"]["MONOTONIC_USEC"]
    assert seen["reloaded"]["READY"] == "1"
    assert seen["after"] == seen["new"]
    assert [n.get("RELOADING", n.get("READY")) for n in seen["refused"]] == ["1", "1"]
    assert seen["kept"] == seen["new"]
    assert seen["stopping"]["STOPPING"] == "1"
    text = log.read_text()
    assert "certificate %s (serial %x)" % (cert, seen["new"]) in text
    assert "Reload refused" in text and cert in text.split("Reload refused")[1]
    assert "expires in 30 days" in text  # a 30-day certificate: warned of at start
