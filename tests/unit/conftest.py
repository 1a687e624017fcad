"""Shared fixtures of the unit tests: a simulated world and fake drivers in it.

The world has three hosts, each on a management plane and a migration plane:

=========  ============  ================  ===============
host       management    migration (v4)    migration (v6)
=========  ============  ================  ===============
host-a     192.0.2.11    198.51.100.11     2001:db8:1::11
host-b     192.0.2.12    198.51.100.12     2001:db8:2::11
host-c     192.0.2.13    198.51.100.13     2001:db8:3::11
=========  ============  ================  ===============

Drivers are loaded like production does it: a ``ConfigOpts`` per host (from a
real configuration file when a test gives one) and
``migplane.core.loader.load_driver(conf, 'fake')``. Every test gets a fresh
world; time in it only moves when a flow sleeps on ``world.clock``.
"""

import textwrap

import pytest
from oslo_config import cfg

from migplane import testing as testing_mod
from migplane.agent import client as client_mod
from migplane.agent import opts as agent_opts
from migplane.agent import testing
from migplane.core import flow
from migplane.core import loader
from migplane.core import opts as core_opts
from migplane.drivers.fake import opts as fake_opts
from migplane.drivers.fake import world as world_mod

WORLD = "unit-tests"

HOSTS = {
    "host-a": {"mgmt": "192.0.2.11", "mig4": "198.51.100.11", "mig6": "2001:db8:1::11"},
    "host-b": {"mgmt": "192.0.2.12", "mig4": "198.51.100.12", "mig6": "2001:db8:2::11"},
    "host-c": {"mgmt": "192.0.2.13", "mig4": "198.51.100.13", "mig6": "2001:db8:3::11"},
}

_DEFAULT_OPTS = {opt.dest for opt in core_opts.host_opts}


@pytest.fixture
def world():
    """A fresh simulated world with host-a, host-b and host-c; reset afterwards."""
    world_mod.reset_world(WORLD)
    w = world_mod.get_world(WORLD)
    for name, addrs in HOSTS.items():
        w.add_host(name, mgmt=addrs["mgmt"], mig=[addrs["mig4"], addrs["mig6"]])
    yield w
    world_mod.reset_world(WORLD)
    flow._split.clear()  # guests a test found running twice
    # and the migrations a failed test left running in this process, so that the
    # next test is not refused as a second migration of the same guest
    flow._running.clear()


@pytest.fixture
def write_config(tmp_path):
    """Write an ini text into a file under tmp_path; return its path."""
    counter = iter(range(1000))

    def write(text, name=None):
        path = tmp_path / (name or f"migplane-{next(counter)}.conf")
        path.write_text(textwrap.dedent(text))
        return str(path)

    return write


@pytest.fixture
def make_conf(write_config):
    """A parsed ``ConfigOpts`` from an optional config file text, nothing registered."""

    def make(text=None):
        conf = cfg.ConfigOpts()
        files = [write_config(text)] if text is not None else []
        conf(args=[], project="migplane", default_config_files=files)
        return conf

    return make


@pytest.fixture
def host_conf(world, write_config):
    """The ``ConfigOpts`` of one fake host: hostname, fake world, plus overrides.

    Keyword overrides go to ``[DEFAULT]`` for ``my_live_migration_ip`` and to
    ``[live_migration]`` otherwise. ``strategy`` defaults to ``static`` here:
    most tests check the flow's steps, faults and Nova's timing, which the
    adaptive strategy (measuring, escalating) would change; the tests of the
    adaptive strategy ask for it.
    """

    def make(host, config=None, **overrides):
        if config is None or "strategy" not in config:
            overrides.setdefault("strategy", "static")
        files = [write_config(config)] if config is not None else []
        conf = testing_mod.host_conf(host, config_files=files)
        conf.set_override("world", world.name, group=fake_opts.GROUP)
        for name, value in overrides.items():
            group = None if name in _DEFAULT_OPTS else core_opts.GROUP
            conf.set_override(name, value, group=group)
        return conf

    return make


@pytest.fixture
def make_driver(host_conf):
    """Load the ``fake`` driver for ``host`` through the stevedore loader."""

    def make(host, config=None, **overrides):
        return loader.load_driver(host_conf(host, config, **overrides), "fake")

    return make


