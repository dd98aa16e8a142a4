"""Shared fixtures: every test that needs namespaces gets its own Testbed, torn down always."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from tna.testbed import Testbed


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if os.geteuid() == 0:
        return
    skip = pytest.mark.skip(reason="needs root (namespaces, BPF)")
    for item in items:
        if "tests/bpf" in str(item.fspath) or "tests/netns" in str(item.fspath):
            item.add_marker(skip)


@pytest.fixture
def bed() -> Iterator[Testbed]:
    with Testbed() as tb:
        yield tb
