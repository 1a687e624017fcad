"""``migplane evacuate`` against three agents on fake-world hosts."""

import io
import json
import types

import pytest

from migplane.agent import errors as agent_errors
from migplane.agent import testing
from migplane.cli import progress
from migplane.cli.commands import evacuate

SIZES = {"vm1": 192, "vm2": 128, "vm3": 96}


@pytest.fixture
def three(world, start_agent):
    for name, mib in SIZES.items():
        world.add_guest("host-a", name, memory_mib=mib)
    a = start_agent("host-a", max_concurrent=2)
    b = start_agent("host-b", my_live_migration_ip="198.51.100.12", max_concurrent=2)
    c = start_agent("host-c", my_live_migration_ip="198.51.100.13", max_concurrent=2)
    return ["--agent", "host-a=%s" % a.url, "--agent", "host-b=%s" % b.url,
            "--agent", "host-c=%s" % c.url, "--token", testing.TOKEN]


def test_evacuate_moves_every_guest_and_prints_the_table(cli, three, world):
    code, out, err = cli("evacuate", "host-a", "--to", "host-b,host-c", "--link-rate",
                         "100", "--fixed-cost", "0.5", *three)
    assert code == 0, out + err
    assert not world.hosts["host-a"].guests
    assert "Evacuation" in err and "predicted" in err
    assert "completed, 3 of 3 guest(s) moved" in out
    for name in SIZES:
        line = next(row for row in out.splitlines() if row.startswith(name + " "))
        assert "completed" in line and "migration" in line and " ms" in line
        assert world.where(name)[0] in line
    assert "x the link's limit" in out


def test_every_other_host_is_a_destination_by_default(cli, three, world):
    code, out, err = cli("evacuate", "host-a", "--json", "--link-rate", "100", *three)
    assert code == 0, err
    record = json.loads(out)
    assert record["status"] == "completed"
    assert {d["name"] for d in record["destinations"]} == {"host-b", "host-c"}
    assert {g["name"] for g in record["guests"]} == set(SIZES)
    assert all(m["status"] == "completed" for m in record["migrations"].values())


def test_dry_run_prints_the_plan_and_moves_nothing(cli, three, world):
    code, out, _ = cli("evacuate", "host-a", "--to", "host-b", "--dry-run",
                       "--link-rate", "100", *three)
    assert code == 0
    assert "Evacuation plan of host-a (link 100.0 MiB/s, given by the request)" in out
    assert "prediction: 1 stream(s)" in out and "overlapped" in out
    assert "prepared ahead: at most" in out and "slot of the per-host limit" in out
    assert "destination host-b:" in out
    assert sorted(world.hosts["host-a"].guests) == sorted(SIZES)
    code, out, _ = cli("evacuate", "host-a", "--to", "host-b", "--dry-run", "--json",
                       *three)
    plan = json.loads(out)
    assert plan["link_rate_source"].startswith("unknown")
    assert [g["name"] for g in plan["plan"]["guests"]] == ["vm1", "vm2", "vm3"]


def test_a_failed_guest_exits_1_and_stays(cli, three, world):
    world.fail("host-b", "pre_live_migration")
    world.fail("host-c", "pre_live_migration")
    code, out, _ = cli("evacuate", "host-a", "--to", "host-b,host-c", "--link-rate",
                       "100", *three)
    assert code == 1
    assert "partial" in out and "injected fault" in out
    stayed = [n for n in SIZES if world.where(n) == ["host-a"]]
    assert len(stayed) == 2
    assert all(world.hosts["host-a"].guests[n].state == "running" for n in stayed)


@pytest.mark.parametrize("argv, code, text", [
    (["evacuate", "host-x", "--to", "host-b"], 2, "unknown host 'host-x'"),
    (["evacuate", "host-a", "--to", "host-a"], 2, "destination host-a is the host being "
                                                  "evacuated"),
    (["evacuate", "host-a", "--to", "host-b,host-b"], 2, "names a destination twice"),
    (["evacuate", "host-a", "--to", "host-b", "--only", "nope"], 4, "nope"),
    (["evacuate", "host-a", "--to", "host-b,"], 0, ""),
])
def test_bad_input_gets_a_clear_error(cli, three, argv, code, text):
    if code == 0:
        argv = argv + ["--dry-run"]
    got, out, err = cli(*argv, *three)
    assert got == code, out + err
    assert text in err


