"""`make docker-test`: the Dockerfile's cpu target built and run in a real Docker engine.

In order (module fixtures): a Docker engine (dockerd started here when none answers and this is
root), the local base image (made once, then reused), ``docker build --target cpu``, ``pipeline``
in a container on a bind-mounted runs folder as the image's non-root user, and ``serve`` in a
container. The tests then check, from the host and over 127.0.0.1 only: health (and Docker's own
HEALTHCHECK verdict), tritonclient JSON and binary inference against in-process ONNX Runtime on the
same ONNX file (1e-5), one bad request (400), and ``docker stop`` (exit 0). Every container is
removed, also on failure; the image and the base image stay as the build cache.

Skips, with the reason, only where no Docker engine can be started; under CI (CI=true) that fails.
Measured times and the image size are printed and written to runs/docker-test.json.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import harness
import numpy as np
import pytest
from serve_helpers import free_port

pytestmark = pytest.mark.timeout(1800)

IMAGE = "bninception:cpu-test"
PREFIX = f"bninception-test-{os.getpid()}"
EPOCHS = 10  # enough for the INT8 gate on digits (8 passes with less margin); about a minute on 2 cores
TOLERANCE = 1e-5
PIPELINE_LOG = Path(tempfile.gettempdir()) / "bninception-docker-pipeline.log"
METRICS: dict[str, object] = {}
STARTED = time.monotonic()
CAPTURE: Any = None  # pytest's capture manager, set by the `report` fixture


def say(message: str) -> None:
    """Progress as it happens, past pytest's output capture."""
    with CAPTURE.global_and_fixture_disabled() if CAPTURE is not None else contextlib.nullcontext():
        print(f"docker-test: {message}", file=sys.stderr, flush=True)


@dataclass
class Server:
    container: str
    port: int

    @property
    def url(self) -> str:
        return f"127.0.0.1:{self.port}"


def remove_container(name: str) -> None:
    harness.docker("rm", "-f", name, check=False, timeout=60)


def logs(name: str) -> str:
    result = harness.docker("logs", "--tail", "60", name, check=False, timeout=30)
    return (result.stdout + result.stderr)[-4000:]


def http_get(url: str, timeout: float = 5) -> int:
    """The HTTP status of a GET, 0 when nothing answers."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return exc.code
    except OSError:  # URLError (connection refused, ...) and timeouts
        return 0


@pytest.fixture(scope="module", autouse=True)
def report(pytestconfig: pytest.Config) -> Iterator[None]:
    global CAPTURE
    CAPTURE = pytestconfig.pluginmanager.getplugin("capturemanager")
    yield
    METRICS["total_s"] = round(time.monotonic() - STARTED, 1)
    out = harness.ROOT / "runs" / "docker-test.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(METRICS, indent=2) + "\n")
    say(f"measured: {json.dumps(METRICS)} (also in {out.relative_to(harness.ROOT)})")


@pytest.fixture(scope="module")
def engine() -> None:
    try:
        reason = harness.ensure_engine()
    except harness.HarnessError as exc:
        pytest.fail(str(exc))
    if reason:
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(f"CI must run the Docker test, but: {reason}")
        pytest.skip(f"no Docker engine can be started here: {reason}")
    say("Docker engine " + harness.docker("info", "--format", "{{.ServerVersion}}").stdout.strip())


@pytest.fixture(scope="module")
def base_image(engine: None) -> str:
    seconds = harness.make_base_image()
    METRICS["base_image_s"] = "reused" if seconds is None else round(seconds, 1)
    say(f"base image {harness.BASE_TAG}: " + ("reused" if seconds is None else f"made in {seconds:.0f} s"))
    return harness.BASE_TAG


@pytest.fixture(scope="module")
def image(base_image: str) -> str:
    previous = harness.docker("image", "inspect", "--format", "{{.Id}}", IMAGE, check=False).stdout.strip()
    say(f"building {IMAGE} (--target cpu FROM {base_image}) ...")
    seconds = harness.build_image(IMAGE, base=base_image)
    facts = harness.image_facts(IMAGE)
    METRICS.update(build_s=round(seconds, 1), image_size_gb=round(facts.size / 1e9, 2))
    say(f"built in {seconds:.0f} s, {METRICS['image_size_gb']} GB")
    current = harness.docker("image", "inspect", "--format", "{{.Id}}", IMAGE).stdout.strip()
    if previous and previous != current:  # the last test build's image, now untagged
        harness.docker("image", "rm", previous, check=False)
    return IMAGE


@pytest.fixture(scope="module")
def image_uid(image: str) -> int:
    user = harness.image_facts(image).user
    assert user, "the image sets no USER: its processes would run as root"
    uid = user.split(":")[0]
    assert uid.isdigit(), f"USER {user} is not numeric (runAsNonRoot cannot check a name)"
    return int(uid)


@pytest.fixture(scope="module")
def runs(image: str, image_uid: int) -> Iterator[Path]:
    """A host folder bind-mounted as /runs, with `pipeline` run in it inside a container."""
    folder = Path(tempfile.mkdtemp(prefix="bninception-docker-runs-"))
    if os.geteuid() == 0:
        os.chown(folder, image_uid, image_uid)
    else:
        folder.chmod(0o777)  # the container's user is not ours; cleaned up through a container below
    name = f"{PREFIX}-pipeline"
    try:
        say(f"pipeline --epochs {EPOCHS} in a container, runs folder {folder} ...")
        started = time.monotonic()
        result = subprocess.run(["docker", "run", "--name", name, "--network", "host", "-v", f"{folder}:/runs",
                                 image, "pipeline", "--run-dir", "/runs/demo", "--epochs", str(EPOCHS),
                                 "--batch-sizes", "8", "--json"],
                                capture_output=True, text=True, timeout=1200, env=harness.ENV, check=False)
        METRICS["pipeline_s"] = round(time.monotonic() - started, 1)
        PIPELINE_LOG.write_text(result.stderr)
        say(f"pipeline exited {result.returncode} after {METRICS['pipeline_s']} s (log: {PIPELINE_LOG})")
        if result.returncode != 0:
            pytest.fail(f"pipeline in the container exited {result.returncode}:\n{result.stderr[-4000:]}")
        (folder / "pipeline.json").write_text(result.stdout)
        METRICS["pipeline_stages_s"] = {s["stage"]: s["seconds"] for s in json.loads(result.stdout)["stages"]}
        yield folder
    finally:
        remove_container(name)
        if os.geteuid() != 0:
            harness.docker("run", "--rm", "--network", "none", "-v", f"{folder}:/runs", "--entrypoint", "rm",
                           image, "-rf", "/runs/demo", check=False)
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(scope="module")
def server(image: str, runs: Path) -> Iterator[Server]:
    """`serve` in a container on the pipeline's run (read-only), ready on 127.0.0.1."""
    port = free_port()
    name = f"{PREFIX}-serve"
    try:
        started = time.monotonic()
        harness.docker("run", "-d", "--name", name, "--network", "host", "--health-interval", "2s",
                       "-v", f"{runs}:/runs:ro", image,
                       "serve", "--run-dir=/runs/demo", "--host", "127.0.0.1", "--port", str(port))
        deadline = started + 120
        while http_get(f"http://127.0.0.1:{port}/v2/health/ready", timeout=2) != 200:
            running = harness.docker("inspect", "--format", "{{.State.Running}}", name).stdout.strip()
            if running != "true" or time.monotonic() > deadline:
                pytest.fail(f"serve did not get ready (running: {running}):\n{logs(name)}")
            time.sleep(0.25)
        METRICS["start_to_ready_s"] = round(time.monotonic() - started, 1)
        say(f"serve ready on 127.0.0.1:{port} {METRICS['start_to_ready_s']} s after docker run")
        yield Server(name, port)
    finally:
        remove_container(name)


