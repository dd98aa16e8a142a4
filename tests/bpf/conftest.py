"""Fixtures shared by the BPF program tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from testing.bpf_helpers import Router, router_namespace


@pytest.fixture(scope="module")
def router() -> Iterator[Router]:
    """The router namespace of testing.bpf_helpers, built once per test module."""
    with router_namespace() as r:
        yield r
