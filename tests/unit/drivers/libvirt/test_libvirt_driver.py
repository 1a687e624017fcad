"""The libvirt driver against in-memory libvirt daemons, driven by the core's flow."""

import threading
import time

import pytest

from migplane.core import driver as driver_mod
from migplane.core import exception
from migplane.core import flow
from migplane.core import loader
from migplane.core import migrate_data as md
from migplane.drivers.libvirt import driver as driver_mod_lv
from migplane.drivers.libvirt import events

libvirt = pytest.importorskip("libvirt")
IMAGE = "/var/lib/libvirt/images/g1.qcow2"


def lv_error(code, text):
    err = libvirt.libvirtError(text)
    err.err = (code, 0, text, 2, None, None, None, 0, 0)
    return err


def run(src, dst, instance="g1", block=False, **kw):
    return flow.LiveMigration(instance, src, dst, src.settings.migration,
                              block_migration=block, **kw).run()


def start(src, dst, instance="g1", block=False):
    """Run a flow in a thread; return (migration, thread, outcome dict)."""
    m = flow.LiveMigration(instance, src, dst, src.settings.migration, block_migration=block)
    outcome = {}

    def target():
        try:
            outcome["result"] = m.run()
        except Exception as err:
            outcome["error"] = err

    t = threading.Thread(target=target, daemon=True)
    t.start()
    return m, t, outcome


# -- loading and describing ------------------------------------------------------


def test_loaded_through_the_entry_point(daemons, make_conf):
    drv = loader.load_driver(make_conf(daemons[0]), "libvirt")
    assert isinstance(drv, driver_mod_lv.LibvirtDriver)
    info = drv.describe()
    assert info.name == "libvirt"
    assert "libvirt 9.0.0" in info.version and "QEMU 7.2.0" in info.version
    caps = info.capabilities
    assert {"tcp", "tls", "ssh", "libssh2", "unix"} <= set(caps.schemes)
    assert all((caps.data_uri, caps.listen_address, caps.disks_uri, caps.tls_destination,
                caps.tunnelled, caps.native_tls, caps.post_copy, caps.auto_converge,
                caps.parallel_connections, caps.block_migration))


def test_capabilities_follow_the_daemons_version():
    caps = driver_mod_lv.capabilities(6_000_000, 4_002_000)
    assert caps.tls_destination and caps.parallel_connections and not caps.disks_uri
    caps = driver_mod_lv.capabilities(9_000_000, 2_004_000)
    assert not caps.post_copy and not caps.parallel_connections


def test_post_copy_recovery_is_declared_only_for_a_qemu_that_survives_it():
    # QEMU 7.2's destination crashes when its recovering stream fails again.
    assert driver_mod_lv.capabilities(9_000_000, 7_002_022).post_copy
    assert not driver_mod_lv.capabilities(9_000_000, 7_002_022).post_copy_recovery
    assert driver_mod_lv.capabilities(9_000_000, 8_002_000).post_copy_recovery
    assert not driver_mod_lv.capabilities(8_004_000, 9_000_000).post_copy_recovery
    # An unknown QEMU is not trusted to recover (other features follow libvirt).
    unknown = driver_mod_lv.capabilities(9_000_000)
    assert unknown.post_copy and not unknown.post_copy_recovery
    # libvirt 11.2 and 11.3 crash the destination's daemon on a resume.
    assert driver_mod_lv.capabilities(11_001_000, 10_000_002).post_copy_recovery
    assert not driver_mod_lv.capabilities(11_002_000, 10_000_002).post_copy_recovery
    assert not driver_mod_lv.capabilities(11_003_000, 10_000_002).post_copy_recovery
    assert driver_mod_lv.capabilities(11_004_000, 10_000_002).post_copy_recovery
    assert driver_mod_lv.capabilities(11_003_000, 10_000_002).post_copy


def test_mt_compression_is_offered_only_by_a_qemu_that_has_it():
    # QEMU 9.1 removed multi-threaded compression ('compress').
    assert driver_mod_lv.capabilities(9_000_000, 9_000_000).compression == ("xbzrle", "mt")
    assert driver_mod_lv.capabilities(9_000_000, 9_001_000).compression == ("xbzrle",)
    assert driver_mod_lv.capabilities(9_000_000).compression == ("xbzrle", "mt")


def test_describe_without_daemon_is_not_cached(daemons, make_conf):
    a = daemons[0]
    a.running = False
    drv = driver_mod_lv.LibvirtDriver(make_conf(a))
    assert drv.describe().version == "1.0"
    a.running = True
    assert "libvirt 9.0.0" in drv.describe().version


def test_impossible_options_are_refused_when_loaded(daemons, make_conf):
    conf = make_conf(daemons[0], tunnelled=True, parallel_connections=4)
    with pytest.raises(exception.ConflictingOptions, match="parallel_connections=4"):
        driver_mod_lv.LibvirtDriver(conf)
    conf = make_conf(daemons[0], permit_post_copy=True, driver_opts={"compression": ["mt"]})
    with pytest.raises(exception.ConflictingOptions, match="compression=mt"):
        driver_mod_lv.LibvirtDriver(conf)


def test_mt_compression_never_lets_a_plan_arm_post_copy(daemons, make_conf):
    drv = driver_mod_lv.LibvirtDriver(make_conf(daemons[0], strategy="adaptive",
                                                driver_opts={"compression": ["mt"]}))
    caps = drv.describe().capabilities
    assert not caps.post_copy and caps.auto_converge and caps.dirty_rate_sampling


def test_instance_info(daemons, make_drivers):
    a, _ = daemons
    a.add_domain("g1", disk=True)
    a.disk_sizes[IMAGE] = 10 << 30
    src, _ = make_drivers()
    info = src.get_instance_info("g1")
    assert info == driver_mod.InstanceInfo(name="g1", state="running",
                                           memory_bytes=64 << 20, disk_bytes=10 << 30)
    with pytest.raises(exception.InstanceNotFound, match="g2.*host-a"):
        src.get_instance_info("g2")


