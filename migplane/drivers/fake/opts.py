"""Options of the fake driver (group ``[driver_fake]``)."""

from oslo_config import cfg

GROUP = "driver_fake"

fake_opts = [
    cfg.StrOpt("world", default="default",
               help="Name of the simulated world (per process) the host lives in."),
    cfg.StrOpt("host",
               help="Name of the simulated host this driver drives. Defaults to "
                    "[live_migration] hostname."),
]


def register_opts(conf):
    conf.register_opts(fake_opts, group=GROUP)


def list_opts():
    return [(GROUP, fake_opts)]
