"""The Triton kernels the layer can launch compile for real GPUs (sm_80, sm_90), on this CPU-only machine.

Triton's own compiler and the ``ptxas`` bundled in its wheel build each
kernel down to a cubin for the A100 (sm_80) and H100/H200 (sm_90) targets,
which every Triton 3.x release supports; no GPU is needed. The tests build a
pairwise cover of the launchable combinations (13 builds, about 10 s); every
one of them (324 builds, about 130 s on 2 cores) is built by
``python -m fastkan.triton_aot``, which ``.ci/run`` and the tests workflow run
after the tests. Each run uses a
fresh ``TRITON_CACHE_DIR`` and neither ``TRITON_INTERPRET`` nor
``TRITON_ALLOW_NON_CONSTEXPR_GLOBALS``, so no earlier or laxer build hides a
failure.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

triton = pytest.importorskip("triton", reason="Triton is not installed (pip install triton)")

ROOT = Path(__file__).resolve().parents[1]


def _run(args, tmp_path, code=None):
    env = {k: v for k, v in os.environ.items() if k not in ("TRITON_INTERPRET", "TRITON_ALLOW_NON_CONSTEXPR_GLOBALS")}
    env["TRITON_CACHE_DIR"] = str(tmp_path / "triton-cache")
    cmd = [sys.executable, "-c", code] if code else [sys.executable, "-m", "fastkan.triton_aot", *args]
    return subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=ROOT, timeout=900)


def test_a_pairwise_cover_of_the_kernels_compiles_for_sm80_and_sm90(tmp_path):
    from fastkan.triton_aot import variants

    proc = _run(["--json", "--arch", "80,90", "--cover", "pairs", "--jobs", str(os.cpu_count() or 1)], tmp_path)
    assert proc.stdout.strip(), proc.stderr[-3000:]
    results = json.loads(proc.stdout.strip().splitlines()[-1])
    assert len(results) == len(variants(cover="pairs"))
    failed = [r for r in results if r["error"]]
    assert not failed, f"Triton {triton.__version__}: " + "\n".join(
        f"{r['kernel']} basis={r['basis']} precision={r['precision']} dtype={r['dtype']} "
        f"config={r['config']} sm_{r['arch']}: {r['error'][:500]}"
        for r in failed
    )
    assert proc.returncode == 0


def test_the_pairwise_cover_builds_every_pair_of_the_full_product():
    from fastkan.paths.triton_spline import CONFIGS, DTYPES, PRECISIONS, TRITON_BASES
    from fastkan.triton_aot import pairs, variants

    every = variants()
    # 3 kernels x every basis kind x ieee/tf32 x float32/bfloat16/float16 x every autotune config x 2 targets.
    assert len(every) == len(set(every)) == 3 * len(TRITON_BASES) * len(PRECISIONS) * len(DTYPES) * len(CONFIGS) * 2
    cover = variants(cover="pairs")
    assert set(cover) <= set(every) and len(cover) < len(every) // 10
    assert set().union(*map(pairs, cover)) == set().union(*map(pairs, every))
    with pytest.raises(ValueError, match="cover must be one of all, pairs, got 'some'"):
        variants(cover="some")


PLANTED = r"""
import importlib.util, json, sys
from pathlib import Path
src = Path("fastkan/paths/triton_spline.py").read_text()
old = "_EXP_CAP = tl.constexpr(_EXP_CAP_VALUE)"
assert old in src
planted = src.replace(old, "_EXP_CAP = float(_EXP_CAP_VALUE)").replace("from ..bases", "from fastkan.bases")
planted = planted.replace("from . import higher", "from fastkan.paths import higher")
path = Path(sys.argv[1]) / "planted_spline.py"
path.write_text(planted)
spec = importlib.util.spec_from_file_location("planted_spline", path)
module = importlib.util.module_from_spec(spec)
spec.loader.exec_module(module)
from fastkan.triton_aot import Variant, compile_variant
v = Variant("_forward", "gaussian", "ieee", "float32", 0, 90)
print(json.dumps({"error": compile_variant(v, module), "describe": v.describe(),
                  "unplanted": compile_variant(v)}))
"""


def test_a_planted_non_constexpr_global_fails_the_check(tmp_path):
    proc = _run([], tmp_path, code=PLANTED.replace("sys.argv[1]", repr(str(tmp_path))))
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["unplanted"] is None
    assert out["error"] and "_EXP_CAP" in out["error"] and "constexpr" in out["error"], out["error"]
    assert out["describe"].startswith("_forward basis=gaussian precision=ieee dtype=float32 config #0")


def test_the_command_line_reports_failures_and_refuses_the_escape_hatch(monkeypatch, capsys):
    from fastkan.triton_aot import main

    monkeypatch.setenv("TRITON_ALLOW_NON_CONSTEXPR_GLOBALS", "1")
    with pytest.raises(SystemExit) as exit_:
        main(["--arch", "90"])
    assert exit_.value.code == 2 and "TRITON_ALLOW_NON_CONSTEXPR_GLOBALS" in capsys.readouterr().err
    monkeypatch.delenv("TRITON_ALLOW_NON_CONSTEXPR_GLOBALS")
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    with pytest.raises(SystemExit) as exit_:
        main(["--arch", "sm90"])
    assert exit_.value.code == 2 and "--arch takes numbers" in capsys.readouterr().err
