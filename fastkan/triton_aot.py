"""Compile every Triton kernel the layer can launch, ahead of time, for real CUDA targets; no GPU needed.

    python -m fastkan.triton_aot [--arch 80,90] [--jobs 2] [--cover all|pairs]

Triton's interpreter (``TRITON_INTERPRET=1``) runs kernel bodies as Python
and skips the compiler's checks (a non-constexpr global, a dot of the wrong
shape); this runs the real compiler down to a cubin with the ``ptxas`` that
ships in the Triton wheel, once per launchable combination: kernel, basis
kind, product precision, input dtype and autotune config. Run it with a fresh
``TRITON_CACHE_DIR``: a kernel cached by an earlier, laxer build is not
compiled again. Prints one line per failure (kernel, combination, the
compiler's message) and exits 1 if any.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import sys
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, astuple, dataclass

KERNELS = ("_forward", "_grad_weight", "_grad_input")
COVERS = ("all", "pairs")
#: a representative number of centres (G is a compile-time constant of every kernel)
NUM_GRIDS = 8
_PTR = {"float32": "*fp32", "bfloat16": "*bf16", "float16": "*fp16"}


@dataclass(frozen=True)
class Variant:
    kernel: str
    basis: str
    precision: str
    dtype: str
    config: int  # index into triton_spline.CONFIGS
    arch: int

    def describe(self) -> str:
        from .paths.triton_spline import CONFIGS

        blocks = ", ".join(f"{k}={v}" for k, v in CONFIGS[self.config].kwargs.items())
        return (
            f"{self.kernel} basis={self.basis} precision={self.precision} dtype={self.dtype} "
            f"config #{self.config} ({blocks}, num_warps={CONFIGS[self.config].num_warps}) sm_{self.arch}"
        )


def variants(archs=(80, 90), cover: str = "all") -> list[Variant]:
    """Every combination the layer can launch, per target architecture (``cover="all"``), or a
    pairwise cover of them (``cover="pairs"``): every value of each field beside every value of
    every other field at least once, in about 1/20 of the builds."""
    from .paths.triton_spline import CONFIGS, DTYPES, PRECISIONS, TRITON_BASES

    if cover not in COVERS:
        raise ValueError(f"cover must be one of {', '.join(COVERS)}, got {cover!r}")
    every = [
        Variant(*v) for v in itertools.product(KERNELS, TRITON_BASES, PRECISIONS, DTYPES, range(len(CONFIGS)), archs)
    ]
    return every if cover == "all" else _pairwise(every)


def pairs(v: Variant) -> set[tuple]:
    """The (field, value, field, value) pairs that ``v`` builds."""
    values = astuple(v)
    return {(i, values[i], j, values[j]) for i, j in itertools.combinations(range(len(values)), 2)}


def _pairwise(every: list[Variant]) -> list[Variant]:
    # Greedy: the first variant that builds the most pairs not built yet, until none is left.
    built = {v: pairs(v) for v in every}
    todo = set().union(*built.values())
    chosen = []
    while todo:
        best = max(every, key=lambda v: len(built[v] & todo))
        chosen.append(best)
        todo -= built[best]
    return chosen


def _signature(kernel: str, dtype: str) -> dict[str, str]:
    t = _PTR[dtype]
    ptrs = {
        "_forward": {"U": t, "C": t, "W": t, "OUT": t},
        "_grad_weight": {"U": t, "C": t, "GO": t, "GW": t},
        "_grad_input": {"U": t, "C": t, "GO": t, "W": t, "GU": "*fp32"},
    }[kernel]
    return {
        **ptrs,
        "N": "i32",
        "IN": "i32",
        "OUTD": "i32",
        "G": "constexpr",
        "INV_H": "*fp32",
        "KIND": "constexpr",
        "PRECISION": "constexpr",
        "BLOCK_N": "constexpr",
        "BLOCK_O": "constexpr",
        "BLOCK_K": "constexpr",
    }


def compile_variant(v: Variant, module=None) -> str | None:
    """None if ``v`` compiles to a cubin, else the compiler's message."""
    import triton
    from triton.backends.compiler import GPUTarget

    if module is None:
        from .paths import triton_spline as module
    fn = getattr(module, v.kernel)
    jit = getattr(fn, "fn", fn)  # the autotuner wraps the jitted function
    config = module.CONFIGS[v.config]
    constants = {"G": NUM_GRIDS, "KIND": module.TRITON_BASES[v.basis], "PRECISION": v.precision, **config.kwargs}
    names = jit.arg_names
    try:
        src = triton.compiler.ASTSource(
            fn=jit,
            signature=_signature(v.kernel, v.dtype),
            constexprs={(names.index(k),): c for k, c in constants.items()},
        )
        kernel = triton.compile(
            src,
            target=GPUTarget("cuda", v.arch, 32),
            options={"num_warps": config.num_warps, "num_stages": config.num_stages},
        )
        if not kernel.asm.get("cubin"):
            return "no cubin produced"
    except Exception as e:  # the compiler raises many types; every one is a failure to report
        # A CompilationError points at the call site; the reason (say, a NameError) is in its causes.
        chain = [e]
        while chain[-1].__cause__ is not None or chain[-1].__context__ is not None:
            chain.append(chain[-1].__cause__ or chain[-1].__context__)
        return " <- ".join(f"{type(c).__name__}: {str(c).strip()}" for c in reversed(chain))
    return None


def _compile_many(batch: list[Variant]) -> list[tuple[Variant, str | None]]:
    return [(v, compile_variant(v)) for v in batch]


def check(archs=(80, 90), jobs: int = 2, cover: str = "all") -> list[tuple[Variant, str | None]]:
    """Compile the variants of ``cover`` (in ``jobs`` processes); (variant, None or error) for each."""
    todo = variants(archs, cover)
    if jobs <= 1:
        return _compile_many(todo)
    with ProcessPoolExecutor(jobs) as pool:
        return [r for part in pool.map(_compile_many, [todo[i::jobs] for i in range(jobs)]) for r in part]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m fastkan.triton_aot", description=__doc__.split("\n")[0])
    p.add_argument("--arch", default="80,90", help="comma-separated CUDA compute capabilities (default 80,90)")
    p.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    p.add_argument(
        "--cover",
        choices=COVERS,
        default="all",
        help="all: every launchable combination (default); pairs: a pairwise cover of them",
    )
    p.add_argument("--json", action="store_true", help="print the results as JSON")
    args = p.parse_args(argv)
    if os.environ.get("TRITON_INTERPRET") == "1" or os.environ.get("TRITON_ALLOW_NON_CONSTEXPR_GLOBALS"):
        p.error("unset TRITON_INTERPRET and TRITON_ALLOW_NON_CONSTEXPR_GLOBALS: they hide compiler errors")
    try:
        archs = tuple(dict.fromkeys(int(a) for a in args.arch.split(",")))
    except ValueError:
        p.error(f"--arch takes numbers such as 80,90, got {args.arch!r}")
    results = check(archs, args.jobs, args.cover)
    failed = [(v, e) for v, e in results if e]
    if args.json:
        print(json.dumps([{**asdict(v), "error": e} for v, e in results]))
    else:
        for v, e in failed:
            print(f"FAILED {v.describe()}: {e.splitlines()[0] if e else ''}")
        print(
            f"{len(results) - len(failed)} of {len(results)} kernel builds compiled to cubin "
            f"(sm_{', sm_'.join(map(str, archs))})"
        )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
