"""How quiet and how sensitive is the gate? Reruns of unchanged code, planted slowdowns, a planted memory growth.

    python -m perf.noise [--reruns 5] [--threshold 0.1] [--out noise.json] [--keep DIR]
    python -m perf.noise --job default [--reruns 5] [--out noise-default.json] [--config tiny,mnist,batch-16]

Times the gate's quick slice (``[perf] slice`` in tox.ini) once as the
baseline and ``--reruns`` more times with the code unchanged; then as many
times in a temporary copy of the tree where FastKANLayer.forward is made
1.2x slower for the Gaussian basis and 1.5x slower for RSWAF (a busy wait;
nothing is committed). Each run is compared with the baseline by
``perf.compare``, plain and normalised by the MLP. A 10% growth of one
case's saved bytes is planted in each unchanged rerun's JSON (memory is
exact, so planting it in the file is the same as in the code).

``--job default`` times the default job's speed cases instead (``pytest perf``
with its fit, accuracy and physics cases left out: they compare exact metrics)
``--reruns + 1`` times (``--config``: other configurations than the default
ones), and plants a 1.2x slowdown of one ``mnist`` and one
``tiny`` case in each rerun's JSON (every round, with its ratios to the probes
and to the reference, 1.2x). Each rerun is compared with the first run twice:
on its rounds alone, and with the other reruns as the history of unchanged
code (``perf.stats.spread``), as a user's storage holds them.
"""

from __future__ import annotations

import argparse
import configparser
import dataclasses
import json
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from perf.stats.compare import REGRESSED, changes
from perf.storage.runs import load

ROOT = Path(__file__).resolve().parents[1]
SLOWDOWNS = {"gaussian": 1.2, "rswaf": 1.5}
MEMORY_CASE = "fastkan-gaussian/mnist/cpu/backward"
# The default job's cases planted 1.2x slower: a large and a small one of our default layer.
PLANTED = ("fastkan-gaussian/mnist/cpu/forward", "fastkan-gaussian/tiny/cpu/forward")
PLANTED_FACTOR = 1.2
DEFAULT_JOB = ["--perf-fit=none", "--perf-accuracy=none", "--perf-physics=none"]
SLOWDOWN = """
import time as _time

_plain_forward = FastKANLayer.forward
_SLOWER = {slowdowns!r}


def _slow_forward(self, x):
    start = _time.perf_counter()
    out = _plain_forward(self, x)
    spent = _time.perf_counter() - start
    until = _time.perf_counter() + (_SLOWER.get(self.basis.name, 1.0) - 1.0) * spent
    while _time.perf_counter() < until:
        pass
    return out


FastKANLayer.forward = _slow_forward
"""


def quick_slice() -> list[str]:
    ini = configparser.ConfigParser(interpolation=None)
    ini.read(ROOT / "tox.ini")
    return shlex.split(ini["perf"]["slice"])


def run_slice(tree: Path, out: Path, selection: list[str] | None = None) -> Path:
    cmd = [
        sys.executable,
        "-m",
        "pytest",
        "perf",
        "-q",
        "-p",
        "no:cacheprovider",
        "--perf-device=cpu",
        *(quick_slice() if selection is None else selection),
        f"--benchmark-json={out}",
    ]
    env = {**os.environ, "PYTHONPATH": str(tree)}
    subprocess.run(cmd, cwd=tree, env=env, check=True, stdout=subprocess.DEVNULL)
    return out


def plant_memory(path: Path, case: str, factor: float = 1.1) -> Path:
    data = json.loads(path.read_text())
    for bench in data["benchmarks"]:
        if bench.get("param") == case:
            bench["extra_info"]["saved_bytes"] = int(bench["extra_info"]["saved_bytes"] * factor)
    out = path.with_name(path.stem + "-memory.json")
    out.write_text(json.dumps(data))
    return out


def plant_slowdown(path: Path, cases: tuple[str, ...], factor: float) -> Path:
    """A copy of a run whose ``cases`` took ``factor`` times as long in every round."""
    data = json.loads(path.read_text())
    for bench in data["benchmarks"]:
        if bench.get("param") in cases:
            stats, info = bench["stats"], bench["extra_info"]
            stats["data"] = [t * factor for t in stats["data"]]
            for key in ("median", "min", "max", "mean"):
                if isinstance(stats.get(key), (int, float)):
                    stats[key] *= factor
            for key in ("probe_ratios", "small_probe_ratios", "reference_ratios"):
                if info.get(key):
                    info[key] = [r * factor for r in info[key]]
            if info.get("reference_ratio"):
                info["reference_ratio"] *= factor
    out = path.with_name(path.stem + "-slower.json")
    out.write_text(json.dumps(data))
    return out


