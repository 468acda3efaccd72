"""benchmarks/gpu_check.py without a GPU: its step runner, its summary, and one reduced run on the CPU.

On a GPU host ``make gpu-check`` runs it for real; here the CUDA comparisons fall back to CPU vs CPU
and are reported SKIP, and the TensorRT steps SKIP with the reason.
"""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def load_script():
    spec = importlib.util.spec_from_file_location("gpu_check", ROOT / "benchmarks" / "gpu_check.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["gpu_check"] = module
    spec.loader.exec_module(module)
    return module


gc = load_script()


def settings(tmp_path: Path, budget: float = 100.0):
    return gc.Settings(out=tmp_path, device="cpu", budget=budget)


def test_a_failing_step_is_a_row_and_the_next_step_runs(tmp_path: Path) -> None:
    check = gc.Check(settings(tmp_path))

    def boom(step):
        raise ValueError("no such tensor 'data'\nsecond line")

    def fine(step):
        step.detail = "ok"

    check.step("first", boom)
    check.step("second", fine)
    first, second = check.steps
    assert (first.status, first.detail) == (gc.ERROR, "ValueError: no such tensor 'data'")
    assert "Traceback" in first.data["traceback"]
    assert (second.status, second.detail) == (gc.PASS, "ok")
    assert gc.overall(check.steps) == gc.FAIL


def test_steps_past_the_budget_are_skipped_with_the_reason(tmp_path: Path) -> None:
    check = gc.Check(settings(tmp_path, budget=5.0))
    ran = []
    check.step("cheap", lambda step: ran.append("cheap"), needs=1)
    check.step("expensive", lambda step: ran.append("expensive"), needs=60)
    assert ran == ["cheap"]
    assert check.steps[1].status == gc.SKIP and check.steps[1].detail.startswith("time budget:")
    assert gc.overall(check.steps) == gc.PARTIAL  # a skipped step is not a pass: it verified less


def test_summary_fits_one_screen_and_names_every_step(tmp_path: Path) -> None:
    steps = [gc.Step(name, gc.PASS, 1.0, "x" * 300) for name in gc.STEPS]
    steps[-2].data = {"table": "\n".join(f"artifact {i} " + "y" * 200 for i in range(12))}
    env = {"cuda_available": True, "gpu": "NVIDIA H100", "compute_capability": "9.0", "torch": "2.x",
           "tensorrt": None, "onnxruntime": "1.22"}
    lines = gc.summary_lines(steps, env, 123.4, tmp_path / "gpu_check.json")
    assert len(lines) <= 40 and max(len(line) for line in lines) <= 160
    assert lines[0].startswith("bninception gpu-check: NVIDIA H100 (cc 9.0)") and "TensorRT -" in lines[0]
    assert all(any(line.startswith(name) for line in lines) for name in gc.STEPS)
    assert "artifact 11" in lines[-3] and lines[-1].startswith("overall: PASS in 123 s")


def test_quick_settings_and_step_selection(tmp_path: Path, capsys) -> None:
    args = gc.argparse.Namespace(out=str(tmp_path), device="cpu", budget=10.0, quick=True, epochs=None, run=None)
    quick = gc.settings_from(args)
    assert (quick.epochs, quick.max_steps, quick.int8_samples, quick.batch_sizes) == (1, 4, 64, (1, 4))
    assert list(gc.STEPS) == ["environment", "pipeline", "torch-parity", "autocast", "population", "torch-speed",
                              "engines", "validate", "bench"]
    with pytest.raises(SystemExit):
        gc.main(["--out", str(tmp_path / "x"), "--steps", "environment,warp-drive"])
    assert "unknown step(s) ['warp-drive']" in capsys.readouterr().err
    precious = tmp_path / "precious"
    precious.mkdir()
    (precious / "thesis.tex").write_text("...")
    assert gc.main(["--out", str(precious), "--steps", "environment"]) == 2
    assert (precious / "thesis.tex").is_file()


def test_environment_only_run_writes_the_json(tmp_path: Path, capsys) -> None:
    out = tmp_path / "check"
    status = gc.main(["--out", str(out), "--device", "cpu", "--steps", "environment"])
    document = json.loads((out / "gpu_check.json").read_text())
    assert document["format"] == "bninception-gpu-check/1" and [s["name"] for s in document["steps"]] == \
        ["environment"]
    assert status == gc.EXIT[document["overall"]]
    assert document["environment"]["torch"] and "onnxruntime" in document["environment"]
    assert capsys.readouterr().out.splitlines()[-1].startswith(f"overall: {document['overall']}")


@pytest.mark.slow
def test_reduced_run_on_the_cpu(demo_run, tmp_path: Path, capsys) -> None:
    """The whole script on a trained demo run: every step runs or says why not; the gates pass."""
    out = tmp_path / "check"
    status = gc.main(["--out", str(out), "--device", "cpu", "--quick", "--run", str(demo_run.root)])
    document = json.loads((out / "gpu_check.json").read_text())
    steps = {s["name"]: s for s in document["steps"]}
    assert list(steps) == list(gc.STEPS)
    assert steps["pipeline"]["status"] == "PASS", steps["pipeline"]
    stages = steps["pipeline"]["data"]["stages"]
    assert stages["train"] == stages["population"] == "skipped" and stages["int8"] == "done"  # model kept
    for name in ("torch-parity", "population", "torch-speed"):  # computed on the CPU, reported as SKIP
        assert steps[name]["status"] == "SKIP" and "no CUDA device" in steps[name]["detail"]
    assert steps["autocast"]["status"] == "SKIP" and "CUDA only" in steps["autocast"]["detail"]
    assert steps["torch-speed"]["data"]["rows"][0]["images_per_second"] > 0
    assert steps["torch-parity"]["data"]["max_abs_diff"] == 0.0
    if steps["engines"]["status"] == "SKIP":
        assert "TensorRT" in steps["engines"]["detail"]
    validated = {r["name"]: r["status"] for r in steps["validate"]["data"]["rows"]}
    assert steps["validate"]["status"] == "PASS" and "PASS" in validated.values(), validated
    assert steps["bench"]["status"] == "PASS" and steps["bench"]["data"]["results"]
    assert status == 3 and document["overall"] == "PARTIAL"  # a CPU host verifies less than a GPU host
    assert capsys.readouterr().out.splitlines()[-1].startswith("overall: PARTIAL")


def test_a_broken_tensorrt_is_an_error_not_a_skip(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """An installed TensorRT whose libraries do not load must not read as "not installed"."""
    import importlib

    from bninception.core.errors import BninceptionError
    from bninception.engines import detect

    real = importlib.import_module

    def broken(name: str, *args, **kwargs):
        if name == "tensorrt":
            raise ImportError("libnvinfer.so.10: cannot open shared object file")
        return real(name, *args, **kwargs)

    monkeypatch.setattr(detect.importlib, "import_module", broken)
    with pytest.raises(BninceptionError, match="installed but cannot be loaded: ImportError: libnvinfer"):
        detect.available()
    assert detect.probe_host()[1].startswith("TensorRT is installed but cannot be loaded")
    check = gc.Check(settings(tmp_path))
    check.step("environment", gc.functools.partial(gc.environment, check))
    check.step("engines", gc.functools.partial(gc.engines, check))
    assert [s.status for s in check.steps] == [gc.ERROR, gc.ERROR] and gc.overall(check.steps) == gc.FAIL


def test_runs_from_a_plain_checkout_without_an_install(tmp_path: Path) -> None:
    """The script bootstraps the checkout itself (the GPU machine installs nothing; ``-S``: no site-packages,
    so not our editable install either): its stage folders import as bninception.*, and the package
    itself changes no import path."""
    import subprocess

    code = ("import runpy, sys; sys.argv = [sys.argv[1], '--help']\n"
            "try:\n    runpy.run_path(sys.argv[0])\nexcept SystemExit:\n    pass\n"
            "import bninception.core.layout as l; print(l.__file__)")
    out = subprocess.run([sys.executable, "-S", "-c", code, str(ROOT / "benchmarks" / "gpu_check.py")],
                         capture_output=True, text=True, check=True, cwd=tmp_path).stdout
    assert out.strip().splitlines()[-1] == str(ROOT / "core" / "layout.py")
    plain = subprocess.run([sys.executable, "-S", "-c", "import sys; sys.path.insert(0, sys.argv[1]); "
                            "import bninception.core", str(ROOT)], capture_output=True, text=True, cwd=tmp_path)
    assert plain.returncode != 0 and "No module named 'bninception.core'" in plain.stderr
