"""Validate every artifact of a run against the PyTorch inference-form model (docs/DESIGN.md's gates).

The EMA-statistics model (``checkpoint.pt``) is reported, never gated: how far it is from Algorithm 2.
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from bninception.core import layout
from bninception.core.errors import BninceptionError
from bninception.core.files import atomic_write_json
from bninception.core.gates import GATES, Comparison, compare, gate_for
from bninception.core.ort import onnx_providers
from bninception.core.rundir import RunDir
from bninception.core.runner import run_all
from bninception.core.stage import Done, StageResult, StageSpec, run_stage
from bninception.evaluate.artifact_runners import ArtifactRunner, Identity, Skipped, discover, vouched_inputs
from bninception.evaluate.data import load_eval_data
from bninception.evaluate.tables import pct, render

log = logging.getLogger(__name__)

REPORT_FORMAT = "bninception-validate/2"


@dataclass
class ValidationRow(Identity):
    """One artifact on one provider: REF, INFO, PASS, FAIL, ERROR or REJECTED (its stage's gate refused it)."""

    comparison: Comparison | None = None
    gate: str = ""
    status: str = "ERROR"
    failures: list[str] = field(default_factory=list)
    note: str = ""
    seconds: float = 0.0

    @property
    def failed(self) -> bool:
        return self.status in ("FAIL", "ERROR")

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["comparison"] = self.comparison.to_dict() if self.comparison else None
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ValidationRow:
        cmp = data.get("comparison")
        return cls(**{**data, "comparison": Comparison.from_dict(cmp) if cmp else None})


@dataclass
class ValidationReport:
    rows: list[ValidationRow]
    skipped: list[Skipped]
    data: dict[str, Any]
    seconds: float = 0.0

    @property
    def passed(self) -> bool:
        return not any(row.failed for row in self.rows)

    def failures(self) -> list[str]:
        return [f"{row.name} ({row.artifact}): {'; '.join(row.failures) or row.status}"
                for row in self.rows if row.failed]

    def rejected(self) -> list[str]:
        """``file (why)`` for every rejected artifact (one entry per file, the first provider's numbers)."""
        seen: dict[str, str] = {}
        for row in self.rows:
            if row.status == "REJECTED" and row.artifact not in seen:
                seen[row.artifact] = f"{row.artifact} ({'; '.join(row.failures) or row.note})"
        return list(seen.values())

    def verdict(self, short: bool = False) -> str:
        """``all gates PASS`` / ``N gate(s) FAIL`` (``short``: ``PASS`` / ``FAIL``), naming any rejected artifact."""
        if short:
            text = "PASS" if self.passed else "FAIL"
        else:
            text = "all gates PASS" if self.passed else f"{len(self.failures())} gate(s) FAIL"
        rejected = self.rejected()
        return f"{text}; rejected: {', '.join(rejected)}" if rejected else text

    def errors(self) -> list[str]:
        """Artifacts that could not be run at all (a corrupt or unreadable file): bad input."""
        return [f"{row.name} ({row.artifact}): {'; '.join(row.failures)}" for row in self.rows
                if row.status == "ERROR"]

    def row(self, kind: str, provider: str = "cpu") -> ValidationRow | None:
        return next((r for r in self.rows if r.kind == kind and r.provider in (provider, "tensorrt")), None)

    def to_dict(self) -> dict[str, Any]:
        return {"format": REPORT_FORMAT, "passed": self.passed, "data": self.data,
                "gates": {p: {**asdict(g), "text": g.describe()} for p, g in GATES.items()},
                "rows": [r.to_dict() for r in self.rows], "skipped": [s.to_dict() for s in self.skipped],
                "failures": self.failures(), "rejected": self.rejected(), "seconds": round(self.seconds, 3)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ValidationReport:
        if data.get("format") != REPORT_FORMAT:
            raise BninceptionError(f"not a {REPORT_FORMAT} document (format {data.get('format')!r})")
        return cls(rows=[ValidationRow.from_dict(r) for r in data["rows"]],
                   skipped=[Skipped(**s) for s in data.get("skipped", [])],
                   data=data.get("data", {}), seconds=float(data.get("seconds", 0.0)))

    def table(self, markdown: bool = False) -> str:
        """The validate table (plain text, or a Markdown table)."""
        head = ["artifact", "file", "provider", "prec", "top-1", "top-5", "agree", "max diff", "mean diff",
                "gate", "result"]
        body = []
        for r in self.rows:
            gate = r.gate or ("reference" if r.status == "REF" else "informational")
            c = r.comparison
            body.append([r.name, r.artifact, r.provider, r.precision, pct(c and c.accuracy), pct(c and c.top5),
                         "-" if c is None or r.status == "REF" else pct(c.top1_agreement),
                         _sci(c and c.max_abs_diff, r), _sci(c and c.mean_abs_diff, r), gate, r.status])
        lines = render(head, body, markdown)
        notes = [f"{r.name}: {r.note}" for r in self.rows if r.note]
        notes += [f"{r.name}: {f}" for r in self.rows for f in r.failures]
        notes += [f"skipped {s.artifact}: {s.reason}" for s in self.skipped if s.reason != "not built"]
        d = self.data
        caption = (f"{d.get('images', '?')} images from {d.get('source', '?')} ({d.get('split', '?')} split), a model "
                   f"of {d.get('classes', '?')} classes; labels: {d.get('label_mapping', '?')}; overall: "
                   f"{self.verdict(short=True)}")
        if markdown:
            return "\n".join([caption, "", *lines, "", *(f"- {n}" for n in notes)]).rstrip() + "\n"
        return "\n".join([*lines, caption, *notes])


def _sci(value: float | None, row: ValidationRow | None = None) -> str:
    return "-" if value is None or (row is not None and row.status == "REF") else f"{value:.2e}"


# -- validation ----------------------------------------------------------------------------------
def _verdict(row: ValidationRow, art: ArtifactRunner, reference_top1: float) -> None:
    """Set ``row``'s status: REF, INFO (the EMA model, never gated), or its precision's gate."""
    cmp = row.comparison
    assert cmp is not None
    if art.is_reference:
        row.status = "REF"
    elif art.informational:
        row.status = "INFO"
        row.note = (f"EMA running statistics: top-1 {pct(cmp.accuracy)} vs population statistics "
                    f"(model.pt) {pct(reference_top1)}")
    else:
        gate = gate_for(art.precision)
        row.gate = gate.describe()
        row.failures = gate.failures(cmp)
        row.status = "FAIL" if row.failures else "PASS"
        if art.rejected:
            row.status = "REJECTED"
            row.note = ("rejected by its stage's gate, not served" if row.failures else
                        "rejected by its stage's gate where it was made; passes here, not served")


def validate_run(run: RunDir, data: str | None = None, include_engines: bool = True,
                 limit: int | None = None, batch_size: int = 64, save: bool = True,
                 providers: list[str] | None = None,
                 found: tuple[list[ArtifactRunner], list[Skipped]] | None = None,
                 by_position: bool = False) -> ValidationReport:
    """Validate every artifact of ``run`` (``found``: from :func:`discover`); save ``validate.json`` when ``save``."""
    started = time.perf_counter()
    artifacts, skipped = found or discover(run, include_engines=include_engines, providers=providers)
    eval_data = load_eval_data(run, data, limit, by_position)
    log.info("validate: %d images (%s, %s split), %d artifacts", len(eval_data.labels), eval_data.source,
             eval_data.split, len(artifacts))
    reference_art = next(a for a in artifacts if a.is_reference)
    reference = run_all(reference_art, eval_data.images, batch_size)
    reference_top1 = float(np.mean(reference.argmax(1) == eval_data.labels))
    source = f"{eval_data.source} {eval_data.split} split ({len(eval_data.labels)} images)"
    rows: list[ValidationRow] = []
    for art in artifacts:
        row = ValidationRow(**asdict(art.identity()))
        tick = time.perf_counter()
        try:
            logits = reference if art.is_reference else run_all(art, eval_data.images, batch_size)
            row.comparison = compare(reference, logits, source, eval_data.labels)
            _verdict(row, art, reference_top1)
        except BninceptionError as exc:
            row.status, row.failures = "ERROR", [str(exc)]
        finally:
            art.close()
        row.seconds = round(time.perf_counter() - tick, 3)
        rows.append(row)
        log.info("validate: %-32s %s", art.name, row.status)
    report = ValidationReport(rows=rows, skipped=skipped, data=eval_data.describe(),
                              seconds=time.perf_counter() - started)
    if save:
        atomic_write_json(run.path(layout.VALIDATE_JSON), report.to_dict())
    return report


def validate_stage(run: RunDir, data: str | None = None, force: bool = False, include_engines: bool = True,
                   limit: int | None = None, providers: list[str] | None = None,
                   by_position: bool = False) -> StageResult:
    """:func:`validate_run` as a stage, recorded even when a gate fails (the caller reads ``passed``);
    ``providers`` None: every one available here."""
    params = {"format": REPORT_FORMAT, "data": data, "limit": limit, "by_position": by_position,
              "gates": {p: g.describe() for p, g in GATES.items()}, "providers": providers or onnx_providers()}
    found = discover(run, include_engines=include_engines, providers=providers)
    spec = StageSpec("validate", params, vouched_inputs(found[0]), [layout.VALIDATE_JSON])

    def body() -> Done:
        report = validate_run(run, data, include_engines=include_engines, limit=limit, found=found,
                              by_position=by_position)
        return Done({"passed": report.passed, "failures": report.failures(), "rejected": report.rejected()},
                    report, report.verdict())

    return run_stage(run, spec, body, force=force, on_skip=lambda: load_validation(run))


def load_validation(run: RunDir) -> ValidationReport:

    from bninception.core.files import parse_json

    path = run.require(layout.VALIDATE_JSON, "run `bninception validate`")
    try:
        return ValidationReport.from_dict(parse_json(path.read_bytes(), path, "re-run `bninception validate`"))
    except (KeyError, TypeError, AttributeError) as exc:
        raise BninceptionError(f"{path} is not a readable validation report: {exc}") from exc
