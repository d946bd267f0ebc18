"""A pool runner for the population tests: it takes group jobs too, and its worker dies
when a group holds a candidate named ``crash_exit`` (workers unpickle it by reference)."""

from __future__ import annotations

import os

from optforge.evaluators.jobs import GroupJob, run_work


def crashing_group_runner(job):
    programs = job.programs if isinstance(job, GroupJob) else (job.program,)
    if any(p.name == "crash_exit" for p in programs):
        os._exit(3)
    return run_work(job)
