"""Helpers shared by the lab's own functional tests."""

import pytest


@pytest.fixture(scope="session")
def kernel(lab):
    """The test guest, built once into the lab's shared image dir."""
    return lab.build_guest()
