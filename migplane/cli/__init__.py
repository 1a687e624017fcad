"""The ``migplane`` command: drive migrations through the hosts' agents."""
