#!/usr/bin/env python3
"""The host side of `make docker-test`: a Docker engine, a local base image, the cpu image.

No registry image can be pulled on the machines this project is tested on, and containers reach
the package registries only through this host's TLS settings, so the harness:

* starts ``dockerd --bridge=none --iptables=false`` when no engine answers (root only); every
  container then runs with ``--network host`` and is reached on 127.0.0.1;
* makes the base image once per engine (``debootstrap --variant=minbase`` from the Debian mirror
  apt uses here, then ``docker import``) and reuses it while its tag exists;
* fills docker/local/ with the host's pip CA bundle and torch CPU wheel (pip's ``cert`` and
  ``find-links`` settings) for the build, and empties it afterwards.

Also a command line, for doing the same steps by hand:

    python docker/harness.py engine        # start dockerd if none answers
    python docker/harness.py base-image    # make bninception-base:bookworm unless it exists
    python docker/harness.py build         # build the cpu target as bninception:cpu
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
LOCAL = ROOT / "docker" / "local"
SUITE = "bookworm"  # Debian 12: its python3 is 3.11, the CPython of the torch wheel handed over
BASE_TAG = f"bninception-base:{SUITE}"
DEFAULT_MIRROR = "http://deb.debian.org/debian"
DOCKERD_LOG = Path(tempfile.gettempdir()) / "bninception-dockerd.log"
ENV = {**os.environ, "DOCKER_BUILDKIT": "0"}  # Debian's docker.io has no buildx: the classic builder


PERF_ANALYZER = "2.60.0"
PERF_ANALYZER_TAG = f"bninception-perf-analyzer:{PERF_ANALYZER}"
TRIXIE_TAG = "bninception-base:trixie"  # glibc 2.41: perf_analyzer's wheel needs 2.38


class HarnessError(RuntimeError):
    """A step failed; the message says which and why."""


def docker(*args: str, timeout: float = 120, check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run the docker CLI; on failure (with ``check``) raise with its stderr."""
    result = subprocess.run(["docker", *args], capture_output=True, text=True, timeout=timeout, env=ENV,
                            check=False)
    if check and result.returncode != 0:
        raise HarnessError(f"docker {' '.join(args[:3])} ... exited {result.returncode}: "
                           f"{(result.stderr or result.stdout).strip()[-3000:]}")
    return result


def engine_answers() -> bool:
    if shutil.which("docker") is None:
        return False
    try:
        return docker("info", "--format", "{{.ServerVersion}}", timeout=20, check=False).returncode == 0
    except subprocess.TimeoutExpired:
        return False


