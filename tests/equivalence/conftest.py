"""The equivalence suite needs root (namespaces, AF_PACKET sockets, BPF), except its unit tests."""

from __future__ import annotations

import os

import pytest


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if os.geteuid() == 0:
        return
    skip = pytest.mark.skip(reason="needs root (namespaces, AF_PACKET, BPF)")
    for item in items:
        path = str(item.fspath)
        if "tests/equivalence" in path and not path.endswith("test_units.py"):
            item.add_marker(skip)
