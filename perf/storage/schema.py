"""What each case of a saved run records in pytest-benchmark's ``extra_info``: the one definition.

Three kinds of case, told apart by ``kind`` (runs of schema 1, before this field, by their
configuration: ``acc-*`` accuracy, pass ``fit`` fit, else speed):

- ``speed``: a pass of a model on a configuration, timed in rounds;
- ``fit``: a model trained on a seeded 2-D regression task (test RMSE);
- ``accuracy``: a model trained on a real or Feynman task at equal steps and equal time;
- ``physics``: a model trained on a PDE (its loss holds second derivatives), relative L2 error.

Writers build their ``extra_info`` with ``record(kind, **fields)``, which refuses a field this module
does not define; readers check ``check(info)``, which refuses a newer schema and a case without its
kind's required fields.
"""

from __future__ import annotations

SCHEMA_VERSION = 2
KINDS = ("speed", "fit", "accuracy", "physics")

#: every kind: what was measured, where
COMMON = ("schema", "kind", "model", "group", "basis", "config", "device", "pass", "dtype", "mode", "threads")
#: the model's correctness column (perf.measure.gradcheck)
GRADIENTS = ("grad_rel_err", "grad_ok", "grad_worst_tensor", "grad_note")
#: a model trained on a task at equal steps and at equal time (perf.matrix.accuracy, perf.matrix.physics)
TRAINED = (
    "task",
    "params",
    "lr",
    "steps",
    "seeds",
    "time_per_step_s",
    "budget_s",
    "equal_time_steps",
    "equal_steps",
    "equal_steps_mean",
    "equal_steps_std",
    "equal_time",
    "equal_time_mean",
    "equal_time_std",
)
FIELDS: dict[str, tuple[str, ...]] = {
    "speed": COMMON
    + GRADIENTS
    + (
        "batch",
        "layers",
        "params",
        "trainable_params",
        "compile_seconds",
        "peer_version",
        "compiles_itself",
        # the evaluation path of each FastKAN layer in the pass (fastkan.explain), eager cases of our models
        "paths",
        # memory, from an untimed pass (perf.measure.memory)
        "saved_bytes",
        "cpu_peak_bytes",
        "peak_rss_delta",
        "cuda_peak_bytes",
        # in how many windows spread over the run the rounds were timed (--perf-windows), and the
        # rounds of each, in the order they ran (the rounds' data follows it)
        "windows",
        "window_rounds",
        # the machine probes before every round (perf.measure.probe)
        "probe_version",
        "probe_median_s",
        "probe_ratios",
        "small_probe_version",
        "small_probe_median_s",
        "small_probe_ratios",
        # the reference model timed before every round (--perf-reference)
        "reference_model",
        "reference_median_s",
        "reference_ratio",
        "reference_ratios",
    ),
    "fit": COMMON
    + (
        "hidden",
        "fit_settings",
        "task",
        "rmse",
        "rmse_mean",
        "rmse_std",
        "params",
        "steps",
        "seeds",
        # how well the basis reproduces the cubic B-splines (fastkan.approx)
        "approx_rel_l2",
        "approx_max",
        "best_width",
        "approx_rel_l2_best",
        "approx_max_best",
    ),
    "accuracy": COMMON
    + TRAINED
    + ("accuracy_settings", "metric", "higher_is_better", "width", "layers", "lr_grid", "val_by_lr", "score_mean"),
    "physics": COMMON
    + TRAINED
    + (
        "physics_settings",
        # the second-derivative column (perf.matrix.physics.check_second_derivative)
        "grad2_rel_err",
        "grad2_ok",
        "grad2_note",
        "trained",
    ),
}
REQUIRED: dict[str, tuple[str, ...]] = {
    "speed": ("model", "config", "device", "pass"),
    "fit": ("model", "config", "task", "rmse_mean"),
    "accuracy": ("model", "config", "task", "metric", "higher_is_better", "equal_time_mean", "equal_steps_mean"),
    "physics": ("model", "config", "task", "grad2_ok", "trained"),
}


class SchemaError(ValueError):
    """A case's fields do not match the schema."""


def record(kind: str, **fields) -> dict:
    """``extra_info`` of one case: the fields given, stamped with the schema version and kind."""
    if kind not in KINDS:
        raise SchemaError(f"unknown case kind {kind!r}; valid: {', '.join(KINDS)}")
    unknown = sorted(set(fields) - set(FIELDS[kind]))
    if unknown:
        raise SchemaError(f"{kind} cases define no field {', '.join(unknown)} (perf/storage/schema.py)")
    return {"schema": SCHEMA_VERSION, "kind": kind, **fields}


def kind_of(info: dict) -> str:
    """The case's kind; schema 1 (no ``kind``) by its configuration and pass."""
    if "kind" in info:
        return info["kind"]
    if str(info.get("config", "")).startswith("pde-"):
        return "physics"
    if str(info.get("config", "")).startswith("acc-"):
        return "accuracy"
    return "fit" if info.get("pass") == "fit" else "speed"


def check(info: dict) -> str | None:
    """None if ``info`` is a readable case of this suite, else why not."""
    version = info.get("schema", 1)
    if not isinstance(version, int) or version > SCHEMA_VERSION:
        return f"schema {version!r} is newer than this reader's {SCHEMA_VERSION}: update fastkan's perf/"
    kind = kind_of(info)
    if kind not in KINDS:
        return f"unknown case kind {kind!r}"
    missing = [k for k in REQUIRED[kind] if k not in info]
    return f"a {kind} case without {', '.join(missing)}" if missing else None


def group_of(model: str, info: dict) -> str:
    """The model's group: as saved (schema 2), else the registry's, else ``user`` (a model not in the registry)."""
    if info.get("group"):
        return info["group"]
    from perf.matrix.models import models  # only for runs saved before the field: imports torch

    spec = models().get(model)
    return spec.group if spec else "user"
