"""How quiet and how sensitive is the CPU gate? Reruns of unchanged code, and a planted slowdown.

    python -m perf.noise [--reruns 5] [--threshold 0.25] [--out noise.json]

Times the gate's quick slice (``[perf] slice`` in tox.ini) once as the
baseline and ``--reruns`` more times, and counts the false alarms of the
plain and of the MLP-normalised comparison. Then it copies the working tree
to a temporary folder, makes FastKANLayer.forward 1.5x slower there (a busy
wait of half its own duration; nothing is committed) and counts which
FastKAN forward cases each comparison catches.
"""

from __future__ import annotations

import argparse
import configparser
import json
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from .report import changes
from .runs import load

ROOT = Path(__file__).resolve().parents[1]
SLOWDOWN = '''
import time as _time

_plain_forward = FastKANLayer.forward


def _slow_forward(self, x):
    start = _time.perf_counter()
    out = _plain_forward(self, x)
    spent = _time.perf_counter() - start
    until = _time.perf_counter() + 0.5 * spent
    while _time.perf_counter() < until:
        pass
    return out


FastKANLayer.forward = _slow_forward
'''


def quick_slice() -> list[str]:
    ini = configparser.ConfigParser(interpolation=None)
    ini.read(ROOT / "tox.ini")
    return shlex.split(ini["perf"]["slice"])


def run_slice(tree: Path, out: Path) -> Path:
    cmd = [sys.executable, "-m", "pytest", "perf", "-q", "-p", "no:cacheprovider", "--perf-device=cpu",
           *quick_slice(), f"--benchmark-json={out}"]
    env = {**os.environ, "PYTHONPATH": str(tree)}
    subprocess.run(cmd, cwd=tree, env=env, check=True, stdout=subprocess.DEVNULL)
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m perf.noise", description=__doc__.split("\n")[0])
    p.add_argument("--reruns", type=int, default=5)
    p.add_argument("--threshold", type=float, default=0.25)
    p.add_argument("--out", type=Path, default=None, help="also write the results as JSON here")
    p.add_argument("--keep", type=Path, default=None, help="copy the runs' JSON files into this folder")
    args = p.parse_args(argv)
    modes = {"plain": None, "normalised by mlp": "mlp"}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        base = run_slice(ROOT, tmp / "base.json")
        reruns = [run_slice(ROOT, tmp / f"rerun{i}.json") for i in range(args.reruns)]
        slow_tree = tmp / "slow"
        files = subprocess.run(["git", "ls-files", "-co", "--exclude-standard"], cwd=ROOT, check=True,
                               capture_output=True, text=True).stdout.split()
        for f in files:
            (slow_tree / f).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / f, slow_tree / f)
        with open(slow_tree / "fastkan" / "layer.py", "a") as fh:
            fh.write(SLOWDOWN)
        slow = run_slice(slow_tree, tmp / "slow.json")
        if args.keep:
            args.keep.mkdir(parents=True, exist_ok=True)
            for f in (base, *reruns, slow):
                shutil.copy2(f, args.keep / f.name)
        base_run, slow_run, rerun_runs = load(base), load(slow), [load(r) for r in reruns]
        planted = sorted(c for c in slow_run.records if c.startswith("fastkan-") and c.endswith("/forward"))
        result = {"threshold": args.threshold, "reruns": args.reruns, "slice": quick_slice(), "modes": {}}
        for name, norm in modes.items():
            rerun_changes = [changes(base_run, r, args.threshold, norm) for r in rerun_runs]
            slow_changes = changes(base_run, slow_run, args.threshold, norm)
            alarms = [[c.case for c in found if c.regressed] for found in rerun_changes]
            caught = {c.case for c in slow_changes if c.regressed}
            increases: dict[str, float] = {}
            for found in rerun_changes:
                for c in found:
                    increases[c.case] = max(increases.get(c.case, 0.0), c.time or 0.0)
            result["modes"][name] = {
                "false_alarm_runs": sum(1 for a in alarms if a),
                "false_alarm_cases": sorted({c for a in alarms for c in a}),
                "planted_cases": planted,
                "caught": [c for c in planted if c in caught],
                "planted_changes": {c.case: c.time for c in slow_changes if c.case in planted},
                "largest_rerun_increase": increases,
            }
    print(f"quick slice: {' '.join(result['slice'])}; threshold {args.threshold:.0%}; {args.reruns} reruns")
    for name, r in result["modes"].items():
        print(f"{name}: false alarms in {r['false_alarm_runs']}/{args.reruns} reruns"
              f"{' (' + ', '.join(r['false_alarm_cases']) + ')' if r['false_alarm_cases'] else ''}; "
              f"1.5x forward slowdown caught in {len(r['caught'])}/{len(r['planted_cases'])} FastKAN forward cases")
        print("  planted:", ", ".join(f"{c} {v:+.0%}" for c, v in r["planted_changes"].items() if v is not None))
        print("  largest increase in a rerun:", ", ".join(f"{c} {v:+.0%}" for c, v in r["largest_rerun_increase"].items()))
    if args.out:
        args.out.write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
