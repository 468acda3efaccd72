#!/usr/bin/env python3
"""Fail an image build unless exactly the expected ONNX Runtime build is installed (and works).

The ONNX Runtime builds (onnxruntime, onnxruntime-gpu, onnxruntime-openvino, ...) all own the same
``onnxruntime`` package; two of them overwrite each other and hide providers. Run by the Dockerfile
after the project is installed:

    python3 check_install.py --ort onnxruntime
    python3 check_install.py --ort onnxruntime-gpu --provider TensorrtExecutionProvider --tensorrt 10.8.0.43
    python3 check_install.py --ort onnxruntime --serving   # the serving image: the server imports, torch is absent

Exit status 0 with one summary line, or 1 with the reason.
"""

from __future__ import annotations

import argparse
import sys
from importlib import metadata

# Distributions that install the top-level ``onnxruntime`` package.
ORT_BUILDS = ("onnxruntime", "onnxruntime-gpu", "onnxruntime-openvino", "onnxruntime-directml",
              "onnxruntime-qnn", "onnxruntime-rocm", "onnxruntime-migraphx", "onnxruntime-training",
              "onnxruntime-cann", "onnxruntime-vitisai")


PIPELINE_ONLY = ("torch", "onnx", "sklearn", "skimage", "matplotlib")


def installed_ort_builds() -> list[str]:
    found = []
    for name in ORT_BUILDS:
        try:
            metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
        found.append(name)
    return found


def check(ort_build: str, providers: list[str], tensorrt_version: str | None) -> str:
    """One summary line; raises SystemExit(reason) on the first problem."""
    builds = installed_ort_builds()
    if builds != [ort_build]:
        raise SystemExit(f"expected exactly one ONNX Runtime build, {ort_build}; installed: {builds or 'none'}")
    import onnxruntime

    available = onnxruntime.get_available_providers()
    missing = [p for p in ["CPUExecutionProvider", *providers] if p not in available]
    if missing:
        raise SystemExit(f"{ort_build} {onnxruntime.__version__} lacks {missing} (has {available})")
    line = f"{ort_build} {onnxruntime.__version__} providers {','.join(available)}"
    if tensorrt_version:
        import tensorrt

        if tensorrt.__version__ != tensorrt_version:
            raise SystemExit(f"TensorRT {tensorrt.__version__} is installed, expected {tensorrt_version}")
        line += f"; tensorrt {tensorrt.__version__}"
    return line


def check_serving() -> str:
    """The server and its command import, and nothing that only the pipeline needs is installed."""
    import importlib.util

    present = [name for name in PIPELINE_ONLY if importlib.util.find_spec(name) is not None]
    if present:
        raise SystemExit(f"the serving image must not hold {present}")
    import bninception.commands.serve
    import bninception.serve.app
    import bninception.serve.grpc_service  # noqa: F401

    return f"serving only: none of {', '.join(PIPELINE_ONLY)}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ort", required=True, choices=ORT_BUILDS, help="the one ONNX Runtime build expected")
    parser.add_argument("--provider", action="append", default=[], help="an execution provider it must have")
    parser.add_argument("--tensorrt", default=None, help="the TensorRT version `import tensorrt` must report")
    parser.add_argument("--serving", action="store_true", help="the serving image: no torch, the server imports")
    args = parser.parse_args(argv)
    print(check(args.ort, args.provider, args.tensorrt) + (f"; {check_serving()}" if args.serving else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
