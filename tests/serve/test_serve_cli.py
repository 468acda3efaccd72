"""``bninception serve``: model choice per precision, and the command end to end in a subprocess."""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import tritonclient.http as triton
from run_helpers import recorded
from serve_helpers import digits_images

from bninception.cli import main
from bninception.core.errors import BninceptionError
from bninception.core.rundir import RunDir
from bninception.serve.server import bind_socket
from bninception.served import model_path_for


@pytest.mark.parametrize(("precision", "name", "command"), [
    ("fp32", "model.folded.onnx", "run `bninception fold --run"),
    ("fp16", "model.fp16.onnx", "bninception calibrate --run .* --precision fp16"),
    ("int8", "model.int8.onnx", "bninception calibrate --run .* --precision int8"),
])
def test_missing_model_names_file_and_command(tmp_path: Path, precision: str, name: str,
                                              command: str) -> None:
    with pytest.raises(BninceptionError, match=rf"{name} is missing .*{command}"):
        model_path_for(tmp_path, precision)


def test_model_path_for_picks_the_precision_file(tmp_path: Path) -> None:
    run = RunDir(tmp_path)
    for name in ("model.folded.onnx", "model.fp16.onnx", "model.int8.onnx"):
        (tmp_path / name).write_bytes(b"x")
        recorded(run, name, name)
    assert model_path_for(tmp_path, "fp16").name == "model.fp16.onnx"
    assert model_path_for(tmp_path, "int8", "cpu").name == "model.int8.onnx"  # no CPU layout yet
    (tmp_path / "model.int8.cpu.onnx").write_bytes(b"x")
    with pytest.raises(BninceptionError, match=r"model\.int8\.cpu\.onnx was not recorded by a finished stage"):
        model_path_for(tmp_path, "int8", "cpu")  # left by an unfinished stage: never served
    recorded(run, "int8", "model.int8.cpu.onnx")
    assert model_path_for(tmp_path, "int8", "cpu").name == "model.int8.cpu.onnx"
    assert model_path_for(tmp_path, "int8", "cuda").name == "model.int8.onnx"
    assert model_path_for(tmp_path, "int8", None).name == "model.int8.onnx"  # any runtime (Triton)
    with pytest.raises(BninceptionError, match="precision must be one of"):
        model_path_for(tmp_path, "bf16")


def test_cli_error_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["serve", "--run", str(tmp_path), "--precision", "int8"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "model.int8.onnx is missing" in err and "Traceback" not in err


def ready_client(proc: subprocess.Popen[str], port: int, seconds: float = 60) -> triton.InferenceServerClient:
    """A client of the CLI server ``proc`` on ``port`` once it answers ready (it must not exit first)."""
    client = triton.InferenceServerClient(f"127.0.0.1:{port}", connection_timeout=5)
    deadline = time.monotonic() + seconds
    while True:
        assert proc.poll() is None, proc.communicate()[1]
        try:
            if client.is_server_ready():
                return client
        except Exception:  # not listening yet
            pass
        assert time.monotonic() < deadline, f"server did not become ready within {seconds:g} s"
        time.sleep(0.2)


@pytest.mark.slow
def test_serve_command_end_to_end(tmp_path: Path, serve_model_path: Path,
                                  serve_reference: object) -> None:
    shutil.copy(serve_model_path, tmp_path / "model.folded.onnx")
    recorded(RunDir(tmp_path), "fold", "model.folded.onnx")
    probe = bind_socket("127.0.0.1", 0)
    port = probe.getsockname()[1]
    probe.close()
    proc = subprocess.Popen([sys.executable, "-m", "bninception", "serve", "--run", str(tmp_path),
                             "--port", str(port), "--max-delay-ms", "1", "--threads", "1", "--access-log"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        client = ready_client(proc, port)
        x = digits_images(4, seed=11)
        tensor = triton.InferInput("data", list(x.shape), "FP32")
        tensor.set_data_from_numpy(x)
        logits = client.infer("bninception", [tensor]).as_numpy("logits")
        np.testing.assert_allclose(logits, serve_reference(x), atol=1e-5)  # type: ignore[operator]
    finally:
        proc.terminate()
        out, err = proc.communicate(timeout=30)
    assert "serving" in err and str(port) in err and "max delay 1 ms" in err
    assert '"POST /v2/models/bninception/infer HTTP/1.1" 200' in out  # --access-log (uvicorn's, on stdout),
    assert '"GET /v2/health/ready HTTP/1.1" 200' in out  # on the direct infer route too


def test_session_without_spinning_gives_the_same_logits(serve_model_path: Path) -> None:
    from bninception.core.ort import create_session

    x = {"data": digits_images(3, seed=12)}
    default = create_session(serve_model_path).run(None, x)[0]
    quiet = create_session(serve_model_path, threads=1, spinning=False)
    assert quiet.get_session_options().get_session_config_entry("session.intra_op.allow_spinning") == "0"
    np.testing.assert_allclose(quiet.run(None, x)[0], default, atol=1e-5)


def test_engine_serving_is_refused_clearly_without_the_tensorrt_provider(tmp_path: Path,
                                                                          capsys: pytest.CaptureFixture[str]) -> None:
    from bninception.core.ort import available
    from bninception.served import served_model

    if "tensorrt" in available():
        pytest.skip("this ONNX Runtime has the TensorRT provider")
    (tmp_path / "model.folded.onnx").write_bytes(b"x")
    recorded(RunDir(tmp_path), "fold", "model.folded.onnx")
    assert served_model(tmp_path, "fp32").path.name == "model.folded.onnx"  # auto: the ONNX file here
    assert served_model(tmp_path, "fp32").providers == (available()[0],)
    other = served_model(tmp_path, "fp32", model=tmp_path / "other.onnx")  # --model: same provider choice
    assert other.path == tmp_path / "other.onnx" and other.providers == (available()[0],)
    for argv in (["--engine"], ["--providers", "tensorrt"]):
        assert main(["serve", "--run", str(tmp_path), *argv]) == 2
        err = capsys.readouterr().err
        assert "runs only on ONNX Runtime's TensorrtExecutionProvider" in err and "Traceback" not in err


def test_serving_never_imports_the_pipeline(serve_model_path: Path, tmp_path: Path) -> None:
    """`serve` (a model file and a run) in a process where torch, onnx, scikit-learn, scikit-image and
    matplotlib cannot be imported: the serving image's package set."""
    from serve_helpers import free_port

    run = RunDir(tmp_path / "run")
    shutil.copy(serve_model_path, run.path("model.folded.onnx"))
    recorded(run, "fold", "model.folded.onnx")
    blocker = ("import sys\n"
               "for name in ('torch', 'onnx', 'sklearn', 'skimage', 'matplotlib'):\n"
               "    sys.modules[name] = None\n"
               "from bninception.cli import main\n"
               "sys.exit(main(sys.argv[1:]))\n")
    for target in (["--model", str(serve_model_path)], ["--run", str(run.root)]):
        port = free_port()
        proc = subprocess.Popen([sys.executable, "-c", blocker, "serve", *target, "--port", str(port)],
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        try:
            ready_client(proc, port)
        finally:
            proc.terminate()
            proc.wait(30)
