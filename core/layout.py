"""The run directory's layout: every artifact's file name, which file holds which precision, engine paths."""

from __future__ import annotations

from dataclasses import dataclass

# -- model stages ---------------------------------------------------------------------------------
CHECKPOINT = "checkpoint.pt"  # training state; BN with running (EMA) statistics
MODEL_PT = "model.pt"  # inference form with population statistics: the reference of every gate
METRICS = "metrics.json"

# -- ONNX -----------------------------------------------------------------------------------------
ONNX = "model.onnx"  # BatchNormalization kept
FOLDED = "model.folded.onnx"  # BatchNormalization folded by our pass
FOLD_REPORT = "fold_report.json"
FP16 = "model.fp16.onnx"
FP16_REPORT = "fp16_report.json"
INT8 = "model.int8.onnx"  # TensorRT explicit-quantization layout
INT8_CPU = "model.int8.cpu.onnx"  # ONNX Runtime CPU layout (QLinear kernels), same calibration
INT8_REPORT = "int8_report.json"
CALIBRATION = "calibration.json"

# -- reports --------------------------------------------------------------------------------------
VALIDATE_JSON = "validate.json"
BENCH_JSON = "bench.json"
BENCH_PNG = "bench_throughput.png"
REPORT_MD = "report.md"
REPORT_JSON = "report.json"

# -- TensorRT engines -----------------------------------------------------------------------------
ENGINES_DIR = "engines"
PRECISIONS = ("fp32", "fp16", "int8")


@dataclass(frozen=True)
class OnnxArtifact:
    """One ONNX file of a run: its kind (validate/bench row), precision, label and the command that makes it."""

    file: str
    kind: str
    precision: str
    label: str
    command: str


# In pipeline order. The first file of each precision is what engines are built from and what serve runs.
ONNX_ARTIFACTS = (
    OnnxArtifact(ONNX, "onnx", "fp32", "ORT FP32 (BN kept)", "bninception export --run {run}"),
    OnnxArtifact(FOLDED, "onnx-folded", "fp32", "ORT FP32 folded", "bninception fold --run {run}"),
    OnnxArtifact(FP16, "onnx-fp16", "fp16", "ORT FP16", "bninception calibrate --run {run} --precision fp16"),
    OnnxArtifact(INT8, "onnx-int8", "int8", "ORT INT8 (Q/DQ)", "bninception calibrate --run {run} --precision int8"),
    OnnxArtifact(INT8_CPU, "onnx-int8-cpu", "int8", "ORT INT8 CPU (U8S8 QLinear)",
                 "bninception calibrate --run {run} --precision int8"),
)
PRECISION_FILES = {"fp32": FOLDED, "fp16": FP16, "int8": INT8}  # precision -> the ONNX it lives in
# provider -> the INT8 file it serves when the run has it (measured fastest within the gates there by
# benchmarks/cpu_runtimes.py: the CPU layout's QLinearConv against Q/DQ around float Conv; the numbers are in
# docs/cpu-runtimes.md); both files pass every INT8 gate on openvino (tests/evaluate/test_openvino.py).
# Other providers serve PRECISION_FILES["int8"].
SERVED_INT8 = {"cpu": INT8_CPU, "openvino": INT8_CPU}


def artifact(file: str) -> OnnxArtifact:
    """The ONNX artifact named ``file`` (KeyError for a name that is not one)."""
    for entry in ONNX_ARTIFACTS:
        if entry.file == file:
            return entry
    raise KeyError(file)


def served_files(precision: str, provider: str | None = "cpu") -> list[str]:
    """The ONNX files that can serve ``precision`` on ``provider``, preferred first (None: any runtime)."""
    if precision not in PRECISION_FILES:
        raise KeyError(precision)
    preferred = SERVED_INT8.get(provider or "") if precision == "int8" else None
    return [name for name in (preferred, PRECISION_FILES[precision]) if name]


# the commands that make the run's other recorded files (ONNX files: ONNX_ARTIFACTS)
COMMANDS = {CHECKPOINT: "bninception train --run {run} --resume",
            MODEL_PT: "bninception population --run {run} (or import-weights)",
            CALIBRATION: "bninception calibrate --run {run} --precision int8",
            VALIDATE_JSON: "bninception validate --run {run}", BENCH_JSON: "bninception bench --run {run}"}
SUMMARIES = (METRICS,)  # summary files that several stages merge into: read, never recorded or trusted


def make_command(file: str, run: object = "RUN") -> str:
    """The command that makes ``file`` in run directory ``run``."""
    command = COMMANDS.get(file) or artifact(file).command
    return command.format(run=run)


def make_hint(file: str, run: object = "RUN") -> str:
    """``run `...` first``: how to make ``file`` in run directory ``run``."""
    return f"run `{make_command(file, run)}` first"


def rejected(file: str) -> str:
    """Where a stage writes an artifact whose gate failed, for inspection: ``model.int8.rejected.onnx``."""
    stem, dot, ext = file.rpartition(".")
    return f"{stem}.rejected.{ext}" if dot else f"{file}.rejected"


def plan_name(key: str) -> str:
    """A TensorRT plan, relative to the run directory."""
    return f"{ENGINES_DIR}/{key}.plan"


def sidecar_name(key: str) -> str:
    """The plan's JSON sidecar (what it was built from, on what)."""
    return f"{ENGINES_DIR}/{key}.json"


def context_model_name(key: str) -> str:
    """The EPContext ONNX wrapper that lets ONNX Runtime's TensorRT provider load the plan."""
    return f"{ENGINES_DIR}/{key}.ctx.onnx"
