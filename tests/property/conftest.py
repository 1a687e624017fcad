"""Hypothesis profiles: 'ci' is derandomized with no deadline (shared, noisy machines)."""

import os

from hypothesis import HealthCheck
from hypothesis import settings

settings.register_profile(
    "ci", derandomize=True, deadline=None, max_examples=300,
    suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("dev", deadline=None, max_examples=100)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE",
                                     "ci" if os.environ.get("CI") else "dev"))
