"""Options of the core (migplane.core.opts) and their validation (migplane.core.settings).

Configuration is read from real files (``default_config_files``), as a
deployment reads it.
"""

import ipaddress
import os
import shutil
import socket
import subprocess
import sys
import textwrap

import pytest
from oslo_config import cfg

from migplane.core import exception
from migplane.core import opts
from migplane.core import settings

CORE_MODULES = ("address", "capabilities", "driver", "events", "exception", "flow",
                "inbound", "limiter", "loader", "migrate_data", "opts", "settings", "uri",
                "versioned")


def load(make_conf, text):
    return settings.load(make_conf(text))


# -- registration --------------------------------------------------------------


def test_importing_the_core_registers_nothing_on_the_global_conf():
    script = textwrap.dedent("""
        from oslo_config import cfg
        before = set(cfg.CONF)
        import migplane.core
        %s
        import migplane.drivers.fake.driver
        import migplane.drivers.fake.opts
        import migplane.drivers.fake.world
        print(sorted(set(cfg.CONF) - before))
        print(sorted(cfg.CONF._groups))
    """) % "\n".join(f"import migplane.core.{m}" for m in CORE_MODULES)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         check=True).stdout.splitlines()
    assert out == ["[]", "[]"]


def test_register_opts_registers_on_the_given_conf_only():
    conf = cfg.ConfigOpts()
    opts.register_opts(conf)
    assert "my_live_migration_ip" in conf
    assert opts.GROUP in conf
    assert "max_concurrent" in conf[opts.GROUP]
    assert opts.GROUP not in cfg.CONF
    assert "my_live_migration_ip" not in cfg.CONF


def test_register_opts_is_idempotent(make_conf):
    conf = make_conf("[live_migration]\nbandwidth = 5\n")
    opts.register_opts(conf)
    opts.register_opts(conf)
    assert settings.load(conf).migration.bandwidth_mib == 5


def test_list_opts_returns_the_original_option_objects():
    listed = dict(opts.list_opts())
    assert set(listed) == {"DEFAULT", opts.GROUP}
    assert listed["DEFAULT"] is opts.host_opts
    assert listed[opts.GROUP] is opts.migration_opts
    conf = cfg.ConfigOpts()
    opts.register_opts(conf)
    for group, group_opts in opts.list_opts():
        for opt in group_opts:
            registered = conf._get_opt_info(opt.dest, None if group == "DEFAULT"
                                            else group)["opt"]
            assert registered is opt


def test_every_option_has_help_text():
    for _, group_opts in opts.list_opts():
        for opt in group_opts:
            assert opt.help and len(opt.help.strip()) > 20, opt.dest


def _generator():
    script = os.path.join(os.path.dirname(sys.executable), "oslo-config-generator")
    if os.path.exists(script):
        return [script]
    found = shutil.which("oslo-config-generator")
    return [found] if found else [sys.executable, "-m", "oslo_config.generator"]


