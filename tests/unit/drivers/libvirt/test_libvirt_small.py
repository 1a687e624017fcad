"""The small modules: job statistics, local disks, error translation, options."""

import subprocess
import sys

import pytest

from migplane.core import driver as driver_mod
from migplane.core import exception
from migplane.drivers.libvirt import disks
from migplane.drivers.libvirt import errors
from migplane.drivers.libvirt import opts
from migplane.drivers.libvirt import progress

libvirt = pytest.importorskip("libvirt")


# -- progress ------------------------------------------------------------------


def test_running_stats_become_bytes():
    p = progress.to_progress({
        "type": libvirt.VIR_DOMAIN_JOB_UNBOUNDED, "time_elapsed": 2500,
        "data_total": 300, "data_processed": 120, "data_remaining": 180,
        "memory_total": 200, "memory_processed": 100, "memory_remaining": 100,
        "disk_total": 100, "disk_processed": 20, "disk_remaining": 80,
        "memory_dirty_rate": 250, "memory_page_size": 4096, "memory_iteration": 3})
    assert p.state == driver_mod.JOB_RUNNING
    assert (p.data_total, p.data_processed, p.data_remaining) == (300, 120, 180)
    assert (p.disk_total, p.disk_processed, p.disk_remaining) == (100, 20, 80)
    assert p.dirty_rate == 250 * 4096
    assert p.iteration == 3 and p.time_elapsed_ms == 2500
    assert p.downtime_ms is None and p.percent == 40.0


@pytest.mark.parametrize("job_type, state", [
    (libvirt.VIR_DOMAIN_JOB_NONE, driver_mod.JOB_NONE),
    (libvirt.VIR_DOMAIN_JOB_BOUNDED, driver_mod.JOB_RUNNING),
    (libvirt.VIR_DOMAIN_JOB_COMPLETED, driver_mod.JOB_COMPLETED),
    (libvirt.VIR_DOMAIN_JOB_FAILED, driver_mod.JOB_FAILED),
    (libvirt.VIR_DOMAIN_JOB_CANCELLED, driver_mod.JOB_CANCELLED),
])
def test_job_types_map_to_states(job_type, state):
    assert progress.job_state({"type": job_type}) == state
    assert progress.is_active({"type": job_type}) == (state == driver_mod.JOB_RUNNING)


def test_completed_stats_keep_downtime_and_the_error_text():
    p = progress.to_progress({"type": libvirt.VIR_DOMAIN_JOB_FAILED, "downtime": 31,
                              "errmsg": "Certificate does not match"})
    assert p.downtime_ms == 31 and p.error == "Certificate does not match"
    p = progress.to_progress({}, state=driver_mod.JOB_FAILED, error="libvirt said so")
    assert p.error == "libvirt said so" and p.dirty_rate == 0


# -- disks -----------------------------------------------------------------------

XML = """<domain><devices>
  <disk type='file' device='disk'><driver name='qemu' type='qcow2'/>
    <source file='/images/./a.qcow2'/><target dev='vda'/></disk>
  <disk type='block' device='disk'><driver name='qemu' type='raw'/>
    <source dev='/dev/vg/b'/><target dev='vdb'/></disk>
  <disk type='file' device='disk'><source file='/images/c.img'/><target dev='vdc'/></disk>
  <disk type='file' device='cdrom'><source file='/iso/x.iso'/><target dev='hdc'/>
    <readonly/></disk>
  <disk type='file' device='disk'><source file='/shared/s.img'/><target dev='vdd'/>
    <shareable/></disk>
  <disk type='network' device='disk'><source protocol='rbd' name='pool/img'/>
    <target dev='vde'/></disk>
  <disk type='file' device='floppy'><source file='/f.img'/><target dev='fda'/></disk>
  <disk type='file' device='disk'><target dev='vdf'/></disk>
</devices></domain>"""


def test_only_writable_local_disks_are_copied():
    found = disks.local_disks(XML)
    assert [(d.target, d.path, d.format, d.kind) for d in found] == [
        ("vda", "/images/a.qcow2", "qcow2", "file"),
        ("vdb", "/dev/vg/b", "raw", "block"),
        ("vdc", "/images/c.img", "raw", "file"),
    ]


def test_local_disk_round_trips_as_primitives():
    disk = disks.LocalDisk("vda", "/images/a.qcow2", "qcow2", capacity=1 << 30)
    assert disks.LocalDisk.from_dict(disk.to_dict()) == disk


# -- errors ----------------------------------------------------------------------


def _err(code, text):
    err = libvirt.libvirtError(text)
    err.err = (code, 0, text, 2, None, None, None, 0, 0)
    return err


def test_errors_keep_libvirts_words_and_name_the_step():
    err = errors.translate(_err(libvirt.VIR_ERR_OPERATION_FAILED, "job failed: boom"),
                           "g1", "live_migration", "host-a")
    assert isinstance(err, exception.MigrationError)
    assert str(err) == ("Live migration of g1 failed during live_migration: "
                        "libvirt on host-a: job failed: boom")


def test_error_codes_become_typed_errors():
    assert isinstance(errors.translate(_err(libvirt.VIR_ERR_NO_DOMAIN, "gone"), "g1", "s",
                                       "host-a"), exception.InstanceNotFound)
    aborted = errors.translate(_err(libvirt.VIR_ERR_OPERATION_ABORTED, "canceled by client"),
                               "g1", "s", "host-a")
    assert isinstance(aborted, exception.MigrationAborted)
    assert "canceled by client" in str(aborted)
    dead = errors.translate(_err(libvirt.VIR_ERR_SYSTEM_ERROR, "Broken pipe"), "g1",
                            "rollback", "host-b", connected=False)
    assert isinstance(dead, exception.HypervisorUnavailable)
    assert "host-b" in str(dead) and "Broken pipe" in str(dead)


def test_translated_context_asks_whether_the_connection_lives():
    with pytest.raises(exception.HypervisorUnavailable):
        with errors.translated("g1", "step", "host-a", alive=lambda: False):
            raise _err(libvirt.VIR_ERR_INTERNAL_ERROR, "client socket is closed")
    with pytest.raises(exception.MigrationError):
        with errors.translated("g1", "step", "host-a", alive=lambda: True):
            raise _err(libvirt.VIR_ERR_INTERNAL_ERROR, "qemu said no")


# -- options ---------------------------------------------------------------------


def test_list_opts_gives_the_original_objects_in_our_own_group():
    [(group, options)] = opts.list_opts()
    assert group == "driver_libvirt" != "libvirt"
    assert options is opts.driver_opts
    names = {o.name for o in options}
    assert {"connection_uri", "netns", "event_loop", "compression"} <= names
    assert all(o.help and o.help.rstrip().endswith(".") for o in options)


def test_opts_and_package_import_without_libvirt_python():
    code = ("import sys; sys.modules['libvirt'] = None\n"
            "import migplane.drivers.libvirt, migplane.drivers.libvirt.opts as o\n"
            "print(o.list_opts()[0][0])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == "driver_libvirt"
