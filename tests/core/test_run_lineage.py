"""Run lineage that cannot lie: a stage records the hashes of what it read (a file replaced while the
stage ran is refused, nothing recorded), one stage at a time holds the run directory, and a damaged
JSON file is one clear error naming it."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bninception.core.errors import BninceptionError
from bninception.core.rundir import RunDir
from bninception.core.stage import Done, StageSpec, run_stage


def test_an_input_replaced_while_the_stage_reads_it_is_not_recorded(tmp_path: Path) -> None:
    from run_helpers import produce

    run = RunDir(tmp_path)
    produce(run, "in.txt", "first")

    def body() -> Done:
        run.path("out.txt").write_text(run.path("in.txt").read_text().upper())
        run.path("in.txt").write_text("second, written by someone else meanwhile")
        return Done()

    spec = StageSpec("upper", {}, ["in.txt"], ["out.txt"])
    with pytest.raises(BninceptionError, match=r"in\.txt changed while the stage read it"):
        run_stage(run, spec, body)
    assert "upper" not in run.manifest()["stages"]
    produce(run, "in.txt", "second, written by someone else meanwhile")
    result = run_stage(run, spec, lambda: Done(message=run.path("out.txt").write_text("SECOND") and ""))
    assert result.status == "done"
    from bninception.core.files import sha256_file

    assert run.manifest()["stages"]["upper"]["inputs"] == {"in.txt": sha256_file(run.path("in.txt"))}


def test_a_second_process_waits_for_the_run_directory(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    run = RunDir(tmp_path)
    holder = subprocess.Popen([sys.executable, "-c", (
        "import sys, time; from bninception.core.rundir import RunDir\n"
        "with RunDir(sys.argv[1]).locked('train'):\n"
        "    print('held', flush=True); time.sleep(1.5)\n"), str(tmp_path)], stdout=subprocess.PIPE, text=True)
    assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
    started = time.monotonic()
    with caplog.at_level("WARNING", logger="bninception.run"):
        result = run_stage(run, StageSpec("later", {}, [], []), lambda: Done())
    waited = time.monotonic() - started
    holder.wait(10)
    assert result.status == "done" and waited > 0.8, waited
    assert f"pid {holder.pid}, stage train" in caplog.text and "waiting for it" in caplog.text


@pytest.mark.parametrize(("content", "problem"), [
    ("[" * 100_000, "nested too deeply"),
    ('{"format": "bninception-manifest/1", "stages": {', "Expecting"),
    ("\udcff", "utf-8"),
])
def test_a_damaged_manifest_is_one_clear_error(tmp_path: Path, content: str, problem: str) -> None:
    path = tmp_path / "manifest.json"
    path.write_bytes(content.encode("utf-8", "surrogateescape"))
    (tmp_path / "checkpoint.pt").write_bytes(b"present, so the stage gets as far as the manifest")
    result = subprocess.run([sys.executable, "-m", "bninception", "population", "--run", str(tmp_path)],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 2, result.stderr
    line = result.stderr.strip().splitlines()[-1]
    assert str(path) in line and problem in line and "mv " in line and "Traceback" not in result.stderr, line


def test_every_json_reader_names_the_file(tmp_path: Path) -> None:
    from bninception.core.files import read_json

    path = tmp_path / "sidecar.json"
    path.write_text("[" * 50_000)
    with pytest.raises(BninceptionError, match=rf"{path} is not valid JSON \(nested too deeply\)"):
        read_json(path, 1 << 20, "a sidecar")
    path.write_bytes('{"gpu": "Quadro é"}'.encode("latin-1"))  # an editor's other encoding
    with pytest.raises(BninceptionError, match=rf"{path} is not valid JSON \('utf-8' codec"):
        read_json(path, 1 << 20, "a sidecar")
    path.write_bytes(json.dumps({"gpu": "é"}).encode("utf-16"))  # json reads UTF-16/32 with a BOM as such
    assert read_json(path, 1 << 20, "a sidecar") == {"gpu": "é"}
