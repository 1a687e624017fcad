"""Options of the fake driver (group ``[driver_fake]``)."""

from typing import List
from typing import Tuple

from oslo_config import cfg

GROUP = "driver_fake"

fake_opts = [
    cfg.StrOpt("world", default="default",
               help="Name of the simulated world (per process) the host lives in."),
    cfg.StrOpt("host",
               help="Name of the simulated host this driver drives. Defaults to "
                    "[live_migration] hostname."),
    cfg.FloatOpt("postcopy_stall_timeout", default=10.0, min=0.1,
                 help="Simulated seconds without progress after which a post-copy "
                      "migration counts as stalled and is recovered (as "
                      "[driver_libvirt] postcopy_stall_timeout)."),
    cfg.FloatOpt("postcopy_recovery_timeout", default=300.0, min=0.0,
                 help="Simulated seconds a broken post-copy is retried before it is "
                      "left paused (as [driver_libvirt] postcopy_recovery_timeout)."),
]


def register_opts(conf: cfg.ConfigOpts) -> None:
    conf.register_opts(fake_opts, group=GROUP)


def list_opts() -> List[Tuple[str, List[cfg.Opt]]]:
    return [(GROUP, fake_opts)]
