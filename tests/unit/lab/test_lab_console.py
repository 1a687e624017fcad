"""ConsoleWatcher.continuity: the one rule for the test guest's tick counter."""

import pytest

from migplane.lab.console import ConsoleWatcher

BOOT = "0123456789abcdef"


def _watch(tmp_path, **hosts):
    """A watcher that has read console files holding the given counters."""
    files = {}
    for host, ns in hosts.items():
        path = tmp_path / f"{host}.log"
        path.write_text("MPBOOT boot=%s mem_kib=1\n" % BOOT + "".join(
            f"MPTICK boot={BOOT} n={n} ms={20 * n} pass=0 bad=0\n" for n in ns))
        files[host.replace("_", "-")] = path
    w = ConsoleWatcher(files)
    w.start()
    w.stop()
    return w


def test_a_clean_handover_is_continuous(tmp_path):
    c = _watch(tmp_path, host_a=range(0, 10), host_b=range(10, 20)).continuity()
    assert c and c.ok and c.replayed == 0 and c.lost == 0
    assert [(h.frm, h.to, h.last_n, h.first_n) for h in c.handovers] == [
        ("host-a", "host-b", 9, 10)]


def test_replayed_ticks_are_allowed_up_to_max_replay(tmp_path):
    w = _watch(tmp_path, host_a=range(0, 10), host_b=range(8, 20))
    strict = w.continuity()
    assert not strict and strict.replayed == 2 and strict.lost == 0
    assert "2 tick(s) replayed" in str(strict) and "host-a printed up to n=9" in str(strict)
    assert w.continuity(max_replay=2) and not w.continuity(max_replay=1)
    assert not w.counter_continuous() and w.counter_continuous(max_replay=2)


@pytest.mark.parametrize("max_replay", [0, 5])
def test_a_lost_tick_is_never_allowed(tmp_path, max_replay):
    c = _watch(tmp_path, host_a=range(0, 10), host_b=range(11, 20)).continuity(max_replay)
    assert not c and c.lost == 1 and "1 tick(s) lost" in str(c)


def test_a_jump_or_repeat_on_one_host_is_not_a_handover(tmp_path):
    assert not _watch(tmp_path, host_a=[0, 1, 2, 4, 5]).continuity(5)
    c = _watch(tmp_path, host_a=[0, 1, 2, 1, 2, 3]).continuity(5)
    assert not c and "repeated on one host" in str(c) and c.handovers == ()


def test_back_and_forth(tmp_path):
    # a -> b -> a: host-a's file holds two stays, in whatever order they were read
    w = _watch(tmp_path, host_a=[*range(0, 5), *range(9, 15)], host_b=range(4, 10))
    c = w.continuity(max_replay=1)
    assert c and c.replayed == 2
    assert [(h.frm, h.to, h.replayed) for h in c.handovers] == [
        ("host-a", "host-b", 1), ("host-b", "host-a", 1)]
    assert not w.continuity()


def _tick(n):
    return f"MPTICK boot={BOOT} n={n} ms={20 * n} pass=0 bad=0\n"


@pytest.mark.parametrize("frm, to", [("a", "b"), ("b", "a")])
def test_a_line_split_by_the_handover_is_one_tick(tmp_path, frm, to):
    # stopped for the switch-over in the middle of printing tick 10
    text = {frm: "".join(_tick(n) for n in range(10)) + _tick(10)[:22],
            to: _tick(10)[22:] + "".join(_tick(n) for n in range(11, 15))}
    files = {}
    for host in "ab":
        files[f"host-{host}"] = tmp_path / f"{host}.log"
        files[f"host-{host}"].write_text(text[host])
    w = ConsoleWatcher(files)
    w.start()
    w.stop()
    assert [t.n for t in w.ticks(f"host-{to}")] == list(range(10, 15))
    assert w.lines(f"host-{to}")[0] == _tick(10).strip()
    c = w.continuity()
    assert c and c.lost == 0 and len(c.handovers) == 1


def test_a_split_line_read_in_two_polls(tmp_path):
    a, b = tmp_path / "a.log", tmp_path / "b.log"
    a.write_text(_tick(0) + _tick(1)[:30])
    w = ConsoleWatcher({"host-a": a, "host-b": b}, poll_s=0.01)
    with w:
        assert [t.n for t in w.ticks()] == [0]      # tick 1 is unfinished
        b.write_text(_tick(1)[30:] + _tick(2))
        # both ticks may be read before a wait starts: wait for the total
        w.wait_for(lambda w: len(w.ticks("host-b")) >= 2, 60, "2 ticks on host-b")
    assert [(t.host, t.n) for t in w.ticks()] == [("host-a", 0), ("host-b", 1), ("host-b", 2)]