def judge(
    base, runs, threshold: float, normalize: str | None, planted: list[str] | None = None, histories=None
) -> dict:
    """Which runs flag anything (or which planted cases they flag), and the widest time interval seen;
    ``histories``: per run, the saved runs of unchanged code that widen its intervals."""
    flagged, widest, caught = [], None, []
    for i, run in enumerate(runs):
        found = changes(base, run, threshold, normalize, history=histories[i] if histories else None)
        flagged.append(sorted({f"{c.case} ({c.what})" for c in found if c.verdict == REGRESSED}))
        if planted is not None:
            caught.append({c.case: c.describe() for c in found if c.case in planted and c.what == "time"})
        for c in found:
            if c.what == "time" and c.low is not None and (widest is None or c.high - c.low > widest[2] - widest[1]):
                widest = (c.case, c.low, c.high, c.describe())
    return {"flagged": flagged, "widest": widest, "planted": caught}


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m perf.noise", description=__doc__.split("\n")[0])
    p.add_argument("--reruns", type=int, default=5)
    p.add_argument("--threshold", type=float, default=0.1)
    p.add_argument("--out", type=Path, default=None, help="also write the results as JSON here")
    p.add_argument("--keep", type=Path, default=None, help="copy the runs' JSON files into this folder")
    p.add_argument("--job", choices=("slice", "default"), default="slice", help="what to time (default: the slice)")
    p.add_argument(
        "--runs-from",
        type=Path,
        default=None,
        metavar="DIR",
        help="--job default: judge the runs kept in DIR by an earlier --keep (run0.json first) instead of timing",
    )
    p.add_argument(
        "--config",
        default=None,
        help="--job default: comma-separated configurations to time (default: the default job's)",
    )
    return p


def _tree(tree: Path) -> Path:
    """A copy at ``tree`` of the tree as it is now: edits made while the runs go on change nothing."""
    files = subprocess.run(
        ["git", "ls-files", "-co", "--exclude-standard"], cwd=ROOT, check=True, capture_output=True, text=True
    ).stdout.split()
    for f in files:
        (tree / f).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / f, tree / f)
    return tree


def default_job(args) -> dict:
    """``--job default``: reruns of the default job's speed cases, judged with and without their history."""
    selection = DEFAULT_JOB + ([f"--perf-config={args.config}"] if args.config else [])
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        if args.runs_from:
            kept = sorted(args.runs_from.glob("run*.json"), key=lambda p: int(p.stem.removeprefix("run")))
            if len(kept) < 3:
                raise SystemExit(f"perf.noise: {args.runs_from} holds {len(kept)} runs (run0.json ...); need 3 or more")
            paths = [Path(shutil.copy2(p, tmp / p.name)) for p in kept]
            args.reruns = len(paths) - 1
        else:
            tree = _tree(tmp / "same")
            paths = [run_slice(tree, tmp / f"run{i}.json", selection) for i in range(args.reruns + 1)]
        slower = [plant_slowdown(p, PLANTED, PLANTED_FACTOR) for p in paths[1:]]
        if args.keep:
            args.keep.mkdir(parents=True, exist_ok=True)
            for f in paths:
                shutil.copy2(f, args.keep / f.name)
        runs = [load(p) for p in paths]
        slow_runs = [load(p) for p in slower]
    # Every run of one code: the same commit and a clean tree, as the spread needs them.
    same = [dataclasses.replace(r, commit="noise", dirty=False) for r in runs]
    base, reruns = same[0], same[1:]
    slow_runs = [dataclasses.replace(r, commit="noise", dirty=False) for r in slow_runs]
    others = [[r for j, r in enumerate(reruns) if j != i] for i in range(len(reruns))]
    result = {"job": "default", "selection": selection, "threshold": args.threshold, "reruns": args.reruns}
    result["planted"] = {"cases": list(PLANTED), "factor": PLANTED_FACTOR}
    result["cases"] = len(base.records)
    result["modes"] = {}
    for name, norm in {"plain": None, "normalised by mlp": "mlp"}.items():
        for with_history in (False, True):
            histories = others if with_history else None
            same_code = judge(base, reruns, args.threshold, norm, histories=histories)
            slow = judge(base, slow_runs, args.threshold, norm, list(PLANTED), histories)
            result["modes"][f"{name}{', with history' if with_history else ''}"] = {
                "false_alarm_runs": sum(1 for f in same_code["flagged"] if f),
                "false_alarm_cases": sorted({c for f in same_code["flagged"] for c in f}),
                "widest_interval_unchanged": same_code["widest"],
                "caught": {case: sum(1 for f in slow["flagged"] if f"{case} (time)" in f) for case in PLANTED},
                "planted_changes": slow["planted"],
            }
    print(
        f"default job's speed cases ({result['cases']} measurements a run); threshold {args.threshold:.0%}; "
        f"{args.reruns} reruns compared with the first"
    )
    for name, r in result["modes"].items():
        print(
            f"{name}: unchanged code flagged in {r['false_alarm_runs']}/{args.reruns} reruns"
            f"{' (' + ', '.join(r['false_alarm_cases'][:6]) + ')' if r['false_alarm_cases'] else ''}"
        )
        for case, n in r["caught"].items():
            print(
                f"  planted {PLANTED_FACTOR}x in {case}: flagged in {n}/{args.reruns}: "
                + "; ".join(run.get(case, "n/a") for run in r["planted_changes"])
            )
    return result