# -- whole migrations --------------------------------------------------------------


def test_split_plane_migration(daemons, make_drivers):
    a, b = daemons
    a.add_domain("g1")
    src, dst = make_drivers()
    result = run(src, dst)
    assert result.status == flow.COMPLETED and result.running_on == "host-b"
    [(dconnuri, params, flags)] = a.migrations
    assert dconnuri == "qemu+tcp://host-b/system"
    assert params["migrate_uri"] == "tcp://198.51.100.12"
    assert params["listen_address"] == "198.51.100.12"
    assert "persistent_xml" in params
    assert flags & libvirt.VIR_MIGRATE_PEER2PEER and flags & libvirt.VIR_MIGRATE_LIVE
    assert flags & libvirt.VIR_MIGRATE_PERSIST_DEST and flags & libvirt.VIR_MIGRATE_UNDEFINE_SOURCE
    assert "g1" not in a.domains and "g1" in b.domains
    assert result.progress.state == driver_mod.JOB_COMPLETED


def test_downtime_steps_reach_libvirt(daemons, make_drivers):
    a, _ = daemons
    dom = a.add_domain("g1")
    a.gate.clear()
    src, dst = make_drivers(downtime=400, downtime_steps=4)
    m, t, outcome = start(src, dst)
    for _ in range(6000):  # up to a minute: a hang guard
        if ("migrateSetMaxDowntime", 100) in dom.calls:
            break
        time.sleep(0.01)
    a.gate.set()
    t.join(60)
    assert ("migrateSetMaxDowntime", 100) in dom.calls   # the first of Nova's steps
    assert outcome["result"].status == flow.COMPLETED


def test_unset_inbound_address_migrates_as_before(daemons, make_drivers):
    a, b = daemons
    a.add_domain("g1")
    src, dst = make_drivers(my_ip=None)
    result = run(src, dst)
    assert result.uris.plane == "management"
    [(dconnuri, params, _)] = a.migrations
    assert dconnuri == "qemu+tcp://host-b/system"
    assert "migrate_uri" not in params and "listen_address" not in params


def test_completed_stats_come_from_the_job_completed_event(daemons, make_drivers,
                                                           monkeypatch):
    monkeypatch.setattr(events, "ensure_event_loop", lambda: False)
    a, _ = daemons
    a.add_domain("g1")
    src, dst = make_drivers(source_opts={"event_loop": True})
    result = run(src, dst)
    assert result.progress.downtime_ms == 42 and result.progress.data_processed == 100


def test_live_migration_returns_at_once_and_progress_is_polled(daemons, make_drivers):
    a, _ = daemons
    a.add_domain("g1")
    a.gate.clear()
    src, dst = make_drivers()
    data = dst.pre_live_migration("g1", src.check_can_live_migrate_source(
        "g1", dst.check_can_live_migrate_destination("g1")))
    from migplane.core import uri as uri_mod
    uris = uri_mod.resolve(src.settings.migration, data, src.describe().capabilities)
    # The job cannot end before the gate opens: live_migration returns anyway.
    call = threading.Thread(target=src.live_migration,
                            args=("g1", data, uris, src.settings.migration))
    call.start()
    call.join(60)
    assert not call.is_alive(), "live_migration waited for the job"
    assert a.job_started.wait(60)
    p = src.get_job_progress("g1")
    assert p.state == driver_mod.JOB_RUNNING and p.data_processed == 40
    assert p.dirty_rate == 10 * 4096 and p.iteration == 2
    with pytest.raises(exception.MigrationError, match="already runs"):
        src.live_migration("g1", data, uris, src.settings.migration)
    a.gate.set()
    for _ in range(6000):  # up to a minute: a hang guard
        p = src.get_job_progress("g1")
        if p.finished:
            break
        time.sleep(0.01)
    assert p.state == driver_mod.JOB_COMPLETED


def test_a_flows_sleep_ends_when_the_job_ends(daemons, make_drivers):
    """The flow's poll does not sleep past the job's end: the paused handover
    waits for the flow to see it, and the guest feels that wait."""
    a, _ = daemons
    a.add_domain("g1")
    a.gate.clear()
    src, dst = make_drivers()
    clock, sleep = src.flow_timing()
    data = dst.pre_live_migration("g1", src.check_can_live_migrate_source(
        "g1", dst.check_can_live_migrate_destination("g1")))
    from migplane.core import uri as uri_mod
    uris = uri_mod.resolve(src.settings.migration, data, src.describe().capabilities)
    src.live_migration("g1", data, uris, src.settings.migration)
    assert a.job_started.wait(60)
    napping = threading.Thread(target=sleep, args=(3600,), daemon=True)
    napping.start()
    a.gate.set()
    napping.join(60)   # a hang guard: without the wake-up it naps an hour
    assert not napping.is_alive()
    assert src.get_job_progress("g1").state == driver_mod.JOB_COMPLETED


def test_libvirt_failure_keeps_its_words_and_the_guest_on_the_source(daemons,
                                                                    make_drivers):
    a, b = daemons
    a.add_domain("g1")
    a.migrate_error = lv_error(libvirt.VIR_ERR_SYSTEM_ERROR,
                               "unable to connect to server at '198.51.100.12:49152': "
                               "No route to host")
    src, dst = make_drivers()
    with pytest.raises(exception.MigrationError, match="No route to host") as err:
        run(src, dst)
    assert err.value.result.status == flow.FAILED
    assert err.value.result.progress.state == driver_mod.JOB_FAILED
    assert a.domains["g1"].state_[0] == libvirt.VIR_DOMAIN_RUNNING
    assert b.domains == {}


def test_abort_mid_migration(daemons, make_drivers):
    a, b = daemons
    a.add_domain("g1")
    a.gate.clear()
    src, dst = make_drivers()
    m, t, outcome = start(src, dst)
    assert a.job_started.wait(60)
    time.sleep(0.05)
    m.abort()
    t.join(60)
    err = outcome["error"]
    assert isinstance(err, exception.MigrationAborted)
    assert "canceled by client" in str(err)
    assert err.result.progress.state == driver_mod.JOB_CANCELLED
    assert err.result.progress.data_processed == 123   # libvirt's record of the job
    assert "g1" in a.domains and b.domains == {}


