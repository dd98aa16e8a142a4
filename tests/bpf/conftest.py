"""Fixtures shared by the BPF program tests."""

from bpf_router import router  # noqa: F401  (the router namespace fixture)