def ensure_engine(wait_s: float = 90) -> str | None:
    """None once an engine answers (started here if needed), else why none can be started."""
    if engine_answers():
        return None
    if shutil.which("docker") is None:
        return "no docker command (apt-get install docker.io)"
    dockerd = shutil.which("dockerd")
    if dockerd is None:
        return "no Docker engine answers and dockerd is not installed (apt-get install docker.io)"
    if os.geteuid() != 0:
        return "no Docker engine answers, and starting dockerd needs root"
    with DOCKERD_LOG.open("ab") as log:
        process = subprocess.Popen([dockerd, "--bridge=none", "--iptables=false"], stdout=log,
                                   stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline:
        if engine_answers():
            return None
        if process.poll() is not None:
            break
        time.sleep(1)
    tail = DOCKERD_LOG.read_text(errors="replace")[-2000:]
    raise HarnessError(f"dockerd (pid {process.pid}) did not answer within {wait_s:.0f} s; {DOCKERD_LOG}:\n{tail}")


def image_exists(tag: str) -> bool:
    return docker("image", "inspect", tag, check=False, timeout=30).returncode == 0


# ----------------------------------------------------------------------------------------------
# base image


def _deb822_entries(path: Path) -> list[tuple[str, list[str], list[str]]]:
    """The enabled ``deb`` entries of one deb822 ``*.sources`` file."""
    entries = []
    for stanza in re.split(r"\n\s*\n", path.read_text()):
        fields: dict[str, str] = {}
        for line in stanza.splitlines():
            if not line.startswith("#") and ":" in line:
                key, _, value = line.partition(":")
                fields[key.strip().lower()] = value.strip()
        if "deb" in fields.get("types", "").split() and fields.get("enabled", "yes").lower() != "no":
            entries += [(uri, fields.get("suites", "").split(), fields.get("components", "").split())
                        for uri in fields.get("uris", "").split()]
    return entries


def _one_line_entries(path: Path) -> list[tuple[str, list[str], list[str]]]:
    """The ``deb`` lines of one ``sources.list`` file (options in brackets dropped)."""
    entries = []
    for line in path.read_text().splitlines():
        words = re.sub(r"\[[^]]*\]", " ", line.split("#", 1)[0]).split()
        if len(words) >= 3 and words[0] == "deb":
            entries.append((words[1], [words[2]], words[3:]))
    return entries


def apt_entries(etc_apt: Path = Path("/etc/apt")) -> list[tuple[str, list[str], list[str]]]:
    """(URI, suites, components) of the host's apt sources: deb822 *.sources and one-line *.list."""
    entries: list[tuple[str, list[str], list[str]]] = []
    for path in sorted(etc_apt.glob("sources.list.d/*.sources")):
        entries += _deb822_entries(path)
    for path in [etc_apt / "sources.list", *sorted(etc_apt.glob("sources.list.d/*.list"))]:
        if path.is_file():
            entries += _one_line_entries(path)
    return entries


def image_sources(suite: str = SUITE, etc_apt: Path = Path("/etc/apt")) -> tuple[str, list[str]]:
    """(debootstrap mirror, sources.list lines) for ``suite`` from the host's apt sources.

    The host's entries for ``suite``, ``suite-updates`` and ``suite-security`` when it has them
    (a Debian host of that release), else Debian's own mirror. BNINCEPTION_DEBIAN_MIRROR overrides.
    """
    override = os.environ.get("BNINCEPTION_DEBIAN_MIRROR")
    if override:
        return override, [f"deb {override} {suite} main"]
    lines, mirror = [], None
    for uri, suites, components in apt_entries(etc_apt):
        for name in suites:
            if name in (suite, f"{suite}-updates", f"{suite}-security"):
                lines.append(f"deb {uri} {name} {' '.join(components) or 'main'}")
                if name == suite and mirror is None:
                    mirror = uri
    if mirror is None:
        return DEFAULT_MIRROR, [f"deb {DEFAULT_MIRROR} {suite} main", f"deb {DEFAULT_MIRROR} {suite}-updates main"]
    return mirror, list(dict.fromkeys(lines))


def make_base_image(tag: str = BASE_TAG, suite: str = SUITE, force: bool = False) -> float | None:
    """Make ``tag`` from debootstrap; seconds taken, or None when it already existed."""
    if image_exists(tag) and not force:
        return None
    if os.geteuid() != 0:
        raise HarnessError(f"making the base image {tag} needs root (debootstrap)")
    if shutil.which("debootstrap") is None:
        raise HarnessError("debootstrap is not installed (apt-get install debootstrap)")
    mirror, lines = image_sources(suite)
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="bninception-rootfs-", dir="/var/tmp") as tmp:
        rootfs = Path(tmp) / "rootfs"
        result = subprocess.run(["debootstrap", "--variant=minbase", suite, str(rootfs), mirror],
                                capture_output=True, text=True, timeout=900, check=False)
        if result.returncode != 0:
            raise HarnessError(f"debootstrap {suite} from {mirror} failed:\n{(result.stderr or result.stdout)[-3000:]}")
        (rootfs / "etc/apt/sources.list").write_text("\n".join(lines) + "\n")
        leftovers = [*(rootfs / "var/cache/apt/archives").glob("*.deb"), *(rootfs / "var/lib/apt/lists").glob("*_*")]
        for leftover in leftovers:  # the image's apt-get update fetches fresh lists
            leftover.unlink()
        tar = subprocess.Popen(["tar", "-C", str(rootfs), "--numeric-owner", "-c", "."], stdout=subprocess.PIPE)
        imported = subprocess.run(["docker", "import", "--change", 'CMD ["/bin/bash"]',
                                   "--message", f"debootstrap --variant=minbase {suite} {mirror}", "-", tag],
                                  stdin=tar.stdout, capture_output=True, text=True, timeout=600, env=ENV, check=False)
        assert tar.stdout is not None
        tar.stdout.close()
        if tar.wait() != 0 or imported.returncode != 0:
            raise HarnessError(f"importing {rootfs} as {tag} failed: {imported.stderr.strip()[-2000:]}")
    return time.monotonic() - started


