"""``python -m migplane.bench.agentload``: the agent's server under hostile and heavy load.

Starts one agent process (``migplane-agent``'s own configuration, build and
server; fake driver; HTTPS with a throw-away CA; on 127.0.0.1 only) and
measures, from client processes:

* **stall**: the latency of authenticated ``GET /v1/migrations`` requests
  while ``--idle`` idle TCP connections, as many partial TLS handshakes and
  as many TLS connections with unfinished headers are held open;
* **load**: the latency of the same read under ``--clients`` concurrent
  clients (each its own connection per request), p50 / p99 / max.

and the agent's CPU time per request under load. Prints the figures and,
with ``--out FILE``, writes them as JSON. Targets (README, "Security"): no
request delayed by more than 1 s by the held connections; p99 <= 1 s under
200 clients. The clients share the machine with the agent, so on a small or
busy machine the load figure measures the machine as much as the agent:
read it with the CPU figure and the load average printed beside it.
Loopback only; no root needed.
"""

import argparse
import json
import multiprocessing
import os
import socket
import ssl
import sys
import tempfile
import threading
import time
from pathlib import Path

from migplane.agent import opts as agent_opts
from migplane.bench import stats

TOKEN = "agentload-token-0123456789"  # noqa: S105 - a throw-away benchmark token
PATH = "/v1/migrations"


def _config(work, port, pki):
    text = agent_opts.config_text({
        "agent": dict({"bind_host": "127.0.0.1", "port": port, "auth_tokens": TOKEN,
                       "max_connections": 1024, "state_dir": Path(work) / "state"},
                      **pki.options("bench-a")),
        "live_migration": {"driver": "fake", "hostname": "bench-a"},
        "driver_fake": {"world": "agentload"}})
    path = Path(work) / "agent.conf"
    path.write_text(text)
    path.chmod(0o600)
    return path


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _serve(conf_path):
    """The agent process: a fake-world host, then migplane-agent's own build and server."""
    import logging

    from migplane.agent import main as agent_main
    from migplane.drivers.fake import world as fake_world
    # as deployed: every request's access line written to a log file
    logging.basicConfig(filename=str(Path(conf_path).with_name("agent.log")),
                        level=logging.INFO)
    fake_world.get_world("agentload").add_host("bench-a", mgmt="192.0.2.11",
                                               mig="198.51.100.11")
    conf = agent_main.build_conf(["--config-file", str(conf_path)])
    _, server = agent_main.build(conf)
    server.prepare()
    server.serve_forever()


def start_agent(work):
    """A migplane-agent process on 127.0.0.1; returns (process, url, ca_file)."""
    from migplane.agent import testing
    pki = testing.TestPKI(Path(work) / "pki", addresses=("127.0.0.1",))
    port = _free_port()
    conf = _config(work, port, pki)
    process = multiprocessing.get_context("spawn").Process(target=_serve, args=(conf,),
                                                           daemon=True)
    process.start()
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return process, "https://127.0.0.1:%d" % port, pki.ca_file
        except OSError:
            if not process.is_alive():
                break
            time.sleep(0.1)
    process.kill()
    raise RuntimeError("the agent did not start (exit code %s)" % process.exitcode)


_CONTEXTS = {}


def _context(ca_file):
    """One client TLS context per CA and process (as one CLI run has one)."""
    if ca_file not in _CONTEXTS:
        _CONTEXTS[ca_file] = ssl.create_default_context(cafile=ca_file)
    return _CONTEXTS[ca_file]


def _one_request(url, ca_file, timeout=60.0):
    """Seconds for one authenticated GET on a new TLS connection (None if it failed)."""
    host, port = url.rsplit("//", 1)[1].rsplit(":", 1)
    context = _context(ca_file)
    started = time.monotonic()
    try:
        with socket.create_connection((host, int(port)), timeout=timeout) as raw:
            with context.wrap_socket(raw, server_hostname=host) as s:
                s.sendall(("GET %s HTTP/1.1\r\nHost: %s\r\nAuthorization: Bearer %s\r\n"
                           "Connection: close\r\n\r\n" % (PATH, host, TOKEN)).encode())
                answer = b""
                while True:
                    chunk = s.recv(65536)
                    if not chunk:
                        break
                    answer += chunk
        if not answer.startswith((b"HTTP/1.0 200", b"HTTP/1.1 200")):
            return None
    except OSError:
        return None
    return time.monotonic() - started