def main(argv=None) -> int:
    args = parser().parse_args(argv)
    if args.job == "default":
        result = default_job(args)
        if args.out:
            args.out.write_text(json.dumps(result, indent=2))
        return 0
    modes = {"plain": None, "normalised by mlp": "mlp"}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        same_tree, slow_tree = _tree(tmp / "same"), _tree(tmp / "slow")
        with open(slow_tree / "fastkan" / "layer.py", "a") as fh:
            fh.write(SLOWDOWN.format(slowdowns=SLOWDOWNS))
        base = run_slice(same_tree, tmp / "base.json")
        reruns = [run_slice(same_tree, tmp / f"rerun{i}.json") for i in range(args.reruns)]
        slows = [run_slice(slow_tree, tmp / f"slow{i}.json") for i in range(args.reruns)]
        grown = [plant_memory(r, MEMORY_CASE) for r in reruns]
        if args.keep:
            args.keep.mkdir(parents=True, exist_ok=True)
            for f in (base, *reruns, *slows):
                shutil.copy2(f, args.keep / f.name)
        base_run = load(base)
        rerun_runs, slow_runs, grown_runs = (
            [load(r) for r in reruns],
            [load(r) for r in slows],
            [load(r) for r in grown],
        )
        planted = sorted(
            c
            for c in base_run.records
            if c.endswith("/forward") and c.split("/")[0] in {f"fastkan-{b}" for b in SLOWDOWNS}
        )
        result = {
            "threshold": args.threshold,
            "reruns": args.reruns,
            "slice": quick_slice(),
            "slowdowns": SLOWDOWNS,
            "memory_case": MEMORY_CASE,
            "modes": {},
        }
        for name, norm in modes.items():
            same = judge(base_run, rerun_runs, args.threshold, norm)
            slow = judge(base_run, slow_runs, args.threshold, norm, planted)
            mem = judge(base_run, grown_runs, args.threshold, norm)
            result["modes"][name] = {
                "false_alarm_runs": sum(1 for f in same["flagged"] if f),
                "false_alarm_cases": sorted({c for f in same["flagged"] for c in f}),
                "widest_interval_unchanged": same["widest"],
                "caught": {case: sum(1 for f in slow["flagged"] if f"{case} (time)" in f) for case in planted},
                "planted_changes": slow["planted"],
                "memory_caught": sum(1 for f in mem["flagged"] if f"{MEMORY_CASE} (memory)" in f),
            }
    print(f"quick slice: {' '.join(result['slice'])}; threshold {args.threshold:.0%}; {args.reruns} runs each")
    for name, r in result["modes"].items():
        print(
            f"{name}: unchanged code flagged in {r['false_alarm_runs']}/{args.reruns} reruns"
            f"{' (' + ', '.join(r['false_alarm_cases']) + ')' if r['false_alarm_cases'] else ''}; "
            + (f"widest interval {w[0]} {w[3]}" if (w := r["widest_interval_unchanged"]) else "widest interval n/a")
        )
        for case, n in r["caught"].items():
            print(
                f"  planted {SLOWDOWNS[case.split('/')[0].removeprefix('fastkan-')]}x in {case}: "
                f"flagged in {n}/{args.reruns}: " + "; ".join(run.get(case, "n/a") for run in r["planted_changes"])
            )
        print(f"  planted +10% saved bytes in {MEMORY_CASE}: flagged in {r['memory_caught']}/{args.reruns}")
    if args.out:
        args.out.write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