def test_requests_before_the_job_exists_are_applied_once_it_runs(daemons, make_drivers):
    a, _ = daemons
    dom = a.add_domain("g1")
    a.gate.clear()
    a.downtime_error = lv_error(libvirt.VIR_ERR_OPERATION_INVALID, "not migrating")
    src, _ = make_drivers()
    from migplane.drivers.libvirt import flags
    from migplane.drivers.libvirt import job
    plan = flags.MigrateCall(dconnuri="qemu+tcp://host-b/system", flags=flags.BASE_FLAGS, params={})
    src._jobs["g1"] = job.MigrationJob(dom, plan, "g1")   # started, not yet in libvirt
    src.set_max_downtime("g1", 123)
    src.abort_job("g1")
    assert src._jobs["g1"].pending == {"downtime": 123, "abort": True}
    a.downtime_error = None
    dom.job_stats = dict(a.running_stats)
    assert src.get_job_progress("g1").state == driver_mod.JOB_RUNNING
    assert ("migrateSetMaxDowntime", 123) in dom.calls and ("abortJob",) in dom.calls
    assert src._jobs["g1"].pending == {}


def test_no_job_no_progress(daemons, make_drivers):
    src, _ = make_drivers()
    with pytest.raises(exception.NoActiveMigration, match="g1.*host-a"):
        src.get_job_progress("g1")


def test_a_restarted_agent_follows_the_migration_libvirt_goes_on_with(
        daemons, make_drivers):
    # the process that started the job is gone; libvirtd still migrates
    a, _ = daemons
    dom = a.add_domain("g1")
    src, _ = make_drivers()
    dom.job_stats = dict(a.running_stats,
                         operation=libvirt.VIR_DOMAIN_JOB_OPERATION_MIGRATION_OUT)
    found = src.get_job_progress("g1")
    assert found.state == driver_mod.JOB_RUNNING and not found.postcopy
    assert found.data_processed == a.running_stats["data_processed"]
    dom.state_ = [libvirt.VIR_DOMAIN_PAUSED, libvirt.VIR_DOMAIN_PAUSED_POSTCOPY]
    assert src.get_job_progress("g1").postcopy
    # another kind of job (a save, a dump) is no migration to follow
    dom.job_stats = dict(a.running_stats, operation=libvirt.VIR_DOMAIN_JOB_OPERATION_SAVE)
    with pytest.raises(exception.NoActiveMigration):
        src.get_job_progress("g1")
    # once it ended, how is unknown here: the hosts' states tell
    dom.job_stats = {"type": libvirt.VIR_DOMAIN_JOB_NONE}
    with pytest.raises(exception.NoActiveMigration):
        src.get_job_progress("g1")


# -- force-complete and rollback at the source ---------------------------------------


def _running_job(daemons, make_drivers, **lm):
    a, _ = daemons
    dom = a.add_domain("g1")
    a.gate.clear()
    src, dst = make_drivers(**lm)
    m, t, outcome = start(src, dst)
    assert a.job_started.wait(60)
    return a, dom, src, m, t, outcome


def test_force_complete_switches_to_post_copy(daemons, make_drivers):
    a, dom, src, m, t, outcome = _running_job(daemons, make_drivers, permit_post_copy=True)
    assert a.migrations[0][2] & libvirt.VIR_MIGRATE_POSTCOPY
    m.force_complete()
    for _ in range(6000):  # up to a minute: a hang guard
        if ("migrateStartPostCopy",) in dom.calls:
            break
        time.sleep(0.01)
    assert src.get_job_progress("g1").postcopy
    a.gate.set()
    t.join(60)
    assert outcome["result"].status == flow.COMPLETED
    assert outcome["result"].progress.postcopy


def test_a_switch_to_post_copy_waits_for_the_transfer_to_begin(daemons, make_drivers):
    """libvirt's job exists before QEMU is told to migrate, and QEMU refuses the
    switch until then: the request is kept until the transfer has begun."""
    setup = {k: v for k, v in daemons[0].running_stats.items()
             if k not in ("memory_total", "memory_processed", "memory_remaining")}
    daemons[0].running_stats = setup
    a, dom, src, m, t, outcome = _running_job(daemons, make_drivers, permit_post_copy=True)
    src.force_complete("g1", post_copy=True)
    for _ in range(3):
        src.get_job_progress("g1")
    assert ("migrateStartPostCopy",) not in dom.calls
    dom.job_stats.update(memory_total=100, memory_processed=40, memory_remaining=60)
    assert src.get_job_progress("g1").postcopy
    assert ("migrateStartPostCopy",) in dom.calls
    a.gate.set()
    t.join(60)
    assert outcome["result"].status == flow.COMPLETED
    assert outcome["result"].progress.postcopy


def test_force_complete_pauses_without_post_copy_and_rollback_resumes(daemons,
                                                                       make_drivers):
    a, dom, src, m, t, outcome = _running_job(daemons, make_drivers)
    m.force_complete()
    for _ in range(6000):  # up to a minute: a hang guard
        if ("suspend",) in dom.calls:
            break
        time.sleep(0.01)
    assert dom.state_[0] == libvirt.VIR_DOMAIN_PAUSED
    a.migrate_error = lv_error(libvirt.VIR_ERR_OPERATION_FAILED, "migration failed late")
    a.gate.set()
    t.join(60)
    assert isinstance(outcome["error"], exception.MigrationError)
    assert ("resume",) in dom.calls and dom.state_[0] == libvirt.VIR_DOMAIN_RUNNING


