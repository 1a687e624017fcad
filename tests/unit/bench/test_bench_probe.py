"""The latency probe, on the loopback interface."""

import io
import itertools
import socket
import subprocess
import sys
import threading

import pytest

from migplane.bench import probe


class _StopAfter(io.StringIO):
    """The client's output, which stops it after ``n`` samples: a run's length
    in samples, not in seconds."""

    def __init__(self, n, stop):
        super().__init__()
        self.n, self.stop = n, stop

    def write(self, text):
        written = super().write(text)
        if self.getvalue().count("\n") >= self.n:
            self.stop.set()
        return written


class _SimClock:
    """Time that moves only when the client sleeps (or ``advance`` is called)."""

    def __init__(self, limit=100.0):
        self.now, self.limit = 0.0, limit

    def __call__(self):
        return self.now

    def sleep(self, seconds):
        self.advance(seconds)

    def advance(self, seconds):
        self.now += seconds
        assert self.now < self.limit, "the client never stopped"


def _server(size=probe.DEFAULT_SIZE):
    ready = threading.Event()
    stop = threading.Event()
    port = []

    def on_ready(p):
        port.append(p)
        ready.set()

    t = threading.Thread(target=probe.serve, args=("127.0.0.1", 0, size, 30),
                         kwargs={"ready": on_ready, "stop": stop}, daemon=True)
    t.start()
    assert ready.wait(60)
    return port[0], stop, t


def test_client_measures_round_trips():
    port, stop, t = _server()
    halt = threading.Event()
    out = _StopAfter(8, halt)
    count = probe.run_client("127.0.0.1", port, out, interval=0.02, timeout=60,
                             max_seconds=600, stop=halt)
    stop.set()
    t.join(60)
    samples = probe.parse_samples(out.getvalue())
    assert count == len(samples) == 8
    assert all(r is not None and r > 0 for _, r in samples)
    times = [s for s, _ in samples]
    assert times == sorted(times)


def test_client_paces_its_requests_and_never_bursts():
    """One request per interval; after a slow round trip the next goes at
    once and the interval counts from it (no catching up)."""
    port, stop, t = _server()
    clock, halt = _SimClock(), threading.Event()

    class SlowThird(_StopAfter):
        def write(self, text):
            if self.getvalue().count("\n") == 2:
                clock.advance(0.1)            # the third round trip takes 100 ms
            return super().write(text)

    out = SlowThird(10, halt)
    count = probe.run_client("127.0.0.1", port, out, interval=0.02, max_seconds=60,
                             stop=halt, clock=clock, sleep=clock.sleep)
    stop.set()
    t.join(60)
    times = [s for s, _ in probe.parse_samples(out.getvalue())]
    assert count == len(times) == 10
    gaps = [round(b - a, 6) for a, b in itertools.pairwise(times)]
    assert gaps == [0.02, 0.02, 0.1] + [0.02] * 6, gaps


def test_client_records_losses_and_reconnects():
    """A server that swallows requests: every round trip times out, each counts as lost."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    port = listener.getsockname()[1]
    conns = []

    def accept():
        listener.settimeout(60)
        try:
            while True:
                conns.append(listener.accept()[0])
        except OSError:
            pass

    threading.Thread(target=accept, daemon=True).start()
    halt = threading.Event()
    out = _StopAfter(3, halt)
    count = probe.run_client("127.0.0.1", port, out, interval=0.01, timeout=0.1,
                             max_seconds=600, stop=halt)
    # it reconnected after each loss: three connections (the accept thread
    # may still be taking the last from the backlog)
    deadline = threading.Event()
    for _ in range(600):
        if len(conns) >= 3 or deadline.wait(0.1):
            break
    listener.close()
    for c in conns:
        c.close()
    samples = probe.parse_samples(out.getvalue())
    assert count == len(samples) == 3
    assert all(r is None for _, r in samples)
    assert len(conns) == 3


def test_client_gives_up_at_its_deadline_when_nobody_listens():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    clock = _SimClock()
    assert probe.run_client("127.0.0.1", port, io.StringIO(), max_seconds=0.3,
                            clock=clock, sleep=clock.sleep) == 0
    assert clock.now == pytest.approx(0.3, abs=0.05)   # it tried until then


def test_parse_samples_skips_garbage():
    text = "1.5 0.250\n2.0 lost\nnonsense\n3.0 nan\n4.0\n5.0 1.0 extra\n6 abc\n7.0 2.5\n"
    assert probe.parse_samples(text) == [(1.5, 0.25), (2.0, None), (7.0, 2.5)]


def test_argv_and_the_module_as_processes(tmp_path):
    out = tmp_path / "samples.txt"
    srv = subprocess.Popen(probe.server_argv("127.0.0.1", 0, max_seconds=600),
                           stdout=subprocess.PIPE, text=True)
    try:
        line = srv.stdout.readline().split()
        assert line[:2] == ["listening", "127.0.0.1"]
        cli = subprocess.Popen(probe.client_argv("127.0.0.1", out, port=int(line[2]),
                                                 max_seconds=600))
        for _ in range(1200):         # up to a minute: a hang guard
            if len(probe.read_samples(out)) >= 5:
                break
            threading.Event().wait(0.05)
        cli.terminate()
        assert cli.wait(60) == 0
    finally:
        srv.terminate()
        srv.wait(60)
    assert srv.returncode == 0
    assert len(probe.read_samples(out)) >= 5
    argv = probe.client_argv("192.0.2.12", "/x", interval=0.05)
    assert argv[:3] == [sys.executable, "-m", "migplane.bench.probe"]
    assert argv[argv.index("--interval") + 1] == "0.05"