def test_oslo_config_generator_prints_the_options_with_help():
    result = subprocess.run(_generator() + ["--namespace", "migplane.core"],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert out.index("[DEFAULT]\n") < out.index("#my_live_migration_ip = <None>") \
        < out.index("\n[live_migration]\n") < out.index("#driver = libvirt")
    for opt in opts.migration_opts:
        assert f"#{opt.dest} = " in out, opt.dest
    assert "dedicated migration network" in out
    assert "Deprecated group/name - [libvirt]/live_migration_inbound_addr" in out
    assert "Deprecated group/name - [DEFAULT]/max_concurrent_live_migrations" in out
    assert "#timeout_action = abort" in out
    assert "Warning: Failed to format" not in out


# -- valid configurations ---------------------------------------------------------


def test_defaults(make_conf):
    s = load(make_conf, None)
    assert s.driver == "libvirt"
    assert s.host.hostname == socket.gethostname()
    assert s.host.my_live_migration_ip is None
    assert s.host.inbound_cidr is None
    assert s.migration == settings.MigrationSettings()
    assert s.concurrency == settings.ConcurrencySettings()


def test_all_options_from_a_file(make_conf):
    s = load(make_conf, """
        [DEFAULT]
        my_live_migration_ip = 198.51.100.12
        [live_migration]
        driver = fake
        hostname = host-b
        inbound_cidr = 198.51.100.0/24
        scheme = tls
        with_native_tls = true
        bandwidth = 300
        downtime = 600
        downtime_steps = 4
        downtime_delay = 10
        completion_timeout = 120
        timeout_action = force_complete
        permit_post_copy = true
        permit_auto_converge = true
        parallel_connections = 4
        max_concurrent = 3
        when_busy = refuse
        busy_timeout = 7
        poll_interval = 0.25
    """)
    assert s.driver == "fake"
    assert s.host == settings.HostSettings(
        hostname="host-b", my_live_migration_ip="198.51.100.12",
        inbound_cidr=ipaddress.ip_network("198.51.100.0/24"))
    assert s.migration == settings.MigrationSettings(
        scheme="tls", native_tls=True, bandwidth_mib=300, downtime_ms=600,
        downtime_steps=4, downtime_delay=10, completion_timeout=120,
        timeout_action="force_complete", permit_post_copy=True, permit_auto_converge=True,
        parallel_connections=4, poll_interval=0.25)
    assert s.concurrency == settings.ConcurrencySettings(max_concurrent=3,
                                                         when_busy="refuse", busy_timeout=7)


@pytest.mark.parametrize("value, expected", [
    ("2001:DB8:2::11", "2001:DB8:2::11"),  # as written: URIs read as configured
    ("0:0:0:0:0:0:0:1", "0:0:0:0:0:0:0:1"),
    ("[2001:db8:2::11]", "2001:db8:2::11"),
    ("fe80::1%mig0", "fe80::1%mig0"),
    ("mig.host-b.example", "mig.host-b.example"),
    ("", None),
])
def test_my_live_migration_ip_forms(make_conf, value, expected):
    s = load(make_conf, f"[DEFAULT]\nmy_live_migration_ip = {value}\n")
    assert s.host.my_live_migration_ip == expected


def test_inbound_cidr_is_not_strict(make_conf):
    s = load(make_conf, "[live_migration]\ninbound_cidr = 198.51.100.7/24\n")
    assert s.host.inbound_cidr == ipaddress.ip_network("198.51.100.0/24")


def test_uri_template_accepted_with_one_placeholder(make_conf):
    s = load(make_conf, "[live_migration]\nuri = qemu+ssh://%s/system\n")
    assert s.migration.uri_template == "qemu+ssh://%s/system"


def test_post_copy_wins_over_auto_converge():
    both = settings.MigrationSettings(permit_post_copy=True, permit_auto_converge=True,
                                      strategy="static")
    assert both.post_copy and not both.auto_converge
    # The adaptive plan arms both and escalates from one to the other.
    assert both.replace(strategy="adaptive").auto_converge
    only = settings.MigrationSettings(permit_auto_converge=True)
    assert only.auto_converge and not only.post_copy


def test_replace_returns_a_validated_copy():
    base = settings.MigrationSettings()
    changed = base.replace(bandwidth_mib=50)
    assert changed.bandwidth_mib == 50 and base.bandwidth_mib == 0
    with pytest.raises(exception.ConfigError, match="bandwidth_mib"):
        base.replace(bandwidth_mib=-1)


# -- invalid configurations fail at load, naming option and value --------------------


@pytest.mark.parametrize("text, group, option, value", [
    ("[DEFAULT]\nmy_live_migration_ip = 300.1.2.3\n", "DEFAULT", "my_live_migration_ip",
     "300.1.2.3"),
    ("[DEFAULT]\nmy_live_migration_ip = host/evil?x\n", "DEFAULT", "my_live_migration_ip",
     "host/evil?x"),
    ("[DEFAULT]\nmy_live_migration_ip = 198.51.100.12:49152\n", "DEFAULT",
     "my_live_migration_ip", "198.51.100.12:49152"),
    ("[DEFAULT]\nmy_live_migration_ip = user@198.51.100.12\n", "DEFAULT",
     "my_live_migration_ip", "user@198.51.100.12"),
    ("[live_migration]\nuri = qemu+ssh://host-b/system\n", "live_migration", "uri",
     "qemu+ssh://host-b/system"),
    ("[live_migration]\nuri = qemu+ssh://%s/%s\n", "live_migration", "uri",
     "qemu+ssh://%s/%s"),
    ("[live_migration]\nbandwidth = -1\n", "live_migration", "bandwidth", "-1"),
    ("[live_migration]\nbandwidth = fast\n", "live_migration", "bandwidth", "fast"),
    ("[live_migration]\ndowntime = 99\n", "live_migration", "downtime", "99"),
    ("[live_migration]\ndowntime_steps = 2\n", "live_migration", "downtime_steps", "2"),
    ("[live_migration]\nparallel_connections = 256\n", "live_migration",
     "parallel_connections", "256"),
    ("[live_migration]\npoll_interval = 0.001\n", "live_migration", "poll_interval",
     "0.001"),
    ("[live_migration]\ntimeout_action = reboot\n", "live_migration", "timeout_action",
     "reboot"),
    ("[live_migration]\nwhen_busy = panic\n", "live_migration", "when_busy", "panic"),
    ("[live_migration]\ntunnelled = maybe\n", "live_migration", "tunnelled", "maybe"),
    ("[live_migration]\nscheme = qemu+tcp://\n", "live_migration", "scheme",
     "qemu+tcp://"),
    ("[live_migration]\ninbound_cidr = 198.51.100.0/33\n", "live_migration",
     "inbound_cidr", "198.51.100.0/33"),
    ("[libvirt]\nlive_migration_inbound_addr = 300.1.2.3\n", "DEFAULT",
     "my_live_migration_ip", "300.1.2.3"),
    ("[DEFAULT]\nmax_concurrent_live_migrations = -2\n", "live_migration",
     "max_concurrent", "-2"),
])
def test_bad_value_fails_at_load_naming_option_and_value(make_conf, text, group, option,
                                                         value):
    conf = make_conf(text)
    with pytest.raises(exception.ConfigError) as info:
        settings.load(conf)
    err = info.value
    assert (err.kwargs["group"], err.kwargs["option"], err.kwargs["value"]) == (
        group, option, value)
    assert f"[{group}] {option}" in str(err)
    assert repr(value) in str(err)


def test_tunnelled_with_native_tls_is_refused(make_conf):
    conf = make_conf("[live_migration]\ntunnelled = true\nwith_native_tls = true\n")
    with pytest.raises(exception.ConflictingOptions) as info:
        settings.load(conf)
    assert "tunnelled" in str(info.value) and "with_native_tls" in str(info.value)


def test_deprecated_tunnelled_with_native_tls_is_refused_too(make_conf):
    conf = make_conf("[libvirt]\nlive_migration_tunnelled = true\n"
                     "live_migration_with_native_tls = true\n")
    with pytest.raises(exception.ConflictingOptions):
        settings.load(conf)


@pytest.mark.parametrize("kwargs, option", [
    ({"scheme": "Bad Scheme"}, "scheme"),
    ({"uri_template": "no placeholder"}, "uri"),
    ({"timeout_action": "reboot"}, "timeout_action"),
    ({"bandwidth_mib": -1}, "bandwidth_mib"),
    ({"completion_timeout": -1}, "completion_timeout"),
    ({"downtime_ms": 99}, "downtime_ms"),
    ({"downtime_steps": 2}, "downtime_steps"),
    ({"downtime_delay": 2}, "downtime_delay"),
    ({"parallel_connections": 0}, "parallel_connections"),
])
def test_migration_settings_validate_when_built_directly(kwargs, option):
    with pytest.raises(exception.ConfigError) as info:
        settings.MigrationSettings(**kwargs)
    assert info.value.kwargs["option"] == option
    assert info.value.kwargs["value"] == list(kwargs.values())[0]


def test_raw_value_unknown_when_oslo_does_not_quote_it():
    assert settings._raw(ValueError("something went wrong")) == "<unparsable>"


# -- Nova's spellings -------------------------------------------------------------------


def test_nova_spellings_are_read_as_deprecated_aliases(make_conf):
    s = load(make_conf, """
        [DEFAULT]
        max_concurrent_live_migrations = 4
        [libvirt]
        live_migration_inbound_addr = 198.51.100.12
        live_migration_scheme = ssh
        live_migration_uri = qemu+ssh://%s/system
        live_migration_tunnelled = true
        live_migration_bandwidth = 250
        live_migration_downtime = 700
        live_migration_downtime_steps = 5
        live_migration_downtime_delay = 30
        live_migration_completion_timeout = 300
        live_migration_timeout_action = force_complete
        live_migration_permit_post_copy = true
        live_migration_permit_auto_converge = true
    """)
    assert s.host.my_live_migration_ip == "198.51.100.12"
    assert s.migration == settings.MigrationSettings(
        scheme="ssh", uri_template="qemu+ssh://%s/system", tunnelled=True,
        bandwidth_mib=250, downtime_ms=700, downtime_steps=5, downtime_delay=30,
        completion_timeout=300, timeout_action="force_complete", permit_post_copy=True,
        permit_auto_converge=True)
    assert s.concurrency.max_concurrent == 4


def test_nova_native_tls_spelling(make_conf):
    s = load(make_conf, "[libvirt]\nlive_migration_with_native_tls = true\n")
    assert s.migration.native_tls


def test_new_spelling_wins_over_the_deprecated_one(make_conf):
    s = load(make_conf, """
        [DEFAULT]
        my_live_migration_ip = 198.51.100.12
        [libvirt]
        live_migration_inbound_addr = 198.51.100.99
        live_migration_bandwidth = 1
        [live_migration]
        bandwidth = 2
    """)
    assert s.host.my_live_migration_ip == "198.51.100.12"
    assert s.migration.bandwidth_mib == 2


NOVA_CONF = """
    [DEFAULT]
    max_concurrent_live_migrations = 3
    [libvirt]
    virt_type = kvm
    live_migration_inbound_addr = 198.51.100.12
    live_migration_uri = qemu+ssh://%s/system
    live_migration_bandwidth = 100
"""


def _register_host_stack_opts(conf):
    """What a host stack (Nova) registers itself, with its own option objects."""
    conf.register_opts([
        cfg.StrOpt("virt_type", default="kvm", choices=("kvm", "qemu")),
        cfg.HostAddressOpt("live_migration_inbound_addr"),
        cfg.StrOpt("live_migration_uri"),
        cfg.IntOpt("live_migration_bandwidth", default=0),
    ], group="libvirt")
    conf.register_opt(cfg.IntOpt("max_concurrent_live_migrations", default=1, min=0))


@pytest.mark.parametrize("host_stack_first", [True, False])
def test_coexists_with_a_host_stack_libvirt_group(make_conf, host_stack_first):
    conf = make_conf(NOVA_CONF)
    if host_stack_first:
        _register_host_stack_opts(conf)
        s = settings.load(conf)
    else:
        s = settings.load(conf)
        _register_host_stack_opts(conf)
    # the host stack reads its own options ...
    assert conf.libvirt.virt_type == "kvm"
    assert conf.libvirt.live_migration_inbound_addr == "198.51.100.12"
    assert conf.libvirt.live_migration_uri == "qemu+ssh://%s/system"
    assert conf.libvirt.live_migration_bandwidth == 100
    assert conf.max_concurrent_live_migrations == 3
    # ... and so do we, through the deprecated aliases
    assert s.host.my_live_migration_ip == "198.51.100.12"
    assert s.migration.uri_template == "qemu+ssh://%s/system"
    assert s.migration.bandwidth_mib == 100
    assert s.concurrency.max_concurrent == 3
    assert settings.load(conf) == s


@pytest.mark.parametrize("hostname", ["host b", "host-b:22", "host-b/system", "-host"])
def test_bad_hostname_fails_at_load(make_conf, hostname):
    conf = make_conf(f"[live_migration]\nhostname = {hostname}\n")
    with pytest.raises(exception.ConfigError) as info:
        settings.load(conf)
    assert info.value.kwargs["option"] == "hostname"
    assert info.value.kwargs["value"] == hostname


def test_migration_address_type():
    kind = opts.MigrationAddress()
    assert kind("[2001:DB8::1]") == "2001:DB8::1"
    assert kind("") is None and kind(None) is None
    with pytest.raises(ValueError, match="not allowed in a host"):
        kind("host/x")
    assert kind == opts.MigrationAddress() and kind != opts.Integer()
    assert hash(kind) == hash(opts.MigrationAddress())
    assert repr(kind) == "MigrationAddress"
    assert kind._formatter("198.51.100.12") == "198.51.100.12"


# -- Nova parity: every [libvirt] live_migration_* option, host names, warnings --------

# Every [libvirt] live_migration_* option of Nova (nova/conf/libvirt.py), with a
# value in a Nova configuration file and what migplane reads from it.
NOVA_LIBVIRT_OPTIONS = {
    "live_migration_scheme": ("ssh", ("migration", "scheme"), "ssh"),
    "live_migration_inbound_addr": ("198.51.100.12", ("host", "my_live_migration_ip"),
                                    "198.51.100.12"),
    "live_migration_uri": ("qemu+ssh://%s/system", ("migration", "uri_template"),
                           "qemu+ssh://%s/system"),
    "live_migration_tunnelled": ("true", ("migration", "tunnelled"), True),
    "live_migration_bandwidth": ("250", ("migration", "bandwidth_mib"), 250),
    "live_migration_downtime": ("700", ("migration", "downtime_ms"), 700),
    "live_migration_downtime_steps": ("5", ("migration", "downtime_steps"), 5),
    "live_migration_downtime_delay": ("30", ("migration", "downtime_delay"), 30),
    "live_migration_completion_timeout": ("300", ("migration", "completion_timeout"), 300),
    "live_migration_parallel_connections": ("4", ("migration", "parallel_connections"), 4),
    "live_migration_timeout_action": ("force_complete", ("migration", "timeout_action"),
                                      "force_complete"),
    "live_migration_permit_post_copy": ("true", ("migration", "permit_post_copy"), True),
    "live_migration_permit_auto_converge": ("true", ("migration", "permit_auto_converge"),
                                            True),
    "live_migration_with_native_tls": ("false", ("migration", "native_tls"), False),
    "live_migration_monitor_interval": ("9", ("migration", "monitor_interval"), 9),
}


def _nova_conf_text():
    lines = ["[DEFAULT]", "host = compute_1", "max_concurrent_live_migrations = 3",
             "[libvirt]", "virt_type = kvm"]
    lines += ["%s = %s" % (name, value) for name, (value, _, _) in
              sorted(NOVA_LIBVIRT_OPTIONS.items())]
    return "\n".join(lines) + "\n"


def _register_nova(conf):
    """Nova's own option objects, as nova.conf registers them (types and defaults)."""
    conf.register_opts([
        cfg.StrOpt("host", default=socket.gethostname()),
        cfg.IntOpt("max_concurrent_live_migrations", default=1, min=0),
    ])
    conf.register_opts([
        cfg.StrOpt("virt_type", default="kvm"),
        cfg.StrOpt("live_migration_scheme"),
        cfg.HostDomainOpt("live_migration_inbound_addr"),
        cfg.StrOpt("live_migration_uri", deprecated_for_removal=True),
        cfg.BoolOpt("live_migration_tunnelled", default=False),
        cfg.IntOpt("live_migration_bandwidth", default=0),
        cfg.IntOpt("live_migration_downtime", default=500, min=100),
        cfg.IntOpt("live_migration_downtime_steps", default=10, min=3),
        cfg.IntOpt("live_migration_downtime_delay", default=75, min=3),
        cfg.IntOpt("live_migration_completion_timeout", default=800, min=0),
        cfg.IntOpt("live_migration_parallel_connections", default=1),
        cfg.StrOpt("live_migration_timeout_action", default="abort",
                   choices=("abort", "force_complete")),
        cfg.BoolOpt("live_migration_permit_post_copy", default=False),
        cfg.BoolOpt("live_migration_permit_auto_converge", default=False),
        cfg.BoolOpt("live_migration_with_native_tls", default=False),
        cfg.IntOpt("live_migration_monitor_interval", default=5),
    ], group="libvirt")


def test_every_nova_live_migration_option_has_an_alias():
    aliased = {name for group, name in opts.nova_aliases().values() if group == "libvirt"}
    assert aliased == set(NOVA_LIBVIRT_OPTIONS)
    assert opts.nova_aliases()[("DEFAULT", "my_live_migration_ip")] == (
        "libvirt", "live_migration_inbound_addr")


def _read(s, where):
    part, field = where
    return getattr(getattr(s, part), field)


@pytest.fixture
def caplog_deprecations(caplog, monkeypatch):
    """caplog, with oslo.log's once-per-process memory of deprecations emptied."""
    try:
        from oslo_log import versionutils
    except ImportError:
        pass
    else:
        monkeypatch.setattr(versionutils, "_deprecated_messages_sent", {})
    caplog.set_level("DEBUG")
    return caplog


def _deprecation_lines(caplog):
    """Deprecation warnings that point at one of our options ("use ... instead")."""
    return [r.getMessage() for r in caplog.records
            if r.name.startswith("oslo_config") and "deprecated" in r.getMessage().lower()
            and ('from group "live_migration"' in r.getMessage()
                 or 'Use option "my_live_migration_ip"' in r.getMessage())]


@pytest.mark.parametrize("tunnel", [False, True])
def test_a_nova_conf_alone_is_read_through_the_aliases(make_conf, tunnel):
    text = _nova_conf_text()
    if not tunnel:
        text = text.replace("live_migration_tunnelled = true", "")
    s = settings.load(make_conf(text))
    for name, (_, where, expected) in NOVA_LIBVIRT_OPTIONS.items():
        if name == "live_migration_tunnelled" and not tunnel:
            expected = False
        assert _read(s, where) == expected, name
    assert s.concurrency.max_concurrent == 3


def test_nova_registered_first_reads_its_options_without_deprecation_warnings(
        make_conf, caplog_deprecations):
    """The host stack registered Nova's [libvirt] options: they are its own, so
    migplane reads them without telling operators to stop using them."""
    caplog = caplog_deprecations
    conf = make_conf(_nova_conf_text())
    _register_nova(conf)
    s = settings.load(conf)
    for name, (_, where, expected) in NOVA_LIBVIRT_OPTIONS.items():
        assert _read(s, where) == expected, name
    assert s.concurrency.max_concurrent == 3
    assert s.host.hostname == "compute_1"  # the stack's [DEFAULT] host
    assert _deprecation_lines(caplog) == []
    # Nova still reads its own options, and loading again is stable
    assert conf.libvirt.live_migration_bandwidth == 250
    assert settings.load(conf) == s


def test_without_nova_registered_the_aliases_do_warn(make_conf, caplog_deprecations):
    """The control: a plain nova.conf read by migplane alone is a deprecated spelling."""
    caplog = caplog_deprecations
    settings.load(make_conf(_nova_conf_text()))
    assert len(_deprecation_lines(caplog)) >= 12
    assert any("live_migration_bandwidth" in line for line in _deprecation_lines(caplog))


def test_our_own_option_wins_over_the_stacks_nova_option(make_conf):
    conf = make_conf("[libvirt]\nlive_migration_bandwidth = 250\n"
                     "[live_migration]\nbandwidth = 7\n")
    _register_nova(conf)
    assert settings.load(conf).migration.bandwidth_mib == 7


def test_the_stacks_nova_option_is_checked_as_strictly_as_ours(make_conf):
    conf = make_conf("[libvirt]\nlive_migration_bandwidth = -5\n")
    _register_nova(conf)
    with pytest.raises(exception.ConfigError) as info:
        settings.load(conf)
    assert info.value.kwargs["group"] == "libvirt"
    assert info.value.kwargs["option"] == "live_migration_bandwidth"
    assert info.value.kwargs["value"] == -5


def test_the_stacks_nova_defaults_leave_ours(make_conf):
    conf = make_conf(None)
    _register_nova(conf)
    s = settings.load(conf)
    assert s.migration == settings.MigrationSettings()
    assert s.host.my_live_migration_ip is None


@pytest.mark.parametrize("name", ["compute_1", "mig_b.example.com", "host-b", "HOST-B"])
def test_host_names_nova_accepts(make_conf, name):
    s = load(make_conf, "[live_migration]\nhostname = %s\n" % name)
    assert s.host.hostname == name


def test_hostname_defaults_to_the_stacks_host_option(make_conf):
    conf = make_conf("[DEFAULT]\nhost = mig_b.example.com\n")
    conf.register_opt(cfg.StrOpt("host"))
    assert settings.load(conf).host.hostname == "mig_b.example.com"


def test_hostname_option_wins_over_the_stacks_host(make_conf):
    conf = make_conf("[DEFAULT]\nhost = compute_1\n[live_migration]\nhostname = host-b\n")
    conf.register_opt(cfg.StrOpt("host"))
    assert settings.load(conf).host.hostname == "host-b"


def test_hostname_falls_back_to_the_system_host_name(make_conf, monkeypatch):
    monkeypatch.setattr(socket, "gethostname", lambda: "sys_host")
    assert load(make_conf, "[DEFAULT]\nhost = ignored\n").host.hostname == "sys_host"


def test_control_plane_option(make_conf):
    assert load(make_conf, "").migration.control_plane == "management"
    s = load(make_conf, "[live_migration]\ncontrol_plane = migration\n")
    assert s.migration.control_plane == "migration"
    with pytest.raises(exception.ConfigError) as info:
        load(make_conf, "[live_migration]\ncontrol_plane = both\n")
    assert info.value.kwargs["option"] == "control_plane"
    with pytest.raises(exception.ConfigError, match="'both'"):
        settings.MigrationSettings(control_plane="both")


def test_an_unrelated_option_under_our_name_is_still_a_conflict(make_conf):
    conf = make_conf(None)
    conf.register_opt(cfg.IntOpt("bandwidth", default=3), group="live_migration")
    with pytest.raises(cfg.DuplicateOptError):
        settings.load(conf)


@pytest.mark.parametrize("nova_first", [True, False])
def test_registration_order_with_nova_is_stable(make_conf, nova_first):
    conf = make_conf(_nova_conf_text())
    if nova_first:
        _register_nova(conf)
    first = settings.load(conf)
    if not nova_first:
        _register_nova(conf)
    again = settings.load(conf)
    assert (again.migration, again.concurrency) == (first.migration, first.concurrency)
    assert again.host.my_live_migration_ip == first.host.my_live_migration_ip
    assert again.host.hostname == "compute_1"  # the stack's [DEFAULT] host, once registered
    assert first.migration.bandwidth_mib == 250