def _broken_post_copy(daemons, make_drivers, monkeypatch, timeout, answers=(True,)):
    """A job switched to post-copy whose stream breaks; the destination answers
    the probes as ``answers`` say (the last one repeated)."""
    from migplane.drivers.libvirt import recovery

    said = list(answers)
    monkeypatch.setattr(recovery.Recovery, "peer_answers", lambda self: (
        said.pop(0) if len(said) > 1 else said[0], "probed"))
    monkeypatch.setattr(recovery.Recovery, "destination_half_gone",
                        lambda self, instance: daemons[1].half_gone)
    monkeypatch.setattr(recovery, "RETRY_FIRST_S", 0.01)
    a, dom, src, m, t, outcome = _running_job(
        daemons, make_drivers, permit_post_copy=True,
        source_opts={"postcopy_recovery_timeout": timeout, "postcopy_stall_timeout": 1})
    m.force_complete()
    for _ in range(6000):  # up to a minute: a hang guard
        if src.get_job_progress("g1").postcopy:
            break
        time.sleep(0.01)
    a.gate.clear()
    dom.state_ = [libvirt.VIR_DOMAIN_PAUSED, libvirt.VIR_DOMAIN_PAUSED_POSTCOPY_FAILED]
    # the destination's half runs, waiting for the pages it lacks
    b = daemons[1]
    b.domains["g1"] = type(dom)(b, "g1", dom.xml, uuid=dom.uuid)
    b.domains["g1"].state_ = [libvirt.VIR_DOMAIN_RUNNING, 11]  # RUNNING_POSTCOPY_FAILED
    a.migrate_error = lv_error(libvirt.VIR_ERR_OPERATION_FAILED,
                               "Unable to write to socket: Connection reset by peer")
    return a, dom, src, m, t, outcome


def test_a_broken_post_copy_is_resumed_with_the_original_flags(daemons, make_drivers,
                                                               monkeypatch):
    a, dom, src, m, t, outcome = _broken_post_copy(daemons, make_drivers, monkeypatch, 60,
                                                   answers=(False, False, True))
    first = a.migrations[0]
    states = []
    a.gate.set()                      # the first call returns: the stream broke
    for _ in range(6000):  # up to a minute: a hang guard
        states.append(src.get_job_progress("g1").state)
        if src._jobs["g1"].breaks:    # the first call returned: the thread recovers
            break
        time.sleep(0.01)
    assert driver_mod.JOB_POSTCOPY_RECOVERING in states
    a.migrate_error = None            # the link is back: the resume goes through
    t.join(10)
    assert outcome["result"].status == flow.COMPLETED, outcome
    resumed = a.migrations[-1]
    assert resumed[0] == first[0] and resumed[1] == first[1]
    assert resumed[2] == first[2] | libvirt.VIR_MIGRATE_POSTCOPY \
        | libvirt.VIR_MIGRATE_POSTCOPY_RESUME
    assert ("resume",) not in dom.calls and ("destroy",) not in dom.calls


def test_a_broken_post_copy_is_left_paused_then_resumed_by_hand(daemons, make_drivers,
                                                                monkeypatch):
    a, dom, src, m, t, outcome = _broken_post_copy(daemons, make_drivers, monkeypatch, 0)
    a.gate.set()
    t.join(60)
    assert src._jobs["g1"].wait(60)   # libvirt returned the broken call
    err = outcome["error"]
    assert isinstance(err, exception.PostCopyPaused) and "migplane resume" in str(err)
    assert src.get_job_progress("g1").state == driver_mod.JOB_POSTCOPY_PAUSED
    # nothing resumed, destroyed or undefined on the source; rollback refuses too
    src.rollback_live_migration_at_source("g1", md.MigrateData(dest_hostname="host-b"))
    assert not any(c[0] in ("resume", "destroy", "undefineFlags") for c in dom.calls)
    assert dom.state_ == [libvirt.VIR_DOMAIN_PAUSED,
                          libvirt.VIR_DOMAIN_PAUSED_POSTCOPY_FAILED]
    # later, by hand, with a deadline again
    src.postcopy_recovery_timeout = 60
    src._jobs["g1"].recovery.timeout_s = 60
    a.migrate_error = None
    src.resume_postcopy("g1")
    for _ in range(6000):  # up to a minute: a hang guard
        if src.get_job_progress("g1").state == driver_mod.JOB_COMPLETED:
            break
        time.sleep(0.01)
    assert src.get_job_progress("g1").state == driver_mod.JOB_COMPLETED
    assert a.migrations[-1][2] & libvirt.VIR_MIGRATE_POSTCOPY_RESUME


def test_a_post_copy_outlives_a_restart_of_the_sources_libvirtd(daemons, make_drivers,
                                                                monkeypatch):
    """The daemon dies under the job (the call fails, the handle is dead); the
    QEMUs go on and finish. The recovery waits for the daemon, finds the
    domain again and reports the job completed, instead of giving up."""
    a, dom, src, m, t, outcome = _broken_post_copy(daemons, make_drivers, monkeypatch, 60)
    a.migrate_error = lv_error(libvirt.VIR_ERR_INTERNAL_ERROR,
                               "End of file while reading data: Input/output error")
    a.running = False
    a.gate.set()
    job = src._jobs["g1"]
    for _ in range(6000):  # up to a minute: a hang guard
        if job.recovery_note and "does not answer" in job.recovery_note:
            break
        time.sleep(0.01)
    assert "this host's libvirtd does not answer" in job.recovery_note
    assert not job.gave_up and not job.done
    # QEMU finished: libvirt shut the source's copy off and kept its definition
    daemons[1].domains["g1"].state_ = [libvirt.VIR_DOMAIN_RUNNING, 1]
    dom.state_ = [libvirt.VIR_DOMAIN_SHUTOFF, libvirt.VIR_DOMAIN_SHUTOFF_MIGRATED]
    dom.active = False
    a.running = True
    t.join(60)
    assert outcome["result"].status == flow.COMPLETED, outcome
    assert outcome["result"].verdict == "completed"
    assert not any(c[0] in ("resume", "destroy") for c in dom.calls)
    assert "g1" not in a.domains, "the source keeps a bootable definition"


