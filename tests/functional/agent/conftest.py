"""Fixtures the agent lab tests share: the lab's agents, the guest kernel, a
fresh guest name per test (prefixed by its module's ``GUEST_PREFIX``)."""

import pytest

from migplane.lab import guest


@pytest.fixture(scope="module")
def agents(lab_agents):
    return lab_agents


@pytest.fixture(scope="module")
def kernel(lab):
    return lab.build_guest()


@pytest.fixture
def guest_name(lab, request):
    """A guest name no other test uses; the guest is destroyed on every host after."""
    name = "%s-%s" % (getattr(request.module, "GUEST_PREFIX", "ag"),
                      request.node.name[5:22])
    yield name
    for host in lab.hosts:
        guest.destroy_guest(host, name)
