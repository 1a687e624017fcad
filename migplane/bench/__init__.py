"""migplane.bench: measure the migration plane on a lab and publish the figures.

``python -m migplane.bench [--quick] [--out DIR] [--rate 100mbit]`` builds a
three-host lab, runs the isolation, efficiency, evacuation and overhead parts
side by side with bare ``virsh migrate``, and writes ``results.json``,
``REPORT.md`` and PNG plots (see :mod:`migplane.bench.main`).
"""
