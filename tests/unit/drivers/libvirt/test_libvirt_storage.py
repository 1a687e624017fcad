"""Images created and deleted through the daemon's storage API."""

import pytest

from migplane.drivers.libvirt import storage

libvirt = pytest.importorskip("libvirt")
IMAGES = "/var/lib/libvirt/images"


@pytest.fixture
def conn(daemons):
    return daemons[1].connect()


def test_a_directory_without_pool_gets_a_transient_one_that_is_stopped(conn):
    daemon = conn.daemon
    assert storage.create_volume(conn, IMAGES + "/g1.qcow2", 16 << 20, "qcow2")
    assert daemon.files[IMAGES + "/g1.qcow2"] == (16 << 20, "qcow2")
    [(path, size, fmt, flags)] = daemon.created_volumes
    assert flags == libvirt.VIR_STORAGE_VOL_CREATE_PREALLOC_METADATA
    # built (mkdir) when missing, and nothing left defined afterwards
    assert daemon.pool_builds == [(IMAGES, libvirt.VIR_STORAGE_POOL_CREATE_WITH_BUILD)]
    assert daemon.pools == []


def test_an_existing_pool_is_refreshed_and_left_as_it_was(conn):
    pool = conn.daemon.add_pool("default", IMAGES)
    assert storage.create_volume(conn, IMAGES + "/g1.raw", 1 << 20, "raw")
    assert pool.refreshed == 1 and pool.active and conn.daemon.pool_builds == []
    assert conn.daemon.created_volumes[0][3] == 0   # no qcow2 preallocation for raw


def test_an_inactive_pool_is_started_and_stopped_again(conn):
    pool = conn.daemon.add_pool("images", IMAGES, active=False)
    assert storage.create_volume(conn, IMAGES + "/g1.qcow2", 1 << 20, "qcow2")
    assert pool in conn.daemon.pools and not pool.active


def test_an_existing_image_is_never_overwritten(conn):
    conn.daemon.files[IMAGES + "/g1.qcow2"] = (5, "qcow2")
    assert not storage.create_volume(conn, IMAGES + "/g1.qcow2", 16 << 20, "qcow2")
    assert conn.daemon.files[IMAGES + "/g1.qcow2"] == (5, "qcow2")
    assert conn.daemon.pools == []


def test_delete_is_idempotent(conn):
    conn.daemon.files[IMAGES + "/g1.qcow2"] = (5, "qcow2")
    assert storage.delete_volume(conn, IMAGES + "/g1.qcow2")
    assert not storage.delete_volume(conn, IMAGES + "/g1.qcow2")
    assert conn.daemon.files == {} and conn.daemon.pools == []
    # deleting never creates a missing directory
    assert all(flags == 0 for _, flags in conn.daemon.pool_builds)


def test_names_are_escaped_in_the_xml():
    xml = storage._volume_xml("a<b>.qcow2", 1, "qcow2")
    assert "a&lt;b&gt;.qcow2" in xml and "type=\"qcow2\"" in xml
