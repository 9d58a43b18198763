"""Saved benchmark runs: finding them, reading them, checking them."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

from perf.storage import schema

DEFAULT_STORAGE = Path(".benchmarks")
_RUN_FILE = re.compile(r"^\d{4}_.*\.json$")


class ReportError(Exception):
    """A problem with the input of a report: one line, exit code 2."""


@dataclass(frozen=True)
class Record:
    """One measured case of a run."""

    id: str
    model: str
    config: str
    device: str
    pass_: str
    dtype: str
    mode: str
    median_s: float
    info: dict
    rounds: tuple[float, ...] | None = None  # every round's time, where saved (--benchmark-save-data)

    @property
    def group(self) -> tuple[str, str, str, str]:
        """What a table groups cases by: configuration, device, dtype, mode."""
        return self.config, self.device, self.dtype, self.mode

    @property
    def kind(self) -> str:
        """speed, fit or accuracy (perf.storage.schema)."""
        return schema.kind_of(self.info)

    @property
    def model_group(self) -> str:
        """fastkan, reference, baseline, peer or user (perf.matrix.models)."""
        return schema.group_of(self.model, self.info)

    @property
    def memory(self) -> float | None:
        """Bytes gated by comparisons: the exact saved-for-backward bytes on CPU, the CUDA peak on GPU."""
        key = "cuda_peak_bytes" if self.device == "cuda" else "saved_bytes"
        return self.info.get(key)

    def ratio_to(self, model: str) -> float | None:
        """This case's time over ``model``'s, timed round by round in the case (``--perf-reference``), else None."""
        return self.info.get("reference_ratio") if self.info.get("reference_model") == model else None


@dataclass(frozen=True)
class Run:
    path: Path
    machine_info: dict
    records: dict[str, Record]
    datetime: str
    commit: str | None = None  # pytest-benchmark's commit_info: the commit timed, and whether the tree was dirty
    dirty: bool = False

    def describe(self) -> str:
        mi = self.machine_info
        cpu = (mi.get("cpu") or {}).get("brand_raw") or mi.get("processor") or mi.get("machine") or "unknown CPU"
        extra = "".join(f", {v}" for v in (mi.get("torch_cpu_capability"), mi.get("cuda_device")) if v)
        parts = [
            f"machine: {mi.get('node', '?')} ({cpu}{extra})",
            f"torch {mi.get('torch', '?')}",
            f"{mi.get('torch_threads', '?')} thread(s)",
            f"python {mi.get('python_version', '?')}",
        ]
        return f"{self.path} ({self.datetime}): " + ", ".join(parts)


def run_files(folder: Path) -> list[Path]:
    return [p for p in folder.rglob("*.json") if _RUN_FILE.match(p.name)]


def latest(files: list[Path]) -> Path:
    return max(files, key=lambda p: (p.stat().st_mtime, p.name))


def resolve(spec: str | None, storage: Path = DEFAULT_STORAGE) -> Path:
    """The JSON file meant by ``spec``: a file, a storage folder (its latest run), or a run number/id in ``storage``."""
    if spec is None:
        files = run_files(storage) if storage.is_dir() else []
        if not files:
            raise ReportError(f"{storage}: no saved runs (run `pytest perf --benchmark-autosave` first)")
        return latest(files)
    path = Path(spec)
    if path.is_file():
        return path
    if path.is_dir():
        files = run_files(path)
        if not files:
            raise ReportError(f"{path}: folder holds no saved benchmark runs")
        return latest(files)
    if path.suffix == ".json" or "/" in spec:
        raise ReportError(f"{path}: no such file or folder")
    prefix = spec.zfill(4) if spec.isdigit() else spec
    files = run_files(storage) if storage.is_dir() else []
    matches = [p for p in files if p.name.startswith(prefix)]
    if not matches:
        raise ReportError(f"{spec}: no such run in {storage}")
    return latest(matches)


def load(path: Path) -> Run:
    """Read and check one saved run."""
    try:
        text = path.read_text(encoding="utf8")
    except OSError as e:
        raise ReportError(f"{path}: cannot read ({e.strerror or e})") from None
    if not text.strip():
        raise ReportError(f"{path}: empty file")
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise ReportError(f"{path}: not valid JSON, truncated or damaged ({e.msg} at line {e.lineno})") from None
    if not isinstance(data, dict) or not isinstance(data.get("benchmarks"), list) or "machine_info" not in data:
        raise ReportError(f"{path}: not a pytest-benchmark JSON file (no 'benchmarks' list and 'machine_info')")
    records = {}
    for bench in data["benchmarks"]:
        info = bench.get("extra_info") or {} if isinstance(bench, dict) else {}
        stats = bench.get("stats") if isinstance(bench, dict) else None
        if not all(k in info for k in ("model", "config", "device", "pass")):
            continue  # a benchmark of something other than the fastkan suite
        problem = schema.check(info)
        if problem:
            raise ReportError(f"{path}: benchmark {bench.get('name', '?')!r}: {problem}")
        if not isinstance(stats, dict) or not isinstance(stats.get("median"), (int, float)):
            raise ReportError(f"{path}: benchmark {bench.get('name', '?')!r} has no median time")
        rec = Record(
            id=bench.get("param") or bench.get("name"),
            model=info["model"],
            config=info["config"],
            device=info["device"],
            pass_=info["pass"],
            dtype=info.get("dtype", "float32"),
            mode=info.get("mode", "eager"),
            median_s=float(stats["median"]),
            info=info,
            rounds=tuple(stats["data"]) if isinstance(stats.get("data"), list) and stats["data"] else None,
        )
        records[rec.id] = rec
    if not records:
        raise ReportError(f"{path}: holds no fastkan perf cases (was it made by `pytest perf`?)")
    commit = data.get("commit_info") if isinstance(data.get("commit_info"), dict) else {}
    return Run(
        path,
        data["machine_info"] or {},
        records,
        data.get("datetime", "?"),
        commit.get("id") if isinstance(commit.get("id"), str) else None,
        bool(commit.get("dirty")),
    )


def history(specs: list[Path], exclude: tuple[Path, ...] = ()) -> list[Run]:
    """The saved runs in ``specs`` (files, or folders searched for runs), but those at ``exclude``.
    A named file must be a run; a file found in a folder that is not one is left out."""
    skip = {p.resolve() for p in exclude}
    runs = []
    for spec in specs:
        if spec.is_file():
            files, named = [spec], True
        elif spec.is_dir():
            files, named = sorted(run_files(spec)), False
        else:
            raise ReportError(f"{spec}: no such file or folder")
        for f in files:
            if f.resolve() in skip:
                continue
            try:
                runs.append(load(f))
            except ReportError:
                if named:
                    raise
    return runs
