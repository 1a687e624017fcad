"""Options of the libvirt driver, in group ``[driver_libvirt]``.

Not ``[libvirt]``: stacks that embed migplane (Nova) already own that group,
and registering into it would collide with their options. This module must
import without libvirt-python so that oslo-config-generator can list it.
"""

from typing import List
from typing import Tuple

from oslo_config import cfg
from oslo_config import types

GROUP = "driver_libvirt"

#: Compression methods QEMU accepts in pre-copy, as libvirt names them.
COMPRESSION_METHODS = ("xbzrle", "mt")

driver_opts = [
    cfg.StrOpt(
        "connection_uri",
        default="qemu:///system",
        help="URI of the libvirt daemon this host's driver talks to, e.g. "
             "'qemu:///system' or 'qemu+unix:///system?socket=/path/to/libvirt-sock'. "
             "The control connection to the other host is given by [live_migration] "
             "scheme and hostname, not by this option."),
    cfg.StrOpt(
        "netns",
        default=None,
        help="Name of the network namespace (as listed by 'ip netns') to read this "
             "host's IP addresses from, when the libvirt daemon runs in another "
             "network namespace than this process. The addresses are used to check "
             "that [DEFAULT] my_live_migration_ip belongs to this host and that its "
             "interface is up. Unset: the namespace of this process."),
    cfg.BoolOpt(
        "event_loop",
        default=True,
        help="Register libvirt's default event loop implementation and run it in a "
             "daemon thread. The driver needs an event loop to receive the statistics "
             "of a completed migration job (the source domain is gone by then) and "
             "for connection keepalives. It also replaces libvirt's default error "
             "handler, which prints every error to stderr, by one that ignores them "
             "(the driver logs the errors it acts on). Set to false when the embedding "
             "process registers its own libvirt event loop and error handler before "
             "loading the driver."),
    cfg.ListOpt(
        "compression",
        item_type=types.String(choices=COMPRESSION_METHODS),
        default=[],
        help="Compression methods of the migration stream: 'xbzrle' (pages that "
             "changed little are sent as deltas) and/or 'mt' (multi-threaded "
             "compression). Empty: no compression. 'mt' cannot be combined with "
             "[live_migration] parallel_connections above 1 or with permit_post_copy."),
    cfg.BoolOpt(
        "cleanup_source_disks",
        default=True,
        help="After a successful block migration this host started, delete its "
             "copies of the guest's local file disks, as its own definition of the "
             "guest lists them, that the destination said it had to create (which "
             "proves the storage is not shared). Nothing the destination names "
             "otherwise is ever deleted."),
    cfg.StrOpt(
        "storage_root",
        default="/var/lib/libvirt/images",
        help="Directory (as the libvirt daemon sees it) under which the destination "
             "of a block migration creates the images of the guest's disks; a disk "
             "outside it is refused, so a peer can never make this host create or "
             "delete a file elsewhere. An image is created only where none exists, "
             "and no larger than the storage pool holding it."),
    cfg.IntOpt(
        "postcopy_stall_timeout",
        default=30,
        min=1,
        help="Seconds a migration in post-copy may send nothing before the driver "
             "pauses its stream (abortJobFlags with VIR_DOMAIN_ABORT_JOB_POSTCOPY) and "
             "recovers it as a broken one; a stream that breaks outright (connection "
             "reset) is recovered at once. Needs libvirt 8.5 or later."),
    cfg.IntOpt(
        "postcopy_recovery_timeout",
        default=600,
        min=0,
        help="Seconds the driver keeps trying to resume a broken post-copy migration "
             "(waiting for the destination's libvirtd and migration address to answer, "
             "then migrateToURI3 with VIR_MIGRATE_POSTCOPY_RESUME, with a backoff). "
             "After that both halves are left as they are, paused: nothing is "
             "destroyed, undefined or resumed, and 'migplane resume MIGRATION' starts "
             "the recovery again. 0: never retry (leave it paused at once)."),
    cfg.IntOpt(
        "job_end_timeout",
        default=30,
        min=1,
        help="Seconds to wait for the libvirt migration call to return once its end "
             "is in sight (the source domain left, or a rollback aborted the job) "
             "before the driver stops waiting for it."),
    cfg.StrOpt(
        "daemon_config_dir",
        default="/etc/libvirt",
        help="Directory of the libvirt daemon's libvirtd.conf and qemu.conf, as this "
             "process sees it. Their keepalive settings bound the management-plane "
             "outage a switch to post-copy survives before libvirt's Finish; where "
             "post-copy may be armed, the driver warns when they close a silent "
             "connection within 60 s."),
]


def register_opts(conf: cfg.ConfigOpts) -> None:
    """Register the driver's options on ``conf`` (idempotent)."""
    conf.register_opts(driver_opts, group=GROUP)


def list_opts() -> List[Tuple[str, List[cfg.Opt]]]:
    """The driver's options for oslo-config-generator, as original objects."""
    return [(GROUP, driver_opts)]
