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
    assert not run.two_copies, run
    assert run.intact, run
    assert run.verdict_true, run
    assert run.leftovers == [], run