def _client_process(url, ca_file, threads, requests_each, start_at, queue):
    latencies, failures = [], 0
    lock = threading.Lock()

    def client():
        nonlocal failures
        while time.time() < start_at:
            time.sleep(0.001)
        for _ in range(requests_each):
            took = _one_request(url, ca_file)
            with lock:
                if took is None:
                    failures += 1
                else:
                    latencies.append(took)

    workers = [threading.Thread(target=client) for _ in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    queue.put((latencies, failures))


def load(url, ca_file, clients=200, requests_each=5, processes=4):
    """p50/p99/max latency of ``clients`` concurrent clients (threads over processes)."""
    queue = multiprocessing.Queue()
    start_at = time.time() + 2.0
    per = [clients // processes + (1 if i < clients % processes else 0)
           for i in range(processes)]
    workers = [multiprocessing.Process(target=_client_process,
                                       args=(url, ca_file, n, requests_each, start_at,
                                             queue)) for n in per if n]
    for w in workers:
        w.start()
    latencies, failures = [], 0
    for _ in workers:
        got, failed = queue.get()
        latencies += got
        failures += failed
    for w in workers:
        w.join()
    return _summary(latencies, failures, clients=clients, requests_each=requests_each)


def _summary(latencies, failures, **extra):
    latencies = sorted(latencies)
    return dict(extra, requests=len(latencies) + failures, failures=failures,
                p50_s=stats.percentile(latencies, 50) if latencies else None,
                p99_s=stats.percentile(latencies, 99) if latencies else None,
                max_s=latencies[-1] if latencies else None)


def stall(url, ca_file, idle=20, samples=20):
    """Latency of requests while ``idle`` x 3 hostile connections are held open."""
    host, port = url.rsplit("//", 1)[1].rsplit(":", 1)
    address = (host, int(port))
    context = _context(ca_file)
    held = []
    sources = iter(range(10 ** 6))

    def connect():
        # each from its own loopback address: all of them are held, none over the
        # agent's per-address budget of unauthenticated connections
        return socket.create_connection(address, source_address=(
            "127.0.%d.%d" % divmod(2 + next(sources), 250), 0))

    try:
        for _ in range(idle):
            held.append(connect())
        for _ in range(idle):
            s = connect()
            s.sendall(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03")
            held.append(s)
        for _ in range(idle):
            s = context.wrap_socket(connect(), server_hostname=host)
            s.sendall(b"GET /v1/host HTTP/1.1\r\nHost: x\r\nX-Slow: ")
            held.append(s)
        latencies = [_one_request(url, ca_file) for _ in range(samples)]
    finally:
        for s in held:
            s.close()
    ok = [x for x in latencies if x is not None]
    return _summary(ok, len(latencies) - len(ok), held=3 * idle)


def _cpu_s(pid):
    """CPU seconds (user + system) process ``pid`` used so far (Linux /proc)."""
    fields = open("/proc/%d/stat" % pid).read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m migplane.bench.agentload",
                                description=__doc__.split("\n\n")[0])
    p.add_argument("--clients", type=int, default=200)
    p.add_argument("--requests", type=int, default=5, help="requests per client")
    p.add_argument("--idle", type=int, default=20,
                   help="connections of each hostile kind held during 'stall'")
    p.add_argument("--quick", action="store_true", help="20 clients, 5 held of each kind")
    p.add_argument("--out", help="write the figures as JSON here")
    args = p.parse_args(argv)
    if args.quick:
        args.clients, args.idle = 20, 5
    with tempfile.TemporaryDirectory(prefix="agentload-") as work:
        process, url, ca_file = start_agent(work)
        try:
            figures = {"stall": stall(url, ca_file, idle=args.idle)}
            cpu_before = _cpu_s(process.pid)
            figures["load"] = load(url, ca_file, clients=args.clients,
                                   requests_each=args.requests)
            figures["load"]["server_cpu_ms_per_request"] = round(
                1000 * (_cpu_s(process.pid) - cpu_before)
                / max(1, figures["load"]["requests"]), 2)
            figures.update(cpus=os.cpu_count(), loadavg=os.getloadavg()[0],
                           endpoint="GET %s" % PATH)
        finally:
            process.terminate()
            process.join(10)
    for part in ("stall", "load"):
        f = figures[part]
        print("%-5s %4d requests, %d failed: p50 %.3f s, p99 %.3f s, max %.3f s" % (
            part, f["requests"], f["failures"], f["p50_s"] or 0, f["p99_s"] or 0,
            f["max_s"] or 0))
    print("agent CPU per request under load: %.2f ms; %d CPUs, load average %.1f" % (
        figures["load"]["server_cpu_ms_per_request"], figures["cpus"],
        figures["loadavg"]))
    if args.out:
        Path(args.out).write_text(json.dumps(figures, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
