"""The per-host migration agent.

Operators without a cloud stack run one ``migplane-agent`` per host. It
serves that host's driver steps over HTTP on the management plane, so each
host's own configuration (its ``my_live_migration_ip`` above all) is applied
on that host, and it coordinates migrations whose source it is.
"""
