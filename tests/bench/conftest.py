"""Fixtures of the benchmark tests."""

from __future__ import annotations

import secrets
import subprocess
from collections.abc import Iterator

import pytest


def _namespaces(prefix: str) -> set[str]:
    out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=True)
    return {line.split()[0] for line in out.stdout.splitlines()
            if line.startswith(f"{prefix}-")}


@pytest.fixture
def prefix() -> Iterator[str]:
    """A namespace prefix of this test alone (others may run benchmarks meanwhile)."""
    name = f"tnabt{secrets.token_hex(2)}"
    yield name
    assert not _namespaces(name), "tna bench left namespaces behind"
