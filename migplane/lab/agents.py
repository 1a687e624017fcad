"""Agents inside the hosts of a :class:`migplane.lab.Lab`, and the CLI on its controller.

Each agent runs in its host's network, mount and UTS namespaces with the
real libvirt driver, binds the host's management address only, serves HTTPS
with its own certificate from a throw-away CA (which it also presents to its
peers: every other lab host, listed in ``[agent] peers``), and is ended by its
pid. The CLI
runs in the controller namespace, which reaches the management plane only,
as an operator's workstation would. Used by the functional tests and
``migplane demo``.
"""

import json
import os
import secrets
import signal
import subprocess
import sys
import time
from pathlib import Path

from migplane.agent import opts as agent_opts
from migplane.core import address

PORT = agent_opts.DEFAULT_PORT
#: [agent] migration_plane_port of the lab's agents (on each host's migration address).
MIGRATION_PLANE_PORT = PORT + 1
REPO = Path(__file__).resolve().parents[2]


def agent_env():
    """The environment of agents and the CLI: a checkout's tree importable too
    (an installed wheel needs nothing added)."""
    env = dict(os.environ)
    if (REPO / "setup.cfg").exists():
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH"))
                                            if p)
    return env


_SERVED_SERIAL = """
import socket, ssl, sys
context = ssl.create_default_context(cafile=sys.argv[3])
with socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=10) as raw, \\
        context.wrap_socket(raw, server_hostname=sys.argv[1]) as conn:
    print(int(conn.getpeercert()["serialNumber"], 16))
"""


def config_text(host, token, cert=None, key=None, my_ip=None, live_migration=None,
                port=PORT, log_file=None, ca_file=None, peers=None, state_dir=None):
    """The agent.conf of one lab host; ``peers`` maps the other hosts' names to URLs."""
    tls = bool(cert and key)
    agent = {"bind_host": host.mgmt_ip, "port": port, "auth_tokens": token,
             "cert_file": cert if tls else None, "key_file": key if tls else None,
             "ca_file": ca_file,
             # empty: in memory (a lab host never uses the machine's /var/lib/migplane)
             "state_dir": state_dir or "",
             "peers": peers or None,
             "migration_plane_port": (MIGRATION_PLANE_PORT if peers and my_ip and cert
                                      and ca_file else None),
             "insecure_lab_mode": None if tls else True}
    lm = {"driver": "libvirt", "hostname": host.name, "poll_interval": "0.2"}
    lm.update({k: str(v) for k, v in (live_migration or {}).items()})
    return agent_opts.config_text({
        "DEFAULT": {"my_live_migration_ip": my_ip, "log_file": log_file},
        "agent": agent, "live_migration": dict(sorted(lm.items())),
        "driver_libvirt": {"connection_uri": "qemu:///system"}})


