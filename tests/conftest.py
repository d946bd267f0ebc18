"""Test-wide settings.

Under CI (``CI`` set, as `.ci/run` runs) Hypothesis is derandomized: every property test
draws the same examples on every run, so CI's verdict depends only on the code. Locally the
draws stay random and explore more; a failure found that way is reproducible with the seed
Hypothesis prints, and belongs in the test as an ``@example``.
"""

import os

from hypothesis import settings

settings.register_profile("ci", derandomize=True, database=None)
if os.environ.get("CI"):
    settings.load_profile("ci")
