"""The latency probe, on the loopback interface."""

import io
import socket
import subprocess
import sys
import threading
import time

from migplane.bench import probe


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
    assert ready.wait(5)
    return port[0], stop, t


def test_client_measures_round_trips():
    port, stop, t = _server()
    out = io.StringIO()
    halt = threading.Event()
    threading.Timer(0.4, halt.set).start()
    count = probe.run_client("127.0.0.1", port, out, interval=0.02, stop=halt)
    stop.set()
    t.join(5)
    samples = probe.parse_samples(out.getvalue())
    assert count == len(samples) >= 8
    assert all(r is not None and 0 < r < 1000 for _, r in samples)
    times = [s for s, _ in samples]
    assert times == sorted(times)
    # paced: about one request per interval, no burst
    assert min(b - a for a, b in zip(times, times[1:])) > 0.015


def test_client_records_losses_and_reconnects():
    """A server that swallows requests: every round trip times out, each counts as lost."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    port = listener.getsockname()[1]
    conns = []

    def accept():
        listener.settimeout(3)
        try:
            while True:
                conns.append(listener.accept()[0])
        except OSError:
            pass

    threading.Thread(target=accept, daemon=True).start()
    out = io.StringIO()
    count = probe.run_client("127.0.0.1", port, out, interval=0.01, timeout=0.1,
                             max_seconds=0.5)
    listener.close()
    for c in conns:
        c.close()
    samples = probe.parse_samples(out.getvalue())
    assert count == len(samples) >= 2
    assert all(r is None for _, r in samples)
    assert len(conns) >= 2          # it reconnected after each loss


def test_client_gives_up_at_its_deadline_when_nobody_listens():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    t0 = time.monotonic()
    assert probe.run_client("127.0.0.1", port, io.StringIO(), max_seconds=0.3) == 0
    assert time.monotonic() - t0 < 3


def test_parse_samples_skips_garbage():
    text = "1.5 0.250\n2.0 lost\nnonsense\n3.0 nan\n4.0\n5.0 1.0 extra\n6 abc\n7.0 2.5\n"
    assert probe.parse_samples(text) == [(1.5, 0.25), (2.0, None), (7.0, 2.5)]


def test_argv_and_the_module_as_processes(tmp_path):
    out = tmp_path / "samples.txt"
    srv = subprocess.Popen(probe.server_argv("127.0.0.1", 0, max_seconds=20),
                           stdout=subprocess.PIPE, text=True)
    try:
        line = srv.stdout.readline().split()
        assert line[:2] == ["listening", "127.0.0.1"]
        cli = subprocess.Popen(probe.client_argv("127.0.0.1", out, port=int(line[2]),
                                                 max_seconds=20))
        deadline = time.monotonic() + 10
        while len(probe.read_samples(out)) < 5 and time.monotonic() < deadline:
            time.sleep(0.05)
        cli.terminate()
        assert cli.wait(5) == 0
    finally:
        srv.terminate()
        srv.wait(5)
    assert srv.returncode == 0
    assert len(probe.read_samples(out)) >= 5
    argv = probe.client_argv("192.0.2.12", "/x", interval=0.05)
    assert argv[:3] == [sys.executable, "-m", "migplane.bench.probe"]
    assert argv[argv.index("--interval") + 1] == "0.05"