def reference(runs: Path, x: np.ndarray) -> dict[str, np.ndarray]:
    """In-process ONNX Runtime on the file the server serves (fp32: model.folded.onnx), and its softmax."""
    from bninception.core.runner import OrtRunner
    from bninception.serve.protocol import softmax

    logits = OrtRunner(runs / "demo" / "model.folded.onnx").run(x)
    return {"logits": logits, "probabilities": softmax(logits)}


def infer(server: Server, x: np.ndarray, binary: bool) -> dict[str, np.ndarray]:
    import tritonclient.http as httpclient

    client = httpclient.InferenceServerClient(url=server.url, network_timeout=30)
    meta = client.get_model_metadata("bninception")
    name, outputs = meta["inputs"][0]["name"], [o["name"] for o in meta["outputs"]]
    tensor = httpclient.InferInput(name, list(x.shape), "FP32")
    tensor.set_data_from_numpy(x, binary_data=binary)
    result = client.infer("bninception", [tensor],
                          outputs=[httpclient.InferRequestedOutput(o, binary_data=binary) for o in outputs])
    return {o: result.as_numpy(o) for o in outputs}


def sample(seed: int) -> np.ndarray:
    return np.random.default_rng(seed).normal(0.0, 1.0, size=(5, 1, 32, 32)).astype(np.float32)


def test_image_is_non_root_with_a_readiness_healthcheck(image: str, image_uid: int) -> None:
    facts = harness.image_facts(image)
    assert image_uid != 0
    assert facts.healthcheck.get("Test") == ["CMD", "bninception-healthcheck"], facts.healthcheck
    assert int(facts.healthcheck.get("StartPeriod", 0)) > 0, "no start period: a slow start counts as failures"
    assert facts.entrypoint == ["bninception-entrypoint"]


