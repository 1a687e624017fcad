"""CI smoke of the fault matrix (``python -m migplane.bench.faults``): a few faulted
migrations on the session lab, each checked like the full run checks them."""

import random

import pytest

from migplane.bench import faults

pytest.importorskip("libvirt")
pytestmark = pytest.mark.lab

SMOKE = ("agent_source", "migration_link", "abort")


@pytest.fixture(scope="module")
def matrix(lab, lab_agents):
    return faults.FaultMatrix(lab, lab_agents, lab.build_guest(), random.Random(10))


@pytest.mark.parametrize("kind", SMOKE)
def test_a_faulted_migration_leaves_the_guest_whole_on_one_host(matrix, kind):
    run = matrix.run(SMOKE.index(kind), kind)
    assert run.error is None, run
    assert run.intact, run
    assert run.verdict_true, run
    assert run.leftovers == [], run


def test_the_report_counts_each_kind():
    runs = [faults.Run(index=0, kind="abort", source="host-a", destination="host-b",
                       intact=True, verdict_true=True),
            faults.Run(index=1, kind="abort", source="host-b", destination="host-a",
                       intact=False, verdict_true=True, leftovers=["domain on host-a"])]
    table, total = faults.summarize(runs)
    assert table["abort"] == {"runs": 2, "during": 0, "moved": 0, "intact": 1,
                              "verdict_true": 2, "leftovers": 1}
    text = faults.report(runs, 60, "python -m migplane.bench.faults --runs 2", 1)
    assert "| abort | 2 | 0 | 0 | 1 | 2 | 1 |" in text
    assert "run 1, abort" in text and "domain on host-a" in text