# ----------------------------------------------------------------------------------------------
# build inputs (docker/local) and the image


def perf_analyzer_image(force: bool = False) -> str:
    """Triton's perf_analyzer in a trixie image (docker/perf_analyzer.Dockerfile), built once."""
    if image_exists(PERF_ANALYZER_TAG) and not force:
        return PERF_ANALYZER_TAG
    make_base_image(TRIXIE_TAG, suite="trixie")
    with tempfile.TemporaryDirectory(prefix="bninception-pa-") as tmp:
        context = Path(tmp)
        shutil.copy(ROOT / "docker" / "perf_analyzer.Dockerfile", context / "Dockerfile")
        cert = pip_settings().get("cert")
        (context / "ca.crt").write_bytes(Path(cert).read_bytes() if cert and Path(cert).is_file() else b"")
        docker("build", "--network", "host", "-q", "--build-arg", f"PERF_ANALYZER={PERF_ANALYZER}",
               "--build-arg", f"BASE_IMAGE={TRIXIE_TAG}", "-t", PERF_ANALYZER_TAG, str(context), timeout=900)
    return PERF_ANALYZER_TAG


@dataclass(frozen=True)
class PerfRow:
    """One line of perf_analyzer's summary: concurrency, inferences per second, average latency."""

    concurrency: int
    throughput: float
    latency_us: float


def perf_analyzer(url: str, protocol: str, *args: str, model: str = "bninception",
                  timeout: float = 300) -> tuple[list[PerfRow], str]:
    """Run perf_analyzer (``--network host --ipc host``: 127.0.0.1 and the host's /dev/shm) against
    ``url``; its summary rows and its whole output. A non-zero exit is a HarnessError with the output."""
    result = docker("run", "--rm", "--network", "host", "--ipc", "host", PERF_ANALYZER_TAG, "perf_analyzer",
                    "-m", model, "-u", url, "-i", protocol, *args, timeout=timeout, check=False)
    output = result.stdout + result.stderr
    rows = [PerfRow(int(m[1]), float(m[2]), float(m[3])) for m in re.finditer(
        r"^Concurrency: (\d+), throughput: ([\d.]+) infer/sec, latency (\d+) usec", output, re.MULTILINE)]
    if result.returncode != 0 or not rows:
        raise HarnessError(f"perf_analyzer -i {protocol} {' '.join(args)} failed ({result.returncode}):\n"
                           f"{output[-3000:]}")
    return rows, output


def pip_settings() -> dict[str, str]:
    """pip's effective ``cert`` and ``find-links`` on this host (environment over config files)."""
    out = subprocess.run([sys.executable, "-m", "pip", "config", "list"], capture_output=True, text=True,
                         timeout=60, check=False).stdout
    settings: dict[str, str] = {}
    for line in out.splitlines():
        key, _, value = line.partition("=")
        name = key.rsplit(".", 1)[-1]
        if name in ("cert", "find-links") and value:
            settings.setdefault(name, value.strip().strip("'\""))
    for name, variable in (("cert", "PIP_CERT"), ("find-links", "PIP_FIND_LINKS")):
        if os.environ.get(variable):
            settings[name] = os.environ[variable]
    return settings


def find_torch_wheel(find_links: str, version: str, python_tag: str = "cp311") -> Path | None:
    """A torch ``version`` CPU wheel for ``python_tag`` in pip's find-links folders, if any."""
    for folder in find_links.split():
        folder = folder.removeprefix("file://")
        for wheel in sorted(Path(folder).glob(f"torch-{version}*-{python_tag}-{python_tag}-*linux*x86_64.whl")):
            if "+cpu" in wheel.name or "%2Bcpu" in wheel.name:
                return wheel
    return None