def test_a_half_whose_qemu_died_ends_the_recovery_as_lost(daemons, make_drivers,
                                                         monkeypatch):
    """The destination's QEMU died: nothing can resume the stream, so the
    recovery stops at once (not at its deadline) and the verdict is lost;
    the source's half is neither resumed, destroyed nor undefined."""
    a, dom, src, m, t, outcome = _broken_post_copy(daemons, make_drivers, monkeypatch, 600)
    del daemons[1].domains["g1"]
    daemons[1].half_gone = True
    a.gate.set()
    t.join(60)
    err = outcome["error"]
    assert isinstance(err, exception.MigrationNotSettled), err
    assert err.result.verdict == "lost" and "nothing can resume" in str(err), err
    assert dom.state_ == [libvirt.VIR_DOMAIN_PAUSED,
                          libvirt.VIR_DOMAIN_PAUSED_POSTCOPY_FAILED]
    assert not any(c[0] in ("resume", "destroy", "undefineFlags") for c in dom.calls)
    assert "g1" in a.domains


def test_a_stalled_post_copy_is_paused_then_recovered(daemons, make_drivers, monkeypatch):
    a, dom, src, m, t, outcome = _broken_post_copy(daemons, make_drivers, monkeypatch, 60)
    a.migrate_error = None
    dom.state_ = [libvirt.VIR_DOMAIN_PAUSED, libvirt.VIR_DOMAIN_PAUSED_POSTCOPY]
    dom.job_stats = dict(a.running_stats, memory_processed=1000)   # nothing moves
    for _ in range(6000):  # up to a minute: a hang guard
        if ("abortJobFlags", libvirt.VIR_DOMAIN_ABORT_JOB_POSTCOPY) in dom.calls:
            break
        time.sleep(0.01)
    assert ("abortJobFlags", libvirt.VIR_DOMAIN_ABORT_JOB_POSTCOPY) in dom.calls
    a.migrate_error = None
    t.join(60)
    assert outcome["result"].status == flow.COMPLETED, outcome
    assert a.migrations[-1][2] & libvirt.VIR_MIGRATE_POSTCOPY_RESUME


def test_resume_without_a_broken_post_copy_is_refused(daemons, make_drivers):
    a, _ = daemons
    a.add_domain("g1")
    src, _ = make_drivers()
    with pytest.raises(exception.NoActiveMigration):
        src.resume_postcopy("g1")


def test_rollback_at_source_resumes_a_guest_libvirt_left_paused(daemons, make_drivers):
    a, _ = daemons
    dom = a.add_domain("g1")
    dom.state_ = [libvirt.VIR_DOMAIN_PAUSED, libvirt.VIR_DOMAIN_PAUSED_MIGRATION]
    src, _ = make_drivers()
    src.rollback_live_migration_at_source("g1", md.MigrateData(dest_hostname="host-b"))
    assert dom.state_[0] == libvirt.VIR_DOMAIN_RUNNING
    dom.state_ = [libvirt.VIR_DOMAIN_PAUSED, libvirt.VIR_DOMAIN_PAUSED_USER]
    src.rollback_live_migration_at_source("g1", md.MigrateData(dest_hostname="host-b"))
    assert dom.state_[0] == libvirt.VIR_DOMAIN_PAUSED   # the operator's pause: kept


# -- the destination ----------------------------------------------------------------


def test_destination_refuses_a_guest_it_already_has(daemons, make_drivers):
    _, b = daemons
    b.add_domain("g1", active=False)
    _, dst = make_drivers()
    with pytest.raises(exception.DestinationCheckFailed, match="already defined here"):
        dst.check_can_live_migrate_destination("g1")


def test_source_refuses_a_stopped_or_busy_guest(daemons, make_drivers):
    a, _ = daemons
    src, dst = make_drivers()
    data = dst.check_can_live_migrate_destination("g1")
    dom = a.add_domain("g1", active=False)
    with pytest.raises(exception.SourceCheckFailed, match="not running"):
        src.check_can_live_migrate_source("g1", data)
    dom.active = True
    dom.job_stats = {"type": libvirt.VIR_DOMAIN_JOB_UNBOUNDED}
    with pytest.raises(exception.SourceCheckFailed, match="already runs"):
        src.check_can_live_migrate_source("g1", data)


def test_inbound_link_down_fails_before_anything_moves(daemons, make_drivers, links):
    a, b = daemons
    a.add_domain("g1")
    links[("host-b", "mig0")] = False
    src, dst = make_drivers()
    with pytest.raises(exception.InboundAddressError, match="mig0 is down") as err:
        run(src, dst)
    assert "198.51.100.12" in str(err.value)
    assert a.migrations == [] and b.domains == {}
    assert a.domains["g1"].state_[0] == libvirt.VIR_DOMAIN_RUNNING


def test_an_address_of_another_host_is_refused(daemons, make_drivers):
    a, b = daemons
    a.add_domain("g1")
    src, dst = make_drivers(my_ip="198.51.100.11")
    with pytest.raises(exception.InboundAddressError, match="not an address of this host"):
        run(src, dst)
    assert a.migrations == []


def test_ipv6_inbound_address(daemons, make_drivers):
    a, _ = daemons
    a.add_domain("g1")
    src, dst = make_drivers(my_ip="2001:db8:2::12")
    run(src, dst)
    params = a.migrations[0][1]
    assert params["migrate_uri"] == "tcp://[2001:db8:2::12]"
    assert params["listen_address"] == "2001:db8:2::12"


