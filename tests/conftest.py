"""Shared fixtures and the one root gate.

Root gate: a test that needs root (namespaces, BPF, AF_PACKET) carries the ``root`` marker,
declared in pyproject.toml; the module-level ``pytestmark = pytest.mark.root`` of each such
module is the only mechanism.  Without root, exactly the marked tests are skipped here.

Every test that needs namespaces gets its own Testbed, torn down always.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from tna.testbed import Testbed


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if os.geteuid() == 0:
        return
    skip = pytest.mark.skip(reason="needs root (namespaces, BPF, AF_PACKET)")
    for item in items:
        if item.get_closest_marker("root") is not None:
            item.add_marker(skip)


@pytest.fixture
def bed() -> Iterator[Testbed]:
    with Testbed() as tb:
        yield tb
