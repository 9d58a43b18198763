"""The saved runs' schema: one definition of each kind's fields, old runs still read, newer ones refused."""

import json
from pathlib import Path

import pytest

from perf.report import REPORTS, main
from perf.storage.runs import load
from perf.storage.schema import SCHEMA_VERSION, SchemaError, record

# Made by the suite before the schema existed (schema 1): tiny, fastkan-gaussian and mlp, every kind of case.
SCHEMA_1 = Path(__file__).parent / "data" / "run-schema1.json"


def test_a_run_saved_before_the_schema_is_read_by_every_report(capsys):
    run = load(SCHEMA_1)
    assert {r.kind for r in run.records.values()} == {"speed", "fit", "accuracy"}
    assert {r.model: r.model_group for r in run.records.values()} == {"fastkan-gaussian": "fastkan", "mlp": "baseline"}
    assert run.records["mlp/acc-digits/cpu/fit"].kind == "accuracy"  # pass 'fit', as the fit cases
    for report in REPORTS:
        args = (
            [report, str(SCHEMA_1), str(SCHEMA_1)] if report in ("goals", "repeatability") else [report, str(SCHEMA_1)]
        )
        assert main(args) == (2 if report == "physics" else 0), report  # no physics cases before schema 2
    assert capsys.readouterr().err.strip().splitlines() == [
        f"perf.report: error: {SCHEMA_1}: no physics cases (run `pytest perf --perf-physics=quick` or full)"
    ]


def test_a_newer_schema_is_refused_with_its_version(tmp_path, capsys):
    data = json.loads(SCHEMA_1.read_text())
    data["benchmarks"][0]["extra_info"]["schema"] = SCHEMA_VERSION + 1
    path = tmp_path / "newer.json"
    path.write_text(json.dumps(data))
    assert main(["leaderboard", str(path)]) == 2
    assert f"schema {SCHEMA_VERSION + 1} is newer" in capsys.readouterr().err


def test_a_case_without_its_kinds_fields_is_refused(tmp_path, capsys):
    data = json.loads(SCHEMA_1.read_text())
    fit = next(b for b in data["benchmarks"] if "/fit-" in b["param"])
    del fit["extra_info"]["rmse_mean"]
    path = tmp_path / "broken.json"
    path.write_text(json.dumps(data))
    assert main(["bases", str(path)]) == 2
    assert "a fit case without rmse_mean" in capsys.readouterr().err


def test_a_writer_cannot_record_a_field_the_schema_does_not_define():
    assert record("fit", model="m", rmse_mean=0.1) == {
        "schema": SCHEMA_VERSION,
        "kind": "fit",
        "model": "m",
        "rmse_mean": 0.1,
    }
    with pytest.raises(SchemaError, match="speed cases define no field rmse_mean"):
        record("speed", model="m", rmse_mean=0.1)
    with pytest.raises(SchemaError, match="unknown case kind 'chemistry'"):
        record("chemistry", model="m")