def test_block_migration_precreates_images_and_copies_local_disks_only(daemons,
                                                                       make_drivers):
    a, b = daemons
    a.add_domain("g1", disk=True)
    a.files[IMAGE] = (3 << 30, "qcow2")
    a.disk_sizes[IMAGE] = 3 << 30
    src, dst = make_drivers()
    result = run(src, dst, block=True)
    assert result.status == flow.COMPLETED
    assert b.created_volumes == [(IMAGE, 3 << 30, "qcow2",
                                  libvirt.VIR_STORAGE_VOL_CREATE_PREALLOC_METADATA)]
    [(_, params, flags)] = a.migrations
    assert flags & libvirt.VIR_MIGRATE_NON_SHARED_INC
    assert params["migrate_disks"] == ["vda"]          # not the read-only CD-ROM
    assert params["disks_uri"] == "tcp://198.51.100.12"
    assert IMAGE in b.files and IMAGE not in a.files   # the source copy is gone
    assert a.pools == [] and b.pools == []


def test_block_migration_refuses_to_overwrite_an_existing_image(daemons, make_drivers):
    a, b = daemons
    a.add_domain("g1", disk=True)
    b.files[IMAGE] = (1, "qcow2")
    src, dst = make_drivers()
    with pytest.raises(exception.DestinationCheckFailed, match="already exists"):
        run(src, dst, block=True)
    assert b.files == {IMAGE: (1, "qcow2")} and a.migrations == []


def test_failed_block_migration_removes_what_it_created(daemons, make_drivers):
    a, b = daemons
    a.add_domain("g1", disk=True)
    a.files[IMAGE] = (1 << 30, "qcow2")
    a.migrate_error = lv_error(libvirt.VIR_ERR_OPERATION_FAILED, "mirror failed")
    src, dst = make_drivers()
    with pytest.raises(exception.MigrationError, match="mirror failed"):
        run(src, dst, block=True)
    assert b.created_volumes and b.files == {} and b.pools == []
    assert a.files == {IMAGE: (1 << 30, "qcow2")}      # the source keeps its disk


def test_rollback_at_destination_is_idempotent_and_survives_a_restart(daemons,
                                                                     make_drivers):
    _, b = daemons
    dom = b.add_domain("g1", persistent=False)
    b.files[IMAGE] = (1, "qcow2")
    _, dst = make_drivers()
    data = md.MigrateData(dest_hostname="host-b", block_migration=True,
                          driver_data={"created_disks": [IMAGE],
                                       "incoming": {"uuid": dom.uuid}})
    dst.check_can_live_migrate_destination("g2")   # opens the connection
    b.running = False
    with pytest.raises(exception.HypervisorUnavailable, match="host-b"):
        dst.rollback_live_migration_at_destination("g1", data)
    b.running = True
    dst.rollback_live_migration_at_destination("g1", data)
    assert ("destroy",) in dom.calls and b.domains == {} and b.files == {}
    dst.rollback_live_migration_at_destination("g1", data)


def test_rollback_at_destination_undefines_a_persistent_leftover(daemons, make_drivers):
    _, b = daemons
    dom = b.add_domain("g1", persistent=True)
    _, dst = make_drivers()
    dst.rollback_live_migration_at_destination("g1", md.MigrateData(
        dest_hostname="host-b", driver_data={"incoming": {"uuid": dom.uuid}}))
    assert b.domains == {}
    assert [c[0] for c in dom.calls] == ["destroy", "undefineFlags"]


def test_post_migration_steps(daemons, make_drivers):
    a, b = daemons
    leftover = a.add_domain("g1", active=False)
    moved = b.add_domain("g1", persistent=False)
    src, dst = make_drivers()
    data = md.MigrateData(dest_hostname="host-b")
    dst.post_live_migration_at_destination("g1", data)
    assert b.defined == [moved.xml]          # made persistent
    src.post_live_migration_at_source("g1", data)
    assert "g1" not in a.domains and leftover.calls[-1][0] == "undefineFlags"
    a.add_domain("g1")
    with pytest.raises(exception.MigrationError, match="still runs here"):
        src.post_live_migration_at_source("g1", data)


@pytest.mark.parametrize("said", [
    "Cannot read from TLS channel: Input/output error",       # QEMU 7.2's destination
    "Not a migration stream\nload of migration failed: Invalid argument",   # QEMU 10's
])
def test_tls_failures_say_which_name_was_verified(daemons, make_drivers, said):
    a, _ = daemons
    a.add_domain("g1")
    a.migrate_error = lv_error(libvirt.VIR_ERR_INTERNAL_ERROR,
                               "qemu unexpectedly closed the monitor: " + said)
    src, dst = make_drivers(with_native_tls=True)
    with pytest.raises(exception.MigrationError) as err:
        run(src, dst)
    assert said.splitlines()[0] in str(err.value)
    assert "TLS: the destination's certificate is verified against 'host-b'" \
        in str(err.value)
    assert a.migrations[0][1]["tls.destination"] == "host-b"


def test_tunnelled_block_migration_is_refused_before_the_destination_prepares(
        daemons, make_drivers):
    a, b = daemons
    a.add_domain("g1", disk=True)
    src, dst = make_drivers(tunnelled=True)
    with pytest.raises(exception.ConflictingOptions, match="tunnelled=True and block"):
        run(src, dst, block=True)
    assert b.created_volumes == [] and a.migrations == []


def test_a_failed_progress_read_is_not_a_failed_migration(daemons, make_drivers):
    a, dom, src, m, t, outcome = _running_job(daemons, make_drivers)
    for _ in range(6000):  # up to a minute: a hang guard
        if src._jobs["g1"].last_stats:
            break
        time.sleep(0.01)
    a.stats_error = lv_error(libvirt.VIR_ERR_OPERATION_TIMEOUT,
                             "Timed out during operation: cannot acquire state change lock")
    p = src.get_job_progress("g1")
    assert p.state == driver_mod.JOB_RUNNING and p.data_processed == 40
    for conn in a.conns:
        conn.alive = False        # the daemon connection died
    with pytest.raises(exception.HypervisorUnavailable, match="host-a"):
        src.get_job_progress("g1")
    a.stats_error = None
    a.gate.set()
    t.join(60)


