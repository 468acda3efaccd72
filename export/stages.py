"""Run-directory stages ``export`` (model.pt -> model.onnx) and ``fold`` (-> model.folded.onnx), parity-gated."""

from __future__ import annotations

from bninception.core import layout
from bninception.core.files import atomic_path, atomic_write_json
from bninception.core.gates import GATES, compare
from bninception.core.rundir import RunDir
from bninception.core.runner import InputSpec, TorchRunner, run_all
from bninception.core.stage import Done, StageResult, StageSpec, run_stage

EXPORTER = "torchscript-preserve/2"  # /2: explicit_pool_pads
FOLD_PASS = "fold_batchnorm/1"
MODEL_HINT = "run `bninception train` + `bninception population`, or `import-weights`"


def export_stage(run: RunDir, opset: int = 17, force: bool = False) -> StageResult:
    """model.pt -> model.onnx (BN kept), gated on ORT (optimizations off) vs PyTorch with the FP32 gate."""
    from bninception.export.to_onnx import check_opset

    gate = GATES["fp32"]
    spec = StageSpec("export", {"opset": check_opset(opset), "exporter": EXPORTER, "gate": gate.describe()},
                     [layout.MODEL_PT], [layout.ONNX], hints={layout.MODEL_PT: MODEL_HINT})

    def body() -> Done:
        from bninception.export import parity
        from bninception.export.to_onnx import export_onnx
        from bninception.model.checkpoint import load_model

        model, preprocess, labels, _ = load_model(run.path(layout.MODEL_PT))
        images, source = parity.run_images(run, preprocess)
        spec_in = InputSpec("data", preprocess.channels, preprocess.size, preprocess.size)
        reference = run_all(TorchRunner(model, spec_in), images)
        with atomic_path(run.path(layout.ONNX)) as tmp:
            proto = export_onnx(model, preprocess, labels, tmp, opset=opset,
                                source_sha256=run.sha256(layout.MODEL_PT))
            candidate = run_all(parity.parity_runner(tmp, layout.ONNX), images)
            result = gate.check(compare(reference, candidate, source), "export parity (ORT vs PyTorch)")
        bn_nodes = sum(n.op_type == "BatchNormalization" for n in proto.graph.node)
        nodes = len(proto.graph.node)
        return Done({"opset": opset, "nodes": nodes, "bn_nodes": bn_nodes, "parity": result.to_dict()},
                    message=f"model.onnx (opset {opset}, {nodes} nodes, {bn_nodes} BatchNormalization); "
                            f"parity vs PyTorch max abs diff {result.max_abs_diff:.3g} on {result.source}")

    return run_stage(run, spec, body, force=force)


def fold_stage(run: RunDir, force: bool = False) -> StageResult:
    """model.onnx -> model.folded.onnx + fold_report.json, gated (FP32) on ORT parity vs model.onnx."""
    gate = GATES["fp32"]
    spec = StageSpec("fold", {"pass": FOLD_PASS, "gate": gate.describe()}, [layout.ONNX],
                     [layout.FOLDED, layout.FOLD_REPORT], hints={layout.ONNX: layout.make_hint(layout.ONNX, run.root)})

    def body() -> Done:
        from bninception.core import metadata
        from bninception.export import parity
        from bninception.export.fold import fold_batchnorm
        from bninception.export.onnx_io import check_full, load_onnx

        source_path = run.path(layout.ONNX)
        model = load_onnx(source_path)
        folded, report = fold_batchnorm(model)
        check_full(folded, str(run.path(layout.FOLDED)))
        reference_runner = parity.parity_runner(source_path, layout.ONNX)
        channels, height, width = reference_runner.input_spec.item_shape
        preprocess = metadata.read(model, layout.ONNX).preprocess
        if preprocess is not None and (preprocess.channels, preprocess.size, preprocess.size) == (
                channels, height, width):
            images, source = parity.run_images(run, preprocess)
        else:
            images, source = parity.random_inputs((channels, height, width), count=8), "8 random inputs"
        reference = run_all(reference_runner, images)
        candidate = run_all(parity.parity_runner(folded, layout.FOLDED), images)
        result = gate.check(compare(reference, candidate, source), "fold parity (folded vs model.onnx, ORT)")
        with atomic_path(run.path(layout.FOLDED)) as tmp:
            tmp.write_bytes(folded.SerializeToString())
            atomic_write_json(run.path(layout.FOLD_REPORT), {**report.to_dict(), "parity": result.to_dict()})
        lines = report.summary().splitlines()
        left = "".join(f"\n  {line}" for line in lines[2:])  # BN nodes left, with their reasons
        return Done({"bn_before": report.bn_before, "bn_after": report.bn_after, "folded": report.folded_total,
                     "left": len(report.left), "parity": result.to_dict()},
                    message=f"{lines[0]}; parity max abs diff {result.max_abs_diff:.3g} on {result.source}{left}")

    return run_stage(run, spec, body, force=force)
