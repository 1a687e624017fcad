"""``pip install migplane`` without extras: the core, the fake driver, the loader.

Builds migplane's wheel, installs it with ``--no-deps`` into a fresh virtualenv
(no system site-packages) next to stevedore and oslo.config only (pip's cache
is warm), and runs a fake migration there, as an embedding stack would. Also
checks what a wheel must carry: the guest sources (``migplane demo``),
the dashboard's page and ``py.typed``.
"""

import json
import os
import subprocess
import sys
import textwrap
import venv
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[3]

EMBED = textwrap.dedent('''
    import importlib.util, json, sys
    from oslo_config import cfg
    from migplane import opts as migplane_opts
    from migplane.core import flow, loader
    from migplane.drivers.fake import world as fake_world

    world = fake_world.get_world("lean")
    world.add_host("host-a", mgmt="192.0.2.11", mig="198.51.100.11")
    world.add_host("host-b", mgmt="192.0.2.12", mig="198.51.100.12")
    world.add_guest("host-a", "vm1", memory_mib=64)

    def driver_for(host, inbound=None):
        conf = cfg.ConfigOpts()
        conf(args=[], default_config_files=[])
        migplane_opts.register_opts(conf)
        conf.set_override("hostname", host, "live_migration")
        conf.set_override("world", "lean", "driver_fake")
        if inbound:
            conf.set_override("my_live_migration_ip", inbound)
        return loader.load_driver(conf, "fake")

    src, dst = driver_for("host-a"), driver_for("host-b", "198.51.100.12")
    result = flow.LiveMigration("vm1", src, dst, src.settings.migration,
                                clock=world.clock.now, sleep=world.clock.sleep).run()
    # (requests is absent from the list: oslo.config itself depends on it)
    absent = [m for m in ("libvirt", "flask", "jsonschema", "pyroute2", "cheroot",
                          "oslo_log", "matplotlib", "fixtures", "pytest")
              if importlib.util.find_spec(m) is not None]
    print(json.dumps({"status": result.status, "data_uri": result.uris.data_uri,
                      "where": world.where("vm1"), "unexpected": absent,
                      "drivers": loader.installed_drivers(), "prefix": sys.prefix}))
''')


@pytest.fixture(scope="module")
def wheel(tmp_path_factory):
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w",
                    str(out), str(REPO)], check=True, timeout=600, capture_output=True)
    (found,) = out.glob("migplane-*.whl")
    return found


def test_the_wheel_carries_the_guest_sources_and_py_typed(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    for name in ("kernel.c", "boot.S", "linker.ld"):
        assert "migplane/lab/guest_src/%s" % name in names
    assert "migplane/py.typed" in names
    for name in ("page.html", "page.js"):   # migplane dashboard's page
        assert "migplane/cli/dashboard/%s" % name in names
    requires = [line for line in zipfile.ZipFile(wheel).read(
        next(n for n in names if n.endswith("METADATA"))).decode().splitlines()
        if line.startswith("Requires-Dist:") and "extra ==" not in line]
    assert sorted(r.split()[1].split(">")[0] for r in requires) == [
        "oslo.config", "pbr", "stevedore"]


def test_core_only_install_runs_a_fake_migration(wheel, tmp_path):
    env_dir = tmp_path / "venv"
    venv.EnvBuilder(with_pip=True, system_site_packages=False).create(env_dir)
    py = str(env_dir / "bin" / "python")
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    pip = [py, "-m", "pip", "install", "-q", "--disable-pip-version-check"]
    subprocess.run(pip + ["--no-deps", str(wheel)], check=True, env=env, timeout=600,
                   capture_output=True)
    subprocess.run(pip + ["stevedore", "oslo.config", "pbr"], check=True, env=env,
                   timeout=600, capture_output=True)
    done = subprocess.run([py, "-c", EMBED], capture_output=True, text=True, env=env,
                          cwd=str(tmp_path), timeout=300)
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout.splitlines()[-1])
    assert out["prefix"] == str(env_dir)
    assert out["unexpected"] == []  # no extra came along
    assert out["status"] == "completed" and out["where"] == ["host-b"]
    assert out["data_uri"] == "tcp://198.51.100.12"
    assert {"fake", "libvirt"} <= set(out["drivers"])
    # the scripts come along without what they import: one line naming the extra
    for script in ("migplane", "migplane-agent"):
        ran = subprocess.run([str(env_dir / "bin" / script), "--help"], capture_output=True,
                             text=True, env=env, cwd=str(tmp_path), timeout=120)
        assert ran.returncode == 2, (script, ran.stdout, ran.stderr)
        assert ran.stderr.count("\n") == 1 and "Traceback" not in ran.stderr, ran.stderr
        assert "pip install 'migplane[agent]'" in ran.stderr, ran.stderr