def test_image_has_one_onnx_runtime_and_no_build_ca(image: str) -> None:
    code = """
import json, os, importlib.metadata as m, onnxruntime as ort
names = ("onnxruntime", "onnxruntime-gpu", "onnxruntime-openvino")
ca = []
for top, dirs, files in os.walk("/"):
    dirs[:] = [d for d in dirs if os.path.join(top, d) not in ("/proc", "/sys", "/dev")]
    ca += [os.path.join(top, f) for f in files if f == "pip-ca.pem"]
print(json.dumps({
    "builds": [n for n in names if any(d.metadata["Name"] == n for d in m.distributions())],
    "providers": ort.get_available_providers(),
    "pip_conf": [p for p in ("/etc/pip.conf", os.path.expanduser("~/.config/pip/pip.conf")) if os.path.exists(p)],
    "ca": ca + [p for p in ("/tmp/local",) if os.path.exists(p)],
    "pip_env": sorted(k for k in os.environ if k.startswith("PIP_")),
}))
"""
    result = harness.docker("run", "--rm", "--network", "none", "--entrypoint", "python", image, "-c", code)
    found = json.loads(result.stdout)
    assert found["builds"] == ["onnxruntime"], found
    assert "CPUExecutionProvider" in found["providers"]
    assert found["ca"] == [] and found["pip_conf"] == [] and found["pip_env"] == [], \
        f"the build's pip CA settings reached the image: {found}"


def test_pipeline_wrote_the_run_as_the_image_user(runs: Path, image_uid: int) -> None:
    summary = json.loads((runs / "pipeline.json").read_text())
    assert summary["passed"] is True, summary
    status = {s["stage"]: s["status"] for s in summary["stages"]}
    assert status.pop("engines") == "skipped" and set(status.values()) == {"done"}, status
    run = runs / "demo"
    for artifact in ("model.pt", "model.folded.onnx", "model.fp16.onnx", "model.int8.onnx", "report.md"):
        assert (run / artifact).is_file(), f"the pipeline wrote no {artifact}"
    owners = {p.stat().st_uid for p in run.rglob("*")} | {run.stat().st_uid}
    assert owners == {image_uid}, f"files in the run are owned by {owners}, not only by uid {image_uid}"


def test_server_is_ready_and_docker_reports_healthy(server: Server) -> None:
    assert http_get(f"http://{server.url}/v2/health/ready") == 200
    deadline = time.monotonic() + 60
    while True:
        health = json.loads(harness.docker("inspect", "--format", "{{json .State.Health}}", server.container).stdout)
        if health["Status"] == "healthy":
            break
        assert time.monotonic() < deadline, f"HEALTHCHECK never passed: {health}"
        time.sleep(1)
    assert "/v2/health/ready: ready" in health["Log"][-1]["Output"]


def test_served_model_is_the_runs_model(server: Server, runs: Path) -> None:
    import onnx
    import tritonclient.http as httpclient

    meta = httpclient.InferenceServerClient(url=server.url).get_model_metadata("bninception")
    model = onnx.load(str(runs / "demo" / "model.folded.onnx"), load_external_data=False)
    source = {p.key: p.value for p in model.metadata_props}["bninception.source_sha256"]
    assert source and meta["parameters"]["source_sha256"] == source, meta["parameters"]
    assert meta["parameters"]["providers"] == ["cpu"]


@pytest.mark.parametrize("binary", [False, True], ids=["json", "binary"])
def test_inference_matches_in_process_onnx_runtime(server: Server, runs: Path, binary: bool) -> None:
    x = sample(seed=int(binary))
    served, expected = infer(server, x, binary), reference(runs, x)
    assert set(served) == set(expected)
    for name, values in expected.items():
        assert served[name].shape == values.shape, name
        np.testing.assert_allclose(served[name], values, rtol=0, atol=TOLERANCE, err_msg=name)
    assert np.ptp(expected["logits"]) > 1e-3, "constant logits: the comparison would prove nothing"


def test_bad_request_answers_400_and_the_server_keeps_serving(server: Server, runs: Path) -> None:
    body = json.dumps({"inputs": [{"name": "data", "shape": [1, 3, 2, 2], "datatype": "FP32",
                                   "data": list(range(12))}]}).encode()
    request = urllib.request.Request(f"http://{server.url}/v2/models/bninception/infer", data=body,
                                     headers={"Content-Type": "application/json"})
    with pytest.raises(urllib.error.HTTPError) as caught:
        urllib.request.urlopen(request, timeout=10)
    assert caught.value.code == 400
    assert "shape" in json.loads(caught.value.read())["error"]
    x = sample(seed=2)
    np.testing.assert_allclose(infer(server, x, binary=True)["logits"], reference(runs, x)["logits"],
                               rtol=0, atol=TOLERANCE)


def test_docker_stop_exits_cleanly(server: Server) -> None:
    """Last: SIGTERM reaches the server (the entrypoint execs it), which drains and exits 0."""
    started = time.monotonic()
    harness.docker("stop", "--time", "30", server.container, timeout=60)
    seconds = time.monotonic() - started
    state = json.loads(harness.docker("inspect", "--format", "{{json .State}}", server.container).stdout)
    METRICS["stop_s"] = round(seconds, 1)
    assert state["ExitCode"] == 0 and not state["OOMKilled"], (state, logs(server.container))
    assert seconds < 25, f"docker stop took {seconds:.0f} s: SIGTERM was ignored and the server was killed"
    assert "Traceback" not in logs(server.container)
