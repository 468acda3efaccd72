"""Threads from the container's CPU quota: cgroup v2 and v1 files, no quota, missing files, the affinity mask."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from bninception.core.cpus import available_cpus, quota_cpus


def cgroup(tmp_path: Path, files: dict[str, str], own: str = "0::/") -> tuple[Path, Path]:
    root = tmp_path / "cgroup"
    root.mkdir(parents=True)
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text + "\n")
    proc = tmp_path / "proc_self_cgroup"
    proc.write_text(own + "\n")
    return root, proc


@pytest.mark.parametrize(("files", "own", "cpus"), [
    ({"cpu.max": "max 100000"}, "0::/", None),  # v2 without a quota
    ({"cpu.max": "150000 100000"}, "0::/", 1.5),  # docker run --cpus 1.5 (a container's namespace)
    ({"kubepods/pod1/cpu.max": "200000 100000", "cpu.max": "max 100000"}, "0::/kubepods/pod1", 2.0),  # host view
    ({"cpu/cpu.cfs_quota_us": "50000", "cpu/cpu.cfs_period_us": "100000"}, "4:cpu,cpuacct:/", 0.5),  # v1
    ({"cpu,cpuacct/cpu.cfs_quota_us": "-1", "cpu,cpuacct/cpu.cfs_period_us": "100000"}, "4:cpu,cpuacct:/", None),
    ({}, "0::/", None),  # no cgroup files at all
    ({"cpu.max": "garbage"}, "0::/", None),
])
def test_quota_from_cgroup_files(tmp_path: Path, files: dict[str, str], own: str, cpus: float | None) -> None:
    root, proc = cgroup(tmp_path, files, own)
    found = quota_cpus(root, proc)
    assert (found[0] if found else None) == cpus


def test_threads_are_the_smaller_of_quota_and_affinity(tmp_path: Path) -> None:
    affinity = len(os.sched_getaffinity(0))
    root, proc = cgroup(tmp_path, {"cpu.max": "50000 100000"})
    half = available_cpus(0, root, proc)
    assert (half.count, half.source) == (1, "quota") and "CPU quota 0.5, cgroup v2" in half.describe()
    root, proc = cgroup(tmp_path / "big", {"cpu.max": f"{(affinity + 8) * 100000} 100000"})
    assert available_cpus(0, root, proc).source in ("default", "affinity")  # a quota above the mask limits nothing
    assert available_cpus(3, root, proc).count == 3  # --threads wins
    none = available_cpus(0, *cgroup(tmp_path / "none", {}))
    assert none.count in (0, affinity) and none.source in ("default", "affinity")


def test_the_server_reports_its_threads(serve_model_path: Path) -> None:
    from serve_helpers import metric_value, start_in_thread

    from bninception.serve.app import create_app

    app = create_app(serve_model_path, threads=1)
    with start_in_thread(app) as server:
        assert metric_value(server.host, server.port, 'bninception_intra_op_threads{source="setting"}') == 1.0
    assert app.state.server.runner.session.get_session_options().intra_op_num_threads == 1




def test_onnxruntime_telemetry_is_off_unless_asked_for(tmp_path: Path, serve_model_path: Path) -> None:
    """ONNX Runtime writes a device id and an event store under ~/.cache when its telemetry is on."""
    import subprocess
    import sys

    script = (f"import bninception.core.runner as r; r.OrtRunner({str(serve_model_path)!r}, name='m')")
    for opt_in, writes in ((None, False), ("0", True)):
        home = tmp_path / f"home-{opt_in}"
        home.mkdir()
        # a bare environment: ONNX Runtime keeps its telemetry off by itself where it sees CI's variables
        env = {"PATH": os.environ.get("PATH", ""), "HOME": str(home), "XDG_CACHE_HOME": str(home / ".cache")}
        if opt_in is not None:
            env["ORT_DISABLE_TELEMETRY"] = opt_in
        subprocess.run([sys.executable, "-c", script], env=env, check=True, timeout=120)
        assert any(home.rglob("deviceid")) == writes, (opt_in, list(home.rglob("*")))