@pytest.fixture
def drivers(make_driver):
    """Source host-a (defaults) and destination host-b with my_live_migration_ip set."""
    return (make_driver("host-a"),
            make_driver("host-b", my_live_migration_ip=HOSTS["host-b"]["mig4"]))


@pytest.fixture
def make_migration(world):
    """A LiveMigration on the world's simulated clock, recording its events."""

    def make(source, destination, instance="vm1", settings=None, **kwargs):
        migration = flow.LiveMigration(
            instance, source, destination, settings or source.settings.migration,
            clock=world.clock.now, sleep=world.clock.sleep, **kwargs)
        migration.events = []
        migration.subscribe(migration.events.append)
        return migration

    return make


@pytest.fixture
def assert_rolled_back(world):
    """Check the guest runs on ``source`` only and nothing of it is left on ``dest``."""

    def check(instance="vm1", source="host-a", dest="host-b", boot_id=None):
        assert world.where(instance) == [source]
        assert world.defined_on(instance) == [source]
        guest = world.hosts[source].guests[instance]
        assert guest.state == "running"
        if boot_id is not None:
            assert guest.boot_id == boot_id
        assert instance not in world.hosts[dest].prepared
        assert instance not in world.hosts[dest].disks
        assert instance not in world.transfers

    return check


# -- agents on 127.0.0.1 driving fake-world hosts (tests/unit/agent, tests/unit/cli) --

AGENT_TOKEN = testing.TOKEN


@pytest.fixture(autouse=True)
def _state_dir_default(tmp_path, monkeypatch):
    """Agents a test starts without a state_dir keep their state under tmp_path,
    never in the default /var/lib/migplane of the machine running the tests."""
    option = next(o for o in agent_opts.agent_opts if o.dest == "state_dir")
    monkeypatch.setattr(option, "default", str(tmp_path / "var-lib-migplane"))


@pytest.fixture(scope="session")
def pki(tmp_path_factory):
    """A throw-away CA issuing each fake host's agent certificate (SAN: name, 127.0.0.1)."""
    return testing.TestPKI(tmp_path_factory.mktemp("pki"))


@pytest.fixture
def start_agent(world, host_conf, pki, monkeypatch, tmp_path):
    """Start an agent for fake host ``host`` with its own certificate; stopped after
    the test. Every agent the test starts is a peer of every other, and clients
    (AgentClient, the CLI) trust the test CA through REQUESTS_CA_BUNDLE."""
    running = []
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", pki.ca_file)

    def start(host, tokens=(AGENT_TOKEN,), agent_options=None, pace=True, peers=True, port=0,
              **overrides):
        overrides.setdefault("driver", "fake")
        conf = host_conf(host, **overrides)
        agent_opts.register_opts(conf)
        conf.set_override("auth_tokens", list(tokens), group=agent_opts.GROUP)
        # each agent its own state directory (never the default /var/lib/migplane)
        state = tmp_path / ("state-%s-%d" % (host, len(running)))
        options = dict(pki.options(host), state_dir=str(state))
        options.update(agent_options or {})
        for name, value in options.items():
            conf.set_override(name, value, group=agent_opts.GROUP)
        if peers:  # the agents already serving, known from the start (as from a config)
            known = {other.agent.hostname: other.url for other in running
                     if not other.stopped and other.agent.hostname != host}
            if known:
                conf.set_override("peers", known, group=agent_opts.GROUP)
        local = testing.LocalAgent(conf, facts=testing.WorldFacts(world, host), port=port)
        if pace:
            local.agent.sleep = testing.paced(world)
        local.start()
        running.append(local)
        if peers:
            testing.introduce(running)
        return local

    yield start
    for local in running:
        local.stop()


@pytest.fixture
def pair(world, start_agent):
    """Agents of host-a (source) and host-b (destination, my_live_migration_ip set)."""
    world.add_guest("host-a", "vm1", memory_mib=256, dirty_mib_s=5)
    a = start_agent("host-a")
    b = start_agent("host-b", my_live_migration_ip=HOSTS["host-b"]["mig4"])
    return a, b


@pytest.fixture
def client():
    def make(local, token=AGENT_TOKEN):
        return client_mod.AgentClient(local.url, token, timeout=30)
    return make
