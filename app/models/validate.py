"""The model validator: the one implementation behind ``appliance model validate``, ``model.add``
and the panel.

A candidate file is untrusted: it is checked in a **separate process** with an address-space and
a CPU-time limit (``resource.setrlimit``, set by the child itself before it imports onnxruntime)
and a wall-clock timeout enforced by the parent, so a hostile or broken file can crash, hang or
exhaust only that process. The child starts in an empty directory of its own, so what it does
cannot depend on where the validator was run from. The parent checks the size first (default
limit 64 MiB) and never parses the file itself.

In the child, in order (independent checks all report; a failed stage stops the later ones), the
same two stages as the engine's loader (:func:`app.engine.inference.load_model`):

1. without onnxruntime (:func:`app.engine.model_contract.read_model_file`): the file is a protobuf
   ONNX model (truncated files and random bytes stop here); it is only data (no tensor anywhere
   stored as external data, no subgraphs nested deeper than the reader walks); the contract's
   metadata is complete and well-formed, every feature is in the catalogue, the golden outputs
   are probabilities. A file without a contract costs a parse, never a session;
2. onnxruntime builds the session, once (:func:`app.engine.inference.open_model`): an opset or
   an operator this onnxruntime does not implement is named; then one float input and one float
   output of the contract's shapes, and the golden vectors reproduced within the declared
   tolerance through the path that trades;
3. latency: the median :meth:`LoadedModel.predict` time must be within ``latency_factor`` times
   a reference model's, measured now on this machine (the shipped default model), scaled by the
   size ratio of the two files, and within ``max_bar_share`` of one bar. Relative, because an
   emulated board (QEMU) is 10-50x slower than the real one: a fixed figure would trip there.

The report is ``{"ok", "problems", "model", "latency_us", "baseline_us", "budget_us"}``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import app

MIB = 1024 * 1024
REPO_ROOT = Path(app.__file__).resolve().parents[1]
SHIPPED_DEFAULT = REPO_ROOT / "models" / "default.onnx"
_CHILD_MARK = "__appliance_validate_child__"


@dataclass(frozen=True)
class ValidationLimits:
    """The validator's limits; the defaults suit the board and the developer's machine alike."""

    max_bytes: int = 64 * MIB
    # RLIMIT_AS of the child: onnxruntime and numpy alone map ~350 MiB of address space.
    memory_bytes: int = 2048 * MIB
    cpu_s: int = 60
    wall_s: float = 120.0
    latency_factor: float = 20.0
    max_bar_share: float = 0.25
    latency_runs: int = 200
    baseline: Path | None = SHIPPED_DEFAULT

    def to_json(self) -> str:
        doc = asdict(self)
        doc["baseline"] = None if self.baseline is None else str(self.baseline)
        return json.dumps(doc)

    @classmethod
    def from_json(cls, text: str) -> ValidationLimits:
        doc: dict[str, Any] = json.loads(text)
        base = doc.pop("baseline", None)
        return cls(**doc, baseline=None if base is None else Path(base))


@dataclass(frozen=True)
class ValidationReport:
    """The verdict on one file. ``model`` is :meth:`LoadedModel.describe` when the file loaded."""

    ok: bool
    problems: tuple[str, ...]
    model: dict[str, Any] | None = None
    latency_us: float | None = None
    baseline_us: float | None = None
    budget_us: float | None = None
    notes: tuple[str, ...] = field(default=())

    def as_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "problems": list(self.problems),
            "model": self.model,
            "latency_us": self.latency_us,
            "baseline_us": self.baseline_us,
            "budget_us": self.budget_us,
            "notes": list(self.notes),
        }

    @classmethod
    def from_dict(cls, doc: dict[str, Any]) -> ValidationReport:
        return cls(
            ok=bool(doc["ok"]),
            problems=tuple(str(p) for p in doc["problems"]),
            model=doc.get("model"),
            latency_us=doc.get("latency_us"),
            baseline_us=doc.get("baseline_us"),
            budget_us=doc.get("budget_us"),
            notes=tuple(str(n) for n in doc.get("notes", ())),
        )


def _refused(*problems: str) -> ValidationReport:
    return ValidationReport(False, tuple(problems))


def size_problem(path: Path, limits: ValidationLimits) -> str | None:
    """The size check, done before anything else reads the file."""
    try:
        size = path.stat().st_size
    except OSError as exc:
        return f"cannot read the file: {exc.strerror or exc}"
    if size > limits.max_bytes:
        return (
            f"file too large: {size} bytes > limit {limits.max_bytes} bytes "
            f"({limits.max_bytes / MIB:g} MiB)"
        )
    if size == 0:
        return "not an ONNX model: the file is empty"
    return None


# -- in the child ---------------------------------------------------------------------------------


def _apply_limits(limits: ValidationLimits) -> None:
    import resource

    resource.setrlimit(resource.RLIMIT_AS, (limits.memory_bytes, limits.memory_bytes))
    resource.setrlimit(resource.RLIMIT_CPU, (limits.cpu_s, limits.cpu_s + 5))


def _median_predict_us(model: Any, runs: int) -> float:
    import numpy as np

    c = model.contract
    window = (
        np.asarray(c.golden.cases[0].input, dtype=np.float64)
        if c.golden.cases
        else np.zeros(c.window_shape)
    )
    for _ in range(min(20, runs)):
        model.predict(window)
    times = []
    for _ in range(runs):
        t0 = time.perf_counter_ns()
        model.predict(window)
        times.append(time.perf_counter_ns() - t0)
    return statistics.median(times) / 1000.0


def _load_problem(text: str, opsets: dict[str, int]) -> str:
    first = text.strip().splitlines()[0] if text.strip() else "unknown error"
    low = first.lower()
    declared = ", ".join(f"{d or 'ai.onnx'} {v}" for d, v in sorted(opsets.items()))
    import onnxruntime as ort

    if "opset" in low:
        return (
            f"unsupported opset: the model imports {declared}, which onnxruntime "
            f"{ort.__version__} cannot load ({first[-200:]})"
        )
    if "no op registered" in low or "could not find an implementation" in low:
        return f"unsupported operator for onnxruntime {ort.__version__}: {first[-240:]}"
    return f"onnxruntime cannot load the model: {first[:300]}"


# How an allocation failure reads in onnxruntime's messages (its arena does not raise MemoryError).
_OUT_OF_MEMORY = ("Failed to allocate memory", "bad_alloc", "bad allocation", "MemoryError")


def _out_of_memory(text: str) -> bool:
    return any(mark in text for mark in _OUT_OF_MEMORY)


def _memory_refusal(limits: ValidationLimits, detail: str) -> ValidationReport:
    return _refused(
        f"memory limit: the model needs more than {limits.memory_bytes // MIB} MiB "
        f"of address space ({detail[:200]})"
    )


def check_file(path: Path, limits: ValidationLimits) -> ValidationReport:
    """Every check, in this process (call it only inside the sandboxed child)."""
    from app.engine.model_contract import read_model_file

    problem = size_problem(path, limits)
    if problem is not None:
        return _refused(problem)
    data = path.read_bytes()
    header, contract, problems = read_model_file(data)
    if header is None or contract is None:
        return _refused(*problems)
    opsets = header.opsets
    from app.engine.inference import load_model, open_model
    from app.errors import ModelError

    try:
        model = open_model(path, data, contract, explain=lambda text: _load_problem(text, opsets))
    except ModelError as exc:
        if any(_out_of_memory(p) for p in exc.problems):
            return _memory_refusal(limits, next(p for p in exc.problems if _out_of_memory(p)))
        return _refused(*exc.problems)
    describe = model.describe()
    describe["opsets"] = {d or "ai.onnx": v for d, v in header.opsets.items()}
    describe["ir_version"] = header.ir_version
    describe["bytes"] = len(data)
    # Reaching here, every golden case was reproduced within the tolerance (open_model checks).
    describe["golden_cases"] = len(contract.golden.cases)
    describe["golden_tolerance"] = contract.golden.tolerance
    latency = _median_predict_us(model, limits.latency_runs)
    notes: list[str] = []
    baseline_us = budget = None
    base = limits.baseline
    if base is not None and base.exists():
        try:
            reference = load_model(base)
        except ModelError as exc:
            notes.append(f"baseline {base} did not load ({exc}); latency checked per bar only")
        else:
            baseline_us = _median_predict_us(reference, limits.latency_runs)
            ratio = max(1.0, len(data) / max(1, base.stat().st_size))
            budget = baseline_us * limits.latency_factor * ratio
    else:
        notes.append("no baseline model on this machine; latency checked per bar only")
    bar_budget = model.contract.bar_interval_s * 1e6 * limits.max_bar_share
    budget = bar_budget if budget is None else min(budget, bar_budget)
    problems = []
    if latency > budget:
        problems.append(
            f"too slow: median inference {latency:.1f} us > budget {budget:.1f} us "
            f"(baseline {baseline_us if baseline_us is None else round(baseline_us, 1)} us x "
            f"{limits.latency_factor:g} x size ratio, at most {limits.max_bar_share:g} of a "
            f"{model.contract.bar_interval_s} s bar)"
        )
    return ValidationReport(
        not problems,
        tuple(problems),
        describe,
        round(latency, 2),
        None if baseline_us is None else round(baseline_us, 2),
        round(budget, 2),
        tuple(notes),
    )


def _child_main(path: str, limits_json: str) -> int:
    limits = ValidationLimits.from_json(limits_json)
    _apply_limits(limits)
    try:
        report = check_file(Path(path), limits)
    except MemoryError:
        report = _refused(
            f"memory limit: the model needs more than {limits.memory_bytes // MIB} MiB "
            "of address space"
        )
    sys.stdout.write(_CHILD_MARK + json.dumps(report.as_dict()) + "\n")
    sys.stdout.flush()
    return 0


# -- in the parent --------------------------------------------------------------------------------


def _child_cmd(path: Path, limits: ValidationLimits) -> list[str]:
    # Absolute paths: the child runs in a directory of its own.
    if limits.baseline is not None:
        limits = replace(limits, baseline=limits.baseline.resolve())
    return [
        sys.executable,
        "-m",
        "app.models.validate",
        "--child",
        str(path.resolve()),
        limits.to_json(),
    ]


def _child_dir() -> tempfile.TemporaryDirectory[str]:
    """An empty directory for the child to run in: nothing a relative path could name."""
    return tempfile.TemporaryDirectory(prefix="appliance-validate-")


def _child_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO_ROOT), env.get("PYTHONPATH", "")) if p)
    # One thread is all inference uses; BLAS pools would only add address space.
    env["OMP_NUM_THREADS"] = env["OPENBLAS_NUM_THREADS"] = "1"
    return env


def _verdict(returncode: int, out: bytes, err: bytes, limits: ValidationLimits) -> ValidationReport:
    text = out.decode("utf-8", "replace")
    marker = text.rfind(_CHILD_MARK)
    if marker >= 0:
        with contextlib.suppress(ValueError, KeyError, TypeError):
            return ValidationReport.from_dict(json.loads(text[marker + len(_CHILD_MARK) :]))
    tail = err.decode("utf-8", "replace").strip().splitlines()[-1:] or [""]
    if returncode in (-signal.SIGXCPU, -signal.SIGKILL):
        return _refused(f"CPU time limit: the check used more than {limits.cpu_s} s of CPU")
    if _out_of_memory(tail[0]) or returncode == -signal.SIGSEGV:
        return _refused(
            f"memory limit: the check failed within {limits.memory_bytes // MIB} MiB "
            f"(exit {returncode}: {tail[0][:200]})"
        )
    return _refused(f"the validator process failed (exit {returncode}): {tail[0][:300]}")


def _timeout(limits: ValidationLimits) -> ValidationReport:
    return _refused(f"wall-clock limit: validation took longer than {limits.wall_s:g} s")


def validate(path: Path | str, limits: ValidationLimits | None = None) -> ValidationReport:
    """Validate ``path`` in a sandboxed child process (blocking)."""
    limits = limits or ValidationLimits()
    path = Path(path)
    problem = size_problem(path, limits)
    if problem is not None:
        return _refused(problem)
    try:
        with _child_dir() as cwd:
            done = subprocess.run(
                _child_cmd(path, limits),
                capture_output=True,
                timeout=limits.wall_s,
                env=_child_env(),
                cwd=cwd,
                check=False,
            )
    except subprocess.TimeoutExpired:
        return _timeout(limits)
    return _verdict(done.returncode, done.stdout, done.stderr, limits)


async def validate_async(
    path: Path | str, limits: ValidationLimits | None = None
) -> ValidationReport:
    """:func:`validate` for the event loop: the child runs while the loop keeps serving."""
    limits = limits or ValidationLimits()
    path = Path(path)
    problem = size_problem(path, limits)
    if problem is not None:
        return _refused(problem)
    with _child_dir() as cwd:
        proc = await asyncio.create_subprocess_exec(
            *_child_cmd(path, limits),
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env=_child_env(),
            cwd=cwd,
        )
        try:
            out, err = await asyncio.wait_for(proc.communicate(), limits.wall_s)
        except TimeoutError:
            proc.kill()
            await proc.wait()
            return _timeout(limits)
    return _verdict(proc.returncode or 0, out, err, limits)


def format_report(report: ValidationReport, path: Path) -> str:
    """The human-readable verdict ``appliance model validate`` prints."""
    lines = [f"{path}: {'OK' if report.ok else 'REFUSED'}"]
    lines += [f"  problem: {p}" for p in report.problems]
    if report.model is not None:
        m = report.model
        lines.append(
            f"  model {m.get('model_version')} sha256 {m.get('sha256')}, "
            f"{len(m.get('features', []))} features x window {m.get('window')}"
        )
    if report.latency_us is not None:
        lines.append(
            f"  latency {report.latency_us} us (baseline {report.baseline_us} us, "
            f"budget {report.budget_us} us)"
        )
    lines += [f"  note: {n}" for n in report.notes]
    return "\n".join(lines)


def with_baseline(limits: ValidationLimits, baseline: Path | None) -> ValidationLimits:
    """``limits`` measuring latency against ``baseline`` (e.g. the store's copy of the default)."""
    return replace(limits, baseline=baseline)


def main(argv: Sequence[str] | None = None) -> int:
    """The child's entry point (``python -m app.models.validate --child FILE LIMITS``)."""
    ap = argparse.ArgumentParser(description="model validator child process")
    ap.add_argument("--child", action="store_true", required=True)
    ap.add_argument("path")
    ap.add_argument("limits")
    ns = ap.parse_args(argv)
    return _child_main(ns.path, ns.limits)


if __name__ == "__main__":
    # The child runs this module's functions under their import name (``app.models.validate``),
    # not as ``__main__``: one copy of the code, the one the parent and its tests also name.
    # (Mutation testing relies on it: a mutant is switched on by its module's import name.)
    from app.models.validate import main as _main

    raise SystemExit(_main())