def test_completed_jobs_wait_for_their_event():
    jobs = events.CompletedJobs()
    assert jobs.get("u1", timeout=0.01) is None

    class Dom:
        def UUIDString(self):
            return "u1"

    threading.Timer(0.05, jobs._on_event, (None, Dom(), {"downtime": 7}, None)).start()
    assert jobs.get("u1", timeout=60) == {"downtime": 7}
    jobs.forget("u1")
    assert jobs.get("u1") is None


def test_unknown_addresses_trust_the_configured_one(daemons, make_drivers, monkeypatch):
    from migplane.drivers.libvirt import addresses

    def broken(netns=None):
        raise RuntimeError("netlink said no")

    monkeypatch.setattr(addresses, "read", broken)
    a, _ = daemons
    a.add_domain("g1")
    src, dst = make_drivers()
    assert dst.local_addresses() is None
    assert run(src, dst).uris.data_uri == "tcp://198.51.100.12"


def test_a_missing_netns_is_a_clear_configuration_error(daemons, make_drivers,
                                                       monkeypatch):
    from migplane.drivers.libvirt import addresses

    def missing(netns=None):
        raise exception.ConfigError(group="driver_libvirt", option="netns", value=netns,
                                    reason="no such network namespace")

    monkeypatch.setattr(addresses, "read", missing)
    _, dst = make_drivers()
    with pytest.raises(exception.ConfigError, match="netns.*no such network namespace"):
        dst.pre_live_migration("g1", dst.check_can_live_migrate_destination("g1"))


def test_rollback_at_destination_never_destroys_a_guest_that_arrived(daemons,
                                                                     make_drivers):
    _, b = daemons
    dom = b.add_domain("g1")
    dom.state_ = [libvirt.VIR_DOMAIN_RUNNING, libvirt.VIR_DOMAIN_RUNNING_MIGRATED]
    _, dst = make_drivers()
    with pytest.raises(exception.MigrationError, match="not destroying it"):
        dst.rollback_live_migration_at_destination("g1", md.MigrateData(
            dest_hostname="host-b", driver_data={"incoming": {"uuid": dom.uuid}}))
    assert "g1" in b.domains and ("destroy",) not in dom.calls


def test_explain_describes_the_call_without_preparing_anything(daemons, make_drivers,
                                                              links):
    from migplane.core import uri as uri_mod

    a, b = daemons
    a.add_domain("g1", disk=True)
    src, dst = make_drivers(permit_post_copy=True, bandwidth=100)
    data = dst.plan_inbound("g1", block_migration=True)
    assert data.target_connect_addr == "198.51.100.12"
    uris = uri_mod.resolve(src.settings.migration, data, src.describe().capabilities,
                           block_migration=True)
    plan = src.describe_migration("g1", data, uris, src.settings.migration)
    assert plan["dconnuri"] == "qemu+tcp://host-b/system"
    assert "POSTCOPY" in plan["flags"] and "NON_SHARED_INC" in plan["flags"]
    assert plan["params"]["migrate_uri"] == "tcp://198.51.100.12"
    assert plan["params"]["migrate_disks"] == ["vda"]
    assert plan["params"]["persistent_xml"].endswith("characters of domain XML>")
    assert "permit_post_copy" in plan["reasons"]["POSTCOPY"]
    assert "198.51.100.12" in plan["reasons"]["migrate_uri"]
    assert b.created_volumes == [] and a.migrations == []
    links[("host-b", "mig0")] = False
    with pytest.raises(exception.InboundAddressError, match="mig0 is down"):
        dst.plan_inbound("g1")


# -- what a hostile peer may name (the agent's hostile-peer suite drives the agents) --

def _block_data(*disks, **driver_data):
    return md.MigrateData(dest_hostname="host-b", block_migration=True,
                          driver_data=dict(driver_data, disks=[
                              {"target": "vda", "path": path, "format": "qcow2",
                               "capacity": capacity} for path, capacity in disks]))


@pytest.mark.parametrize("path, capacity, reason", [
    ("/etc/shadow", 1 << 20, "storage_root"),
    ("/var/lib/libvirt/images/../../../etc/shadow", 1 << 20, "storage_root"),
    ("/var/lib/libvirt/images", 1 << 20, "storage_root"),
    ("images/g1.qcow2", 1 << 20, "storage_root"),
    ("/var/lib/libvirt/images/g1.qcow2", 1 << 50, "more than"),
])
def test_a_destination_creates_images_only_under_its_storage_root(daemons, make_drivers,
                                                                  path, capacity, reason):
    _, b = daemons
    _, dst = make_drivers()
    with pytest.raises(exception.DestinationCheckFailed, match=reason):
        dst.pre_live_migration("g1", _block_data((path, capacity)))
    assert b.files == {} and b.created_volumes == []


def test_pre_live_migration_takes_no_created_disks_or_incoming_from_the_source(
        daemons, make_drivers):
    _, b = daemons
    victim = b.add_domain("victim")
    _, dst = make_drivers()
    answer = dst.pre_live_migration("g1", _block_data(
        (IMAGE, 1 << 20), created_disks=["/etc/shadow"], incoming={"uuid": victim.uuid}))
    assert list(answer.driver_data["created_disks"]) == [IMAGE]
    assert dict(answer.driver_data["incoming"]) == {"uuid": None}
    dst.rollback_live_migration_at_destination("g1", answer)
    assert "victim" in b.domains and b.files == {}


def test_pre_live_migration_refuses_the_uuid_of_a_guest_it_has(daemons, make_drivers):
    _, b = daemons
    victim = b.add_domain("victim", active=False)
    _, dst = make_drivers()
    with pytest.raises(exception.DestinationCheckFailed, match="'victim'"):
        dst.pre_live_migration("g1", md.MigrateData(dest_hostname="host-b",
                                                    driver_data={"uuid": victim.uuid}))


