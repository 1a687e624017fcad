"""What ``migplane --version`` and ``migplane-agent --version`` print.

A bug report needs migplane's version and the libvirt and QEMU versions the
driver actually talks to, so the driver is asked (``describe()``). Where it
cannot be (libvirt-python missing, no daemon, a bad configuration) the text
says why instead of failing: ``--version`` always answers.
"""

import logging
import platform
from importlib import metadata

from migplane.core import loader


def package_version():
    try:
        return metadata.version("migplane")
    except metadata.PackageNotFoundError:
        return "unknown (not installed)"


def _client_library():
    try:
        import libvirt
    except ImportError:
        return "libvirt-python not installed"
    number = libvirt.getVersion()
    return "libvirt-python for libvirt %d.%d.%d" % (
        number // 1_000_000, number // 1000 % 1000, number % 1000)


def _driver(conf, name):
    """``'libvirt 1.0 (libvirt 9.0.0, QEMU 7.2.0)'``, or why there is none."""
    if conf is None:
        return "unknown (the configuration was not read)"
    quiet = logging.getLogger("migplane")
    level = quiet.level
    # setLevel, not an assignment: it also clears the loggers' cached levels.
    quiet.setLevel(logging.CRITICAL)  # a failed connect is reported below
    try:
        info = loader.load_driver(conf, name).describe()
    except Exception as err:   # --version must answer whatever the driver does
        return "%s not available: %s" % (name or "the configured driver",
                                        str(err).splitlines()[0] if str(err) else
                                        type(err).__name__)
    finally:
        quiet.setLevel(level)
    text = "%s %s" % (info.name, info.version)
    if info.name == "libvirt" and "QEMU" not in info.version:
        text += " (its libvirt daemon did not answer; QEMU version unknown)"
    return text


def report(prog, conf=None, driver=None):
    """The ``--version`` text of ``prog``; ``conf``/``driver`` select the driver asked."""
    return "\n".join((
        "%s %s (Python %s)" % (prog, package_version(), platform.python_version()),
        "driver: %s" % _driver(conf, driver),
        "client library: %s" % _client_library(),
    ))


def local_conf():
    """Default options: the driver asks this machine's default libvirt daemon."""
    from oslo_config import cfg

    from migplane import opts

    conf = cfg.ConfigOpts()
    conf(args=[], project="migplane", default_config_files=[])
    opts.register_opts(conf)
    return conf
