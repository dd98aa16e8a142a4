"""The deployment files agree with each other: the DaemonSet grants what the systemd units
allow, runs in the host namespace and mounts the host's bpffs."""

from __future__ import annotations

from pathlib import Path

import pytest

CONTRIB = Path(__file__).resolve().parents[2] / "contrib"


def _unit_capabilities(unit: str) -> set[str]:
    for line in (CONTRIB / unit).read_text().splitlines():
        if line.startswith("CapabilityBoundingSet="):
            return {c.removeprefix("CAP_") for c in line.split("=", 1)[1].split()}
    raise AssertionError(f"{unit} has no CapabilityBoundingSet=")


def test_daemonset_matches_the_units() -> None:
    yaml = pytest.importorskip("yaml")
    doc = yaml.safe_load((CONTRIB / "daemonset.yaml").read_text())
    pod = doc["spec"]["template"]["spec"]
    assert doc["kind"] == "DaemonSet" and pod["hostNetwork"] is True
    [container] = pod["containers"]
    caps = container["securityContext"]["capabilities"]
    assert caps["drop"] == ["ALL"]
    assert set(caps["add"]) == _unit_capabilities("tna.service") == \
        _unit_capabilities("tna@.service")
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    volumes = {v["name"]: v.get("hostPath", {}).get("path") for v in pod["volumes"]}
    assert volumes[next(n for n, p in mounts.items() if p == "/sys/fs/bpf")] == "/sys/fs/bpf"


def test_containerfile_runtime_stage_has_no_compiler() -> None:
    text = (CONTRIB / "Containerfile").read_text()
    runtime = text.rsplit("\nFROM ", 1)[1]
    assert "libbpf1" in runtime and "pip install" in runtime
    assert not any(cc in runtime.split() for cc in ("clang", "gcc", "llvm", "libbpf-dev"))