class LabAgents:
    """Start, stop and address the agents of ``lab``'s hosts."""

    def __init__(self, lab, tls=True, token=None):
        self.lab = lab
        self.token = token or secrets.token_hex(16)
        self.dir = Path(lab.base_dir) / "agents"
        self.dir.mkdir(parents=True, exist_ok=True)
        self.tls = tls
        self.ca_file = None
        self.pids = {}
        self.urls = {}
        #: Hosts whose agent :meth:`freeze` stopped.
        self.frozen = set()
        if tls:
            self._issue_certificates()

    def _issue_certificates(self):
        for i, host in enumerate(self.lab.hosts):
            self._issue(host, 7000 + i)

    def _issue(self, host, serial=None):
        from migplane.lab import tls as lab_tls
        ca_key, ca_cert = lab_tls.ensure_ca(self.dir / "ca", self.lab.name)
        self.ca_file = str(ca_cert)
        # the migration address too: peers ask it where a guest runs when the
        # management plane is down ([agent] migration_plane_port)
        return lab_tls.issue_agent(ca_key, ca_cert, self.dir / host.name, host.name,
                                   [host.mgmt_ip, host.mig_ip], serial)

    def rotate_certificate(self, host, timeout=30):
        """Give ``host``'s agent a new certificate from the same CA, in the same files,
        and SIGHUP it (what ``systemctl reload`` does); wait until it serves it.
        Returns the new serial number."""
        from migplane.agent import tls
        from migplane.lab import proc
        cert, _ = self._issue(host)
        serial = tls.read_certificate(cert).serial
        log = self.log_path(host)
        proc.signal_pids([self.pids[host.name]], signal.SIGHUP)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            text = log.read_text(errors="replace") if log.exists() else ""
            if "(serial %x)" % serial in text and "read again" in text:
                return serial
            if "Reload refused" in text:
                break
            time.sleep(0.1)
        raise RuntimeError("the agent of %s did not take its new certificate: %s" % (
            host.name, self.tail(host)))

    def served_serial(self, host):
        """The serial of the certificate ``host``'s agent serves a new connection from
        the controller (the operator's side of the management plane)."""
        done = self.lab.run_controller([sys.executable, "-c", _SERVED_SERIAL, host.mgmt_ip,
                                        str(PORT), self.ca_file], env=agent_env(), timeout=60)
        return int(done.stdout.strip())

    def peers(self, host):
        """The other lab hosts' agents, as ``[agent] peers`` of ``host``'s."""
        return {h.name: self.url(h) for h in self.lab.hosts if h.name != host.name}

    def cert(self, host):
        """``(cert_file, key_file)`` of ``host``'s agent."""
        work = self.dir / host.name
        return work / "agent-cert.pem", work / "agent-key.pem"

    def url(self, host):
        scheme = "https" if self.tls else "http"
        return "%s://%s" % (scheme, address.join_host_port(host.mgmt_ip, PORT))

    def log_path(self, host):
        return self.dir / host.name / "agent.log"

    def start(self, host, my_ip=None, live_migration=None, timeout=60, env=None):
        """Start ``host``'s agent (with ``my_live_migration_ip = my_ip``); wait until up.

        ``env``: extra environment (e.g. ``MIGPLANE_WIRE_PINS`` to emulate an
        agent of the previous release).
        """
        from migplane.lab import daemon
        from migplane.lab import proc
        if host.name in self.pids:
            self.stop(host)
        work = self.dir / host.name
        work.mkdir(parents=True, exist_ok=True)
        cert = key = None
        if self.tls:
            cert, key = self.cert(host)
        log = self.log_path(host)
        if log.exists():
            log.unlink()
        conf = work / "agent.conf"
        conf.write_text(config_text(host, self.token, cert, key, my_ip, live_migration,
                                    log_file=log, ca_file=self.ca_file,
                                    peers=self.peers(host) if self.tls else None,
                                    state_dir=work / "state"))
        conf.chmod(0o600)
        argv = [*daemon.nsenter(host.holder_pid), sys.executable, "-m",
                "migplane.agent.main", "--config-file", str(conf)]
        pid = proc.spawn(argv, work / "agent.stdout", env=dict(agent_env(), **(env or {})))
        self.pids[host.name] = pid
        self.urls[host.name] = self.url(host)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not proc.alive(pid):
                raise RuntimeError("the agent of %s exited: %s" % (
                    host.name, self.tail(host)))
            if log.exists() and "serving on" in log.read_text(errors="replace"):
                return self.urls[host.name]
            time.sleep(0.1)
        raise RuntimeError("the agent of %s did not start within %d s: %s" % (
            host.name, timeout, self.tail(host)))

    def tail(self, host, chars=3000):
        texts = []
        for path in (self.log_path(host), self.dir / host.name / "agent.stdout"):
            if path.exists():
                texts.append(path.read_text(errors="replace")[-chars:])
        return "\n".join(texts) or "(no log)"

    def kill(self, host):
        """SIGKILL ``host``'s agent (a crash: no cleanup); :meth:`start` restarts it."""
        from migplane.lab import proc
        self.frozen.discard(host.name)   # SIGKILL ends a stopped process too
        pid = self.pids.pop(host.name, None)
        if pid is not None:
            proc.signal_pids([pid], signal.SIGKILL)
            proc.wait_dead([pid], 10.0)

    def freeze(self, host):
        """SIGSTOP ``host``'s agent: it holds its port and answers nothing (an
        agent that hangs while its libvirtd runs); :meth:`thaw` continues it."""
        from migplane.lab import proc
        pid = self.pids.get(host.name)
        if pid is not None:
            proc.signal_pids([pid], signal.SIGSTOP)
            self.frozen.add(host.name)

    def thaw(self, host):
        from migplane.lab import proc
        pid = self.pids.get(host.name)
        if pid is not None:
            proc.signal_pids([pid], signal.SIGCONT)
        self.frozen.discard(host.name)

    def stop(self, host):
        from migplane.lab import proc
        if host.name in self.frozen:   # a stopped process cannot act on SIGTERM
            self.thaw(host)
        pid = self.pids.pop(host.name, None)
        if pid is not None:
            proc.terminate([pid], grace=10)

    def stop_all(self):
        for host in self.lab.hosts:
            self.stop(host)

    def cli_args(self):
        """``--agent`` and ``--ca-file`` options naming every running agent."""
        args = []
        for name, url in sorted(self.urls.items()):
            if name in self.pids:
                args += ["--agent", "%s=%s" % (name, url)]
        if self.ca_file:
            args += ["--ca-file", self.ca_file]
        return args

    def cli_argv(self, *argv):
        return [sys.executable, "-m", "migplane.cli.main", *argv]

    def cli_env(self):
        """The CLI's environment: the agents' token."""
        env = agent_env()
        env["MIGPLANE_TOKEN"] = self.token
        return env

    def run_cli_attached(self, *argv, timeout=600):
        """Like :meth:`run_cli`, on this terminal: a progress bar draws live."""
        done = subprocess.run(["ip", "netns", "exec", self.lab.controller_netns,
                               *self.cli_argv(*argv)], env=self.cli_env(), timeout=timeout,
                              check=False)
        return done.returncode

    def run_cli(self, *argv, check=False, timeout=600):
        """Run ``migplane ARGV`` on the lab's controller (management plane only)."""
        return self.lab.run_controller(self.cli_argv(*argv), check=check,
                                       timeout=timeout, env=self.cli_env())

    def transferring(self, name, args=None, timeout=120):
        """The newest record of ``name``'s migration once it has sent data (the
        last one seen, or None, after ``timeout``), asked with the CLI (``args``:
        the agents to name, every running one by default)."""
        args = self.cli_args() if args is None else args
        deadline = time.monotonic() + timeout
        record = None
        while time.monotonic() < deadline:
            listed = self.run_cli("list", "--json", *args, timeout=60)
            found = [m for m in json.loads(listed.stdout or "{}").get("migrations", [])
                     if m["instance"] == name]
            record = found[-1] if found else None
            if record and (record.get("progress") or {}).get("data_processed"):
                return record
            time.sleep(0.5)
        return record

    def start_cli(self, *argv):
        """Start ``migplane ARGV`` on the lab's controller and return its Popen
        (text stdout and stderr piped), for a caller that acts while it runs."""
        return subprocess.Popen(
            ["ip", "netns", "exec", self.lab.controller_netns, *self.cli_argv(*argv)],
            env=self.cli_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