def test_rollback_removes_no_domain_pre_did_not_find_absent(daemons, make_drivers):
    _, b = daemons
    other = b.add_domain("g1", active=False)
    _, dst = make_drivers()
    dst.rollback_live_migration_at_destination("g1", md.MigrateData(dest_hostname="host-b"))
    dst.rollback_live_migration_at_destination("g1", md.MigrateData(
        dest_hostname="host-b", driver_data={"incoming": {"uuid": "0" * 8 + "-0000-4000-8000"
                                                          + "-" + "0" * 12}}))
    assert b.domains == {"g1": other} and other.calls == []


def claiming_created_disks(dst, disks):
    """``dst``, but its pre_live_migration answer claims it created ``disks``."""
    class Lying:
        def __getattr__(self, name):
            return getattr(dst, name)

        def pre_live_migration(self, instance, data):
            answer = dst.pre_live_migration(instance, data)
            return answer.replace(driver_data=dict(answer.driver_data, created_disks=disks))

    return Lying()


def test_the_source_deletes_only_its_own_copied_images_the_destination_created(
        daemons, make_drivers):
    a, b = daemons
    a.add_domain("g1", disk=True)
    a.files[IMAGE] = (1 << 30, "qcow2")
    other = "/var/lib/libvirt/images/other-guest.qcow2"
    a.files[other] = (1 << 30, "qcow2")
    src, dst = make_drivers()

    liar = claiming_created_disks(dst, [IMAGE, other, "/etc/shadow"])
    assert run(src, liar, block=True).status == flow.COMPLETED
    assert IMAGE not in a.files and other in a.files


def test_no_source_image_is_deleted_after_a_migration_without_block(daemons,
                                                                    make_drivers):
    a, _ = daemons
    a.add_domain("g1", disk=True)
    a.files[IMAGE] = (1 << 30, "qcow2")
    src, dst = make_drivers()

    assert run(src, claiming_created_disks(dst, [IMAGE])).status == flow.COMPLETED
    assert IMAGE in a.files
# -- the handover and the settle function's steps ------------------------------------

MD = md.MigrateData(dest_hostname="host-b")


@pytest.mark.parametrize("state, reason, named", [
    ((libvirt.VIR_DOMAIN_RUNNING, libvirt.VIR_DOMAIN_RUNNING_MIGRATION_CANCELED),
     "running", "migration-canceled"),
    ((libvirt.VIR_DOMAIN_PAUSED, libvirt.VIR_DOMAIN_PAUSED_USER), "paused", "held"),
    ((libvirt.VIR_DOMAIN_PAUSED, libvirt.VIR_DOMAIN_PAUSED_MIGRATION), "paused",
     "migration"),
    ((libvirt.VIR_DOMAIN_PAUSED, libvirt.VIR_DOMAIN_PAUSED_POSTCOPY_FAILED), "paused",
     "postcopy-failed"),
    ((libvirt.VIR_DOMAIN_RUNNING, libvirt.VIR_DOMAIN_RUNNING_BOOTED), "running", None),
])
def test_instance_info_names_the_state_reasons_settling_needs(daemons, make_drivers,
                                                              state, reason, named):
    a, _ = daemons
    a.add_domain("g1").state_ = list(state)
    src, _ = make_drivers()
    info = src.get_instance_info("g1")
    assert (info.state, info.reason) == (reason, named)


def test_post_at_destination_resumes_the_copy_the_handover_held(daemons, make_drivers):
    _, b = daemons
    dom = b.add_domain("g1", persistent=False)
    dom.state_ = [libvirt.VIR_DOMAIN_PAUSED, libvirt.VIR_DOMAIN_PAUSED_USER]
    _, dst = make_drivers()
    dst.post_live_migration_at_destination("g1", MD)
    assert ("resume",) in dom.calls and dom.state_[0] == libvirt.VIR_DOMAIN_RUNNING


def test_pause_instance_pauses_only_a_running_copy(daemons, make_drivers):
    a, _ = daemons
    dom = a.add_domain("g1")
    src, _ = make_drivers()
    src.pause_instance("g1", MD)
    assert dom.state_[0] == libvirt.VIR_DOMAIN_PAUSED
    src.pause_instance("g1", MD)
    assert dom.calls.count(("suspend",)) == 1
    src.pause_instance("gone", MD)  # nothing to pause: nothing done


def test_post_at_source_destroys_a_copy_stopped_at_the_switch_over(daemons,
                                                                   make_drivers):
    a, _ = daemons
    dom = a.add_domain("g1")
    dom.state_ = [libvirt.VIR_DOMAIN_PAUSED, libvirt.VIR_DOMAIN_PAUSED_MIGRATION]
    src, _ = make_drivers()
    src.post_live_migration_at_source("g1", MD)
    assert ("destroy",) in dom.calls and "g1" not in a.domains


def test_post_at_source_leaves_a_post_copy_half_alone(daemons, make_drivers):
    a, _ = daemons
    dom = a.add_domain("g1")
    dom.state_ = [libvirt.VIR_DOMAIN_PAUSED, libvirt.VIR_DOMAIN_PAUSED_POSTCOPY_FAILED]
    src, _ = make_drivers()
    with pytest.raises(exception.MigrationError, match="still runs here"):
        src.post_live_migration_at_source("g1", MD)
    assert ("destroy",) not in dom.calls and dom.persistent


@pytest.mark.parametrize("state", [
    (libvirt.VIR_DOMAIN_RUNNING, libvirt.VIR_DOMAIN_RUNNING_POSTCOPY_FAILED),
    (libvirt.VIR_DOMAIN_PAUSED, libvirt.VIR_DOMAIN_PAUSED_POSTCOPY)])
def test_rollback_never_destroys_a_post_copy_half(daemons, make_drivers, state):
    _, b = daemons
    dom = b.add_domain("g1")
    dom.state_ = list(state)
    _, dst = make_drivers()
    # what this host's pre_live_migration recorded: the domain of that UUID is its own
    own = MD.replace(driver_data={driver_mod_lv.INCOMING: {"uuid": dom.UUIDString()}})
    with pytest.raises(exception.MigrationError, match="not destroying it"):
        dst.rollback_live_migration_at_destination("g1", own)
    assert ("destroy",) not in dom.calls