def dockerfile_arg(name: str, dockerfile: Path = ROOT / "Dockerfile") -> str:
    """The first default of ``ARG name=...`` in the Dockerfile."""
    match = re.search(rf"^ARG {re.escape(name)}=(\S+)$", dockerfile.read_text(), re.MULTILINE)
    if not match:
        raise HarnessError(f"the Dockerfile has no ARG {name}=...")
    return match.group(1)


@contextlib.contextmanager
def build_inputs() -> Iterator[dict[str, str]]:
    """Fill docker/local with the host's pip CA bundle and torch wheel; empty it on the way out."""
    settings = pip_settings()
    staged: list[Path] = []
    found: dict[str, str] = {}
    try:
        cert = settings.get("cert")
        if cert and Path(cert).is_file():
            target = LOCAL / "pip-ca.pem"
            shutil.copyfile(cert, target)
            staged.append(target)
            found["cert"] = cert
        wheel = find_torch_wheel(settings.get("find-links", ""), dockerfile_arg("TORCH_VERSION"))
        if wheel is not None:
            folder = LOCAL / "wheels"
            folder.mkdir(exist_ok=True)
            staged.append(folder)
            target = folder / wheel.name
            try:
                os.link(wheel, target)
            except OSError:
                shutil.copyfile(wheel, target)
            found["torch_wheel"] = str(wheel)
        yield found
    finally:
        for path in staged:
            if path.is_dir():
                shutil.rmtree(path, ignore_errors=True)
            else:
                path.unlink(missing_ok=True)


def build_image(tag: str, base: str = BASE_TAG, target: str = "cpu", log: Path | None = None) -> float:
    """``docker build --target target`` with the build inputs staged; seconds taken."""
    log = log or Path(tempfile.gettempdir()) / f"bninception-build-{target}.log"
    started = time.monotonic()
    with build_inputs(), log.open("w") as out:
        result = subprocess.run(["docker", "build", "--force-rm", "--network", "host", "--target", target,
                                 "--build-arg", f"BASE_IMAGE={base}", "-t", tag, str(ROOT)],
                                stdout=out, stderr=subprocess.STDOUT, timeout=1800, env=ENV, check=False)
    if result.returncode != 0:
        raise HarnessError(f"docker build --target {target} failed (exit {result.returncode}); {log}:\n"
                           f"{log.read_text(errors='replace')[-4000:]}")
    return time.monotonic() - started


@dataclass(frozen=True)
class ImageFacts:
    size: int  # bytes
    user: str
    healthcheck: dict[str, Any]
    entrypoint: list[str]


def image_facts(tag: str) -> ImageFacts:
    """Size, USER, HEALTHCHECK and ENTRYPOINT of an image, from ``docker image inspect``."""
    data = json.loads(docker("image", "inspect", tag).stdout)[0]
    config = data.get("Config") or {}
    return ImageFacts(size=int(data["Size"]), user=config.get("User") or "",
                      healthcheck=config.get("Healthcheck") or {}, entrypoint=config.get("Entrypoint") or [])


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("step", choices=("engine", "base-image", "build"))
    parser.add_argument("--tag", default="bninception:cpu", help="image tag for build (default: %(default)s)")
    parser.add_argument("--force", action="store_true", help="remake the base image even if it exists")
    args = parser.parse_args(argv)
    try:
        reason = ensure_engine()
        if reason:
            raise HarnessError(reason)
        if args.step == "base-image" or args.step == "build":
            seconds = make_base_image(force=args.force)
            print(f"{BASE_TAG}: " + ("reused" if seconds is None else f"made in {seconds:.0f} s"))
        if args.step == "build":
            seconds = build_image(args.tag)
            print(f"{args.tag}: built in {seconds:.0f} s, {image_facts(args.tag).size / 1e9:.2f} GB")
    except HarnessError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
