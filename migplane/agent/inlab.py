"""Moved to :mod:`migplane.lab.agents`: the agent does not depend on the lab.

Kept so that code written against the old path keeps importing; new code
imports ``migplane.lab.agents``.
"""

from migplane.lab.agents import PORT  # noqa: F401
from migplane.lab.agents import LabAgents  # noqa: F401
from migplane.lab.agents import _env  # noqa: F401
from migplane.lab.agents import config_text  # noqa: F401
from migplane.lab.agents import sys  # noqa: F401
