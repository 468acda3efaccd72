"""FP16 and both INT8 files of a trained run, served over HTTP: parity with in-process ONNX Runtime."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import tritonclient.http as triton

from bninception.core import layout
from bninception.core.rundir import RunDir

pytestmark = pytest.mark.slow


@pytest.mark.parametrize(("precision", "provider", "file"), [
    ("fp16", "cpu", layout.FP16), ("int8", "cpu", layout.INT8_CPU), ("int8", None, layout.INT8),
])
def test_served_precision_matches_in_process(onnx_run: RunDir, precision: str, provider: str | None,
                                             file: str) -> None:
    from serve_helpers import start_in_thread

    from bninception.core.runner import OrtRunner
    from bninception.model.data import load_run_bundle, stack_split
    from bninception.serve.app import create_app
    from bninception.served import model_path_for

    path = model_path_for(onnx_run.root, precision, provider)
    assert path.name == file
    bundle = load_run_bundle(onnx_run)
    assert bundle is not None
    images, labels = stack_split(bundle.test, limit=48)
    reference = OrtRunner(path).run(images)
    with start_in_thread(create_app(path, max_batch=16, max_delay_ms=2)) as server:
        client = triton.InferenceServerClient(f"{server.host}:{server.port}", concurrency=3)
        got = []
        for start in range(0, len(images), 16):
            tensor = triton.InferInput("data", [16, 1, 32, 32], "FP32")
            tensor.set_data_from_numpy(images[start:start + 16], binary_data=True)
            got.append(client.infer("bninception", [tensor]).as_numpy("logits"))
        client.close()
    logits: Any = np.concatenate(got)
    np.testing.assert_allclose(logits, reference, atol=1e-5)
    assert np.mean(logits.argmax(1) == labels) > 0.9  # the served reduced-precision model still classifies
