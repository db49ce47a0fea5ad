"""Tests that need several MPI ranks. They run only under an MPI launcher:

    mpirun --allow-run-as-root --oversubscribe -n 2 python -m pytest -q -p no:xdist -p no:cacheprovider test/distributed

(.ci/run does this). In a plain `pytest test/` they are skipped, with the reason and this command in the summary.
"""
import os

import pytest

from tinyjit.distributed import _launcher_size

COMMAND = ("mpirun --allow-run-as-root --oversubscribe -n 2 python -m pytest -q -p no:xdist -p no:cacheprovider "
           "test/distributed")


def pytest_collection_modifyitems(config, items):
    size = _launcher_size()
    if size is not None and size >= 2:
        return
    reason = f"needs 2+ MPI ranks (started with {size or 1}); run: {COMMAND}"
    here = os.path.dirname(os.path.abspath(__file__))
    for item in items:
        if str(item.fspath).startswith(here):
            item.add_marker(pytest.mark.skip(reason=reason))


def pytest_terminal_summary(terminalreporter):
    size = _launcher_size()
    if (size is None or size < 2) and terminalreporter.stats.get("skipped"):
        if any("distributed/" in r.nodeid for r in terminalreporter.stats["skipped"]):
            terminalreporter.write_line(f"test/distributed skipped: not under mpirun; run: {COMMAND}")
