"""libvirt's keepalive, read from the daemon's configuration: what bounds the
management-plane outage a switch to post-copy survives before libvirt's Finish."""

import logging

from hypothesis import given
from hypothesis import strategies as st

from migplane.core import loader
from migplane.drivers.libvirt import keepalive

settings_values = st.integers(min_value=-1, max_value=10_000)


@given(interval=settings_values, count=settings_values,
       noise=st.lists(st.sampled_from([
           "# keepalive_interval = 99", "listen_tls = 0", "", "   ",
           'log_outputs = "3:file:/var/log/libvirt/libvirtd.log"',
           "#keepalive_count = 1", "keepalive_required = 1"]), max_size=6))
def test_what_a_configuration_sets_is_read_back(interval, count, noise):
    text = "\n".join(noise + ["keepalive_interval = 1", "keepalive_interval=%d" % interval,
                              "  keepalive_count = %d   # why" % count] + noise)
    assert keepalive.parse(text) == keepalive.Keepalive(interval, count)


def test_what_is_not_set_is_libvirts_default():
    assert keepalive.parse("# nothing here\nlisten_tcp = 1\n") == keepalive.Keepalive(5, 5)
    assert keepalive.Keepalive().closes_after_s() == 30
    assert keepalive.Keepalive(5, 24).closes_after_s() == 125
    assert keepalive.Keepalive(-1, 5).closes_after_s() is None
    assert keepalive.Keepalive(0, 5).closes_after_s() is None


def test_the_shorter_end_bounds_the_outage():
    off, short, long = (keepalive.Keepalive(-1), keepalive.Keepalive(),
                        keepalive.Keepalive(5, 24))
    assert keepalive.tolerated_outage_s(short, long) == 30
    assert keepalive.tolerated_outage_s(long, off) == 125
    assert keepalive.tolerated_outage_s(off, off) is None


def test_a_missing_file_is_the_default_and_a_huge_one_is_read_in_part(tmp_path):
    assert keepalive.read(str(tmp_path / "absent.conf")) == keepalive.Keepalive()
    huge = tmp_path / "huge.conf"
    huge.write_text("keepalive_count = 24\n" + "#" * keepalive.MAX_CONF_BYTES
                    + "\nkeepalive_count = 1\n")
    assert keepalive.read(str(huge)) == keepalive.Keepalive(5, 24)


def write_confs(directory, count):
    for name in (keepalive.SERVED, keepalive.OPENED):
        (directory / name).write_text("keepalive_interval = 5\nkeepalive_count = %d\n" % count)


def test_the_warning_names_both_files_and_the_outage(tmp_path):
    write_confs(tmp_path, 5)
    note = keepalive.warning(str(tmp_path))
    assert note and "after about 30 s" in note
    assert str(tmp_path / keepalive.SERVED) in note and str(tmp_path / keepalive.OPENED) in note
    write_confs(tmp_path, 24)
    assert keepalive.warning(str(tmp_path)) is None


def test_the_driver_warns_when_loaded_where_post_copy_may_be_armed(daemons, make_conf,
                                                                   tmp_path, caplog):
    write_confs(tmp_path, 5)
    with caplog.at_level(logging.WARNING, logger="migplane.drivers.libvirt.driver"):
        loader.load_driver(make_conf(daemons[0], strategy="adaptive",
                                     driver_opts={"daemon_config_dir": str(tmp_path)}),
                           "libvirt")
    assert any("after about 30 s" in r.getMessage() for r in caplog.records)
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="migplane.drivers.libvirt.driver"):
        loader.load_driver(make_conf(daemons[0], strategy="adaptive", permit_post_copy=False,
                                     driver_opts={"daemon_config_dir": str(tmp_path)}),
                           "libvirt")
    assert not any("keepalive" in r.getMessage() for r in caplog.records)
