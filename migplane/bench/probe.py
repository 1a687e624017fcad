"""A small request/response latency probe for the management plane.

The server echoes fixed-size requests; the client sends one request every
``interval`` seconds (closed loop: a request is never sent before the previous
answer came back, and a late one is not made up for with a burst) and writes
one line per round trip::

    <send time, time.monotonic()> <round trip in ms, or 'lost'>

``time.monotonic()`` reads CLOCK_MONOTONIC, which every network namespace
shares, so the benchmark can lay the samples over the migration windows it
measured itself. Both ends stop by themselves after ``--max-seconds`` (and on
SIGTERM/SIGINT), so a forgotten probe never runs for long.

Run as ``python -m migplane.bench.probe server|client ...`` inside a lab
host's namespaces (see :func:`server_argv`, :func:`client_argv`).
"""

import argparse
import math
import signal
import socket
import sys
import threading
import time

DEFAULT_PORT = 7411
DEFAULT_SIZE = 4096
DEFAULT_INTERVAL = 0.02
DEFAULT_TIMEOUT = 5.0
DEFAULT_MAX_SECONDS = 3600.0
LOST = "lost"


def recv_exact(sock, size):
    """Read exactly ``size`` bytes; return fewer only when the peer closed."""
    chunks = []
    left = size
    while left:
        chunk = sock.recv(min(left, 65536))
        if not chunk:
            break
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


# -- server -----------------------------------------------------------------

def _serve_one(conn, size):
    with conn:
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        conn.settimeout(None)
        while True:
            data = recv_exact(conn, size)
            if len(data) < size:
                return
            conn.sendall(data)


def serve(bind, port, size=DEFAULT_SIZE, max_seconds=DEFAULT_MAX_SECONDS, ready=None,
          stop=None):
    """Echo ``size``-byte requests on ``bind:port`` until ``stop`` or the deadline."""
    stop = stop or threading.Event()
    family = socket.AF_INET6 if ":" in bind else socket.AF_INET
    listener = socket.socket(family, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind((bind, port))
    listener.listen(16)
    listener.settimeout(0.2)
    if ready is not None:
        ready(listener.getsockname()[1])
    deadline = time.monotonic() + max_seconds
    try:
        while not stop.is_set() and time.monotonic() < deadline:
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            threading.Thread(target=_serve_one, args=(conn, size), daemon=True).start()
    finally:
        listener.close()


# -- client -----------------------------------------------------------------

def _connect(host, port, timeout):
    sock = socket.create_connection((host, port), timeout=timeout)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.settimeout(timeout)
    return sock


def run_client(host, port, out, size=DEFAULT_SIZE, interval=DEFAULT_INTERVAL,
               timeout=DEFAULT_TIMEOUT, max_seconds=DEFAULT_MAX_SECONDS, stop=None,
               clock=time.monotonic, sleep=time.sleep):
    """Probe ``host:port``; write a line per round trip to the file ``out``.

    A round trip that does not complete within ``timeout`` is written as
    ``lost`` and the connection is made anew. Returns the number of samples.
    """
    stop = stop or threading.Event()
    payload = bytes(range(256)) * (size // 256) + b"\x5a" * (size % 256)
    deadline = clock() + max_seconds
    sock = None
    count = 0
    # wait for the server quietly: only losses after the first answer count
    while sock is None and not stop.is_set() and clock() < deadline:
        try:
            sock = _connect(host, port, timeout)
        except OSError:
            sleep(0.05)
    next_send = clock()
    try:
        while not stop.is_set() and clock() < deadline:
            now = clock()
            if now < next_send:
                sleep(min(next_send - now, 0.05))
                continue
            # never burst to catch up after a slow round trip: a late request
            # restarts the schedule from itself, so the next one waits an interval
            next_send = (next_send + interval if now < next_send + interval
                         else now + interval)
            t0 = clock()
            try:
                if sock is None:
                    sock = _connect(host, port, timeout)
                sock.sendall(payload)
                answer = recv_exact(sock, size)
                if len(answer) < size:
                    raise ConnectionError("the server closed the connection")
                rtt = (clock() - t0) * 1000.0
                out.write("%.6f %.3f\n" % (t0, rtt))
            except OSError:
                out.write("%.6f %s\n" % (t0, LOST))
                if sock is not None:
                    sock.close()
                    sock = None
            out.flush()
            count += 1
    finally:
        if sock is not None:
            sock.close()
    return count


# -- reading samples --------------------------------------------------------

def parse_samples(text):
    """``[(t, rtt_ms or None), ...]`` from a client's output; bad lines skipped."""
    samples = []
    for line in text.splitlines():
        parts = line.split()
        if len(parts) != 2:
            continue
        try:
            t = float(parts[0])
            rtt = None if parts[1] == LOST else float(parts[1])
        except ValueError:
            continue
        if not math.isfinite(t) or (rtt is not None and not math.isfinite(rtt)):
            continue
        samples.append((t, rtt))
    return samples


def read_samples(path):
    """The samples written so far to ``path`` (none while it does not exist)."""
    try:
        with open(path) as f:
            return parse_samples(f.read())
    except FileNotFoundError:
        return []


# -- argv for a lab host ----------------------------------------------------

def server_argv(bind, port=DEFAULT_PORT, size=DEFAULT_SIZE, max_seconds=DEFAULT_MAX_SECONDS):
    return [sys.executable, "-m", "migplane.bench.probe", "server", "--bind", bind,
            "--port", str(port), "--size", str(size), "--max-seconds", str(max_seconds)]


def client_argv(host, out, port=DEFAULT_PORT, size=DEFAULT_SIZE, interval=DEFAULT_INTERVAL,
                timeout=DEFAULT_TIMEOUT, max_seconds=DEFAULT_MAX_SECONDS):
    return [sys.executable, "-m", "migplane.bench.probe", "client", "--connect", host,
            "--port", str(port), "--size", str(size), "--interval", str(interval),
            "--timeout", str(timeout), "--max-seconds", str(max_seconds), "--out", str(out)]


def _parser():
    p = argparse.ArgumentParser(prog="python -m migplane.bench.probe",
                                description="Request/response latency probe.")
    sub = p.add_subparsers(dest="role", required=True)
    for role in ("server", "client"):
        s = sub.add_parser(role)
        s.add_argument("--port", type=int, default=DEFAULT_PORT)
        s.add_argument("--size", type=int, default=DEFAULT_SIZE)
        s.add_argument("--max-seconds", type=float, default=DEFAULT_MAX_SECONDS)
        if role == "server":
            s.add_argument("--bind", required=True)
        else:
            s.add_argument("--connect", required=True)
            s.add_argument("--interval", type=float, default=DEFAULT_INTERVAL)
            s.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT)
            s.add_argument("--out", required=True)
    return p


def main(argv=None):
    args = _parser().parse_args(argv)
    stop = threading.Event()

    def _stop(signum, frame):
        stop.set()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    if args.role == "server":
        def ready(port):
            print("listening %s %d" % (args.bind, port), flush=True)

        serve(args.bind, args.port, args.size, args.max_seconds, ready=ready, stop=stop)
    else:
        with open(args.out, "a") as out:
            run_client(args.connect, args.port, out, size=args.size,
                       interval=args.interval, timeout=args.timeout,
                       max_seconds=args.max_seconds, stop=stop)
    return 0


if __name__ == "__main__":
    sys.exit(main())
