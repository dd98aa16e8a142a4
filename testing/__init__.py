"""Test code of TNA: the one place for what several test modules share; never installed.

Not part of the ``tna`` package (no user command needs it): the tests import it from the
repository root (pytest's ``pythonpath`` in pyproject.toml), and test modules never import
from each other.

- :mod:`testing.bpf_helpers`: the router namespace, frames and counted runs of tests/bpf;
- :mod:`testing.equivalence`: the TNA-on/off equivalence harness of tests/equivalence.
"""