def test_bad_numbers_are_usage_errors(cli, three, capsys):
    with pytest.raises(SystemExit) as info:
        cli("evacuate", "host-a", "--link-rate", "0", *three)
    assert info.value.code == 2
    assert "want a positive number, got '0'" in capsys.readouterr().err
    for flag, bad in (("--link-rate", "nan"), ("--fixed-cost", "-1"), ("--fixed-cost", "inf")):
        with pytest.raises(SystemExit) as info:
            cli("evacuate", "host-a", flag, bad, *three)
        assert info.value.code == 2
        assert repr(bad) in capsys.readouterr().err


def test_no_room_names_the_guest_and_the_memory(cli, three, world):
    world.add_guest("host-a", "huge", memory_mib=128 * 1024)
    code, _, err = cli("evacuate", "host-a", "--to", "host-b", *three)
    assert code == 1
    assert "huge needs 131072.0 MiB of memory" in err
    assert world.where("huge") == ["host-a"]


def test_an_unreachable_agent_exits_3(cli, three):
    code, _, err = cli("evacuate", "host-a", "--to", "https://127.0.0.1:9", *three)
    assert code == 3 and "not one of [agent] peers" in err   # never called: no peer
    code, _, err = cli("evacuate", "host-q", "--agent", "host-q=https://127.0.0.1:9",
                       "--to", "host-b", *three)
    assert code == 3 and "unreachable" in err


def test_the_live_display_on_a_terminal_redraws_in_place():
    stream = io.StringIO()
    stream.isatty = lambda: True
    clock = iter([0.0, 1.0])
    display = evacuate.Display(stream, clock=lambda: next(clock))
    record = {"link_rate": 100.0, "guests": [
        {"name": "vm1", "destination": "host-b", "status": "running", "percent": 50.0,
         "memory_bytes": 100, "data_processed": 0, "step": "live_migration"},
        {"name": "vm2", "destination": "host-c", "status": "pending", "percent": 0.0,
         "memory_bytes": 100, "data_processed": 0}]}
    display.update(record)
    record["guests"][0]["data_processed"] = 90
    display.update(record)
    text = stream.getvalue()
    assert "\x1b[3F" in text  # back up over the three lines drawn
    assert "link  90%" in text and "25.0%  0/2 moved" in text
    assert "vm1" in text and "live_migration" in text


def test_detach_then_follow(cli, three, world):
    code, out, _ = cli("evacuate", "host-a", "--to", "host-b", "--detach", *three)
    assert code == 0
    evacuation_id = out.strip()
    assert len(evacuation_id) == 12
    code, out, err = cli("evacuate", "host-a", "--follow", evacuation_id, *three)
    assert code == 0, err
    assert "completed, 3 of 3 guest(s) moved" in out
    code, _, err = cli("evacuate", "host-a", "--follow", "nope", *three)
    assert code == 4 and "Evacuation 'nope' not found" in err


class _Flaky:
    """A source agent that goes away for ``gone`` polls, then answers ``records``."""

    def __init__(self, gone, records):
        self.gone, self.records, self.asked = gone, list(records), []

    def get(self, path, params=None):
        self.asked.append((path, params["since"]))
        if self.gone:
            self.gone -= 1
            raise agent_errors.AgentUnreachable(url="https://host-a:7480",
                                                reason="connection refused")
        return self.records.pop(0)


def test_evacuate_follows_an_agent_that_comes_back_as_migrate_does():
    client = _Flaky(2, [{"status": "running", "last_event": 4, "guests": []},
                        {"status": "completed", "last_event": 6, "guests": []}])
    said = []
    display = types.SimpleNamespace(update=lambda record, force: None,
                                    close=lambda: None, message=said.append)
    record = evacuate.watch(client, "e1", display, sleep=lambda s: None)
    assert record["status"] == "completed"
    assert [since for _, since in client.asked] == ["0", "0", "0", "4"]
    assert "unreachable" in said[0] and "reconnected" in said[1]
    # and gives up once it stayed away longer than it may
    now = iter(range(0, 1000, 100))
    with pytest.raises(agent_errors.AgentUnreachable):
        list(progress.follow(_Flaky(50, []), "/v1/evacuations/e1", lambda r: True,
                             sleep=lambda s: None, clock=lambda: next(now),
                             reconnect_s=300))
