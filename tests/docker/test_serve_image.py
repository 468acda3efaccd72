"""`make docker-test`: the Dockerfile's serve target run as a cluster runs it.

Builds ``--target serve`` (no torch), then starts BN-Inception 224 in it the way deploy/ does: a
read-only root filesystem with a tmpfs, user 10001, ``--cpus 1``, the model mounted read-only. From the
host, over 127.0.0.1: the time from ``docker run`` to ready, an inference equal to in-process ONNX Runtime,
the intra-op threads sized to the CPU quota (metric and thread count against ``--cpus 2``), no ONNX Runtime
telemetry, a run directory served read-only, and SIGTERM draining within the grace period. Measured sizes,
times, thread counts and perf_analyzer's c4 throughput are written to runs/docker-serve-test.json.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import harness
import numpy as np
import pytest
from serve_helpers import free_port, metric_value

pytestmark = pytest.mark.timeout(1800)

IMAGE = "bninception:serve-test"
PREFIX = f"bninception-serve-test-{os.getpid()}"
MAX_IMAGE_MB = 450
MAX_READY_S = 5.0
GRACE_S = 30  # deploy/'s terminationGracePeriodSeconds is above the server's 15 s drain
METRICS: dict[str, object] = {}
CLUSTER = ("--read-only", "--tmpfs", "/tmp", "--user", "10001:10001")  # as deploy/deployment.yaml runs it


@pytest.fixture(scope="module", autouse=True)
def report() -> Iterator[None]:
    yield
    out = harness.ROOT / "runs" / "docker-serve-test.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(METRICS, indent=2) + "\n")
    print(f"docker-serve-test: measured {json.dumps(METRICS)}", file=sys.stderr)


@pytest.fixture(scope="module")
def image() -> str:
    reason = harness.ensure_engine()
    if reason:
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(f"CI must run the Docker test, but: {reason}")
        pytest.skip(f"no Docker engine can be started here: {reason}")
    harness.make_base_image()
    METRICS["build_s"] = round(harness.build_image(IMAGE, target="serve"), 1)
    METRICS["image_mb"] = round(harness.image_facts(IMAGE).size / 1e6)
    return IMAGE


@pytest.fixture(scope="module")
def models() -> Iterator[Path]:
    """BN-Inception 224 (random weights, ImageNet labels and preprocessing) as ONNX, and a run directory
    whose manifest records the same file, in a folder the containers mount read-only."""
    import onnx
    import torch
    from run_helpers import recorded

    from bninception.core import metadata
    from bninception.core.rundir import RunDir
    from bninception.export.to_onnx import to_model_proto
    from bninception.model.architecture import ModelConfig, build_model
    from bninception.model.data import imagenet_preprocess
    from bninception.model.labels import imagenet_labels

    folder = Path(tempfile.mkdtemp(prefix="bninception-models-"))
    folder.chmod(0o755)
    torch.manual_seed(0)
    model = build_model(ModelConfig()).eval()
    proto = to_model_proto(model, (3, 224, 224))
    labels = imagenet_labels()
    metadata.write(proto, metadata.entries(imagenet_preprocess(224), labels.ids, None, None, labels.names))
    onnx.save(proto, str(folder / "bninception224.onnx"))
    run = RunDir(folder / "run")
    shutil.copy(folder / "bninception224.onnx", run.path("model.folded.onnx"))
    recorded(run, "fold", "model.folded.onnx")
    for path in folder.rglob("*"):
        path.chmod(0o755 if path.is_dir() else 0o644)
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def start(image: str, models: Path, name: str, cpus: str, *args: str) -> tuple[int, float]:
    """``serve`` in a container as a cluster runs it; its port and the seconds from ``docker run`` to ready."""
    port = free_port()
    started = time.monotonic()
    harness.docker("run", "-d", "--name", name, "--network", "host", *CLUSTER, "--cpus", cpus,
                   "-v", f"{models}:/models:ro", image, "serve", "--host", "127.0.0.1", "--port", str(port), *args)
    while True:
        try:
            import urllib.request

            with urllib.request.urlopen(f"http://127.0.0.1:{port}/v2/health/ready", timeout=2):
                return port, time.monotonic() - started
        except OSError:
            state = harness.docker("inspect", "--format", "{{.State.Running}}", name).stdout.strip()
            if state != "true" or time.monotonic() - started > 120:
                pytest.fail(f"{name} did not get ready:\n{harness.docker('logs', name, check=False).stderr[-3000:]}")
            time.sleep(0.05)


def threads_of(name: str) -> int:
    """Threads of the server process (the container's python)."""
    out = harness.docker("exec", name, "sh", "-c", "for p in /proc/[0-9]*; do "
                         "if grep -q bninception $p/cmdline 2>/dev/null; then ls $p/task | wc -l; fi; done").stdout
    return max(int(n) for n in out.split())


def remove(name: str) -> None:
    harness.docker("rm", "-f", name, check=False, timeout=60)


def test_image_is_lean(image: str) -> None:
    assert METRICS["image_mb"] <= MAX_IMAGE_MB, METRICS
    probe = harness.docker("run", "--rm", "--entrypoint", "python3", image, "-c",
                           "import importlib.util as u; print([m for m in ('torch', 'onnx', 'sklearn', 'matplotlib') "
                           "if u.find_spec(m)])").stdout.strip()
    assert probe == "[]"


def test_served_as_a_cluster_runs_it(image: str, models: Path) -> None:
    from bninception.core.runner import OrtRunner

    one, two = f"{PREFIX}-cpus1", f"{PREFIX}-cpus2"
    try:
        port, ready_s = start(image, models, one, "1", "--model", "/models/bninception224.onnx")
        METRICS["ready_s_cpus1"] = round(ready_s, 2)
        assert ready_s <= MAX_READY_S, f"ready {ready_s:.1f} s after docker run"
        assert metric_value("127.0.0.1", port, 'bninception_intra_op_threads{source="quota"}') == 1.0
        x = np.random.default_rng(0).normal(0, 1, (2, 3, 224, 224)).astype(np.float32)
        import tritonclient.http as httpclient

        client = httpclient.InferenceServerClient(url=f"127.0.0.1:{port}", network_timeout=60)
        tensor = httpclient.InferInput("data", list(x.shape), "FP32")
        tensor.set_data_from_numpy(x, binary_data=True)
        served = client.infer("bninception", [tensor]).as_numpy("logits")
        local = OrtRunner(models / "bninception224.onnx", threads=1).run(x)
        assert np.allclose(served, local, atol=1e-4, rtol=1e-4), float(np.abs(served - local).max())
        METRICS["threads_cpus1"] = threads_of(one)
        rows, _ = harness.perf_analyzer(f"127.0.0.1:{port}", "http", "--concurrency-range", "4",
                                        "--measurement-interval", "3000")
        METRICS["c4_infer_per_s_cpus1"] = rows[0].throughput
        logs = harness.docker("logs", one).stderr
        assert "intra-op threads 1 (CPU quota 1" in logs
        assert "telemetry" not in logs.lower(), logs[-2000:]
        found = harness.docker("exec", one, "sh", "-c", "find / -xdev -name deviceid 2>/dev/null; "
                               "find /tmp -name deviceid").stdout.strip()
        assert found == ""
        stopped = time.monotonic()
        harness.docker("stop", "-t", str(GRACE_S), one, timeout=GRACE_S + 30)
        METRICS["sigterm_s"] = round(time.monotonic() - stopped, 1)
        code = harness.docker("inspect", "--format", "{{.State.ExitCode}}", one).stdout.strip()
        assert code == "0" and METRICS["sigterm_s"] < GRACE_S

        port, _ = start(image, models, two, "1", "--model", "/models/bninception224.onnx", "--threads", "2")
        METRICS["threads_cpus1_threads2"] = threads_of(two)  # the host's cores forced on the 1-CPU quota
        rows, _ = harness.perf_analyzer(f"127.0.0.1:{port}", "http", "--concurrency-range", "4",
                                        "--measurement-interval", "3000")
        METRICS["c4_infer_per_s_cpus1_threads2"] = rows[0].throughput
        assert METRICS["threads_cpus1_threads2"] == METRICS["threads_cpus1"] + 1
    finally:
        remove(one)
        remove(two)


def test_a_run_directory_is_served_read_only(image: str, models: Path) -> None:
    name = f"{PREFIX}-run"
    try:
        port, _ = start(image, models, name, "2", "--run", "/models/run")
        assert metric_value("127.0.0.1", port, "bninception_ready") == 1.0
        banner = harness.docker("logs", name).stderr
        assert re.search(r"serving /models/run/model\.folded\.onnx as 'bninception'", banner), banner
    finally:
        remove(name)
