"""benchmarks/bench_compile.py turns whatever a child process reported (a full result, a partial
one, a failure) into rows and a printed table without crashing, and benchmarks/report.py draws
those rows; no compilation runs here (the script itself is run by the coordinator)."""
import json
import sys
from pathlib import Path

import matplotlib
import pytest

matplotlib.use("Agg")
BENCH = Path(__file__).resolve().parent.parent / "benchmarks"
sys.path.insert(0, str(BENCH))

import bench_compile as bc  # noqa: E402
import harness  # noqa: E402
import report  # noqa: E402

FULL_RESULT = {"shape": "x (4, 16)", "backward": True, "graphs": 1, "graph_breaks": 0,
               "break_reasons": [], "warmup_s": 3.0, "compiled_fullgraph": True,
               "compiled_compile_s": 5.0, "compiled_max_diff": 0.0, "eager_s": 2e-3,
               "compiled_s": 1e-3, "aot_eager_fullgraph": True, "aot_eager_s": 2.2e-3,
               "small_shape": "x (4, 8)", "validate_off_s": 1e-5, "validate_default_s": 1.2e-5,
               "validate_on_s": 1.2e-5}
BROKEN = {"shape": "x (4, 16)", "backward": True, "graphs": 3, "graph_breaks": 2,
          "break_reasons": ["Tensor.item() (at checks.py:10, check_tensor)"],
          "compiled_fullgraph": False, "compiled_fullgraph_error": "Unsupported: item",
          "compiled_compile_s": 9.0, "eager_s": 2e-3, "compiled_s": 3e-3}
FAILED = {"error": "timeout after 600 s"}


def spec(name):
    return {"params": bc.OPERATORS[name][1], "small": bc.OPERATORS[name][2]}


def test_every_operator_has_three_sizes_and_full_command():
    assert "compile" in harness.FULL and "bench_compile.py" in harness.FULL["compile"]
    for name, sizes in bc.OPERATORS.items():
        assert len(sizes) == 3 and all(bc.size_of(p) > 0 for p in sizes), name


@pytest.mark.parametrize("res", [FULL_RESULT, BROKEN, FAILED, {}])
def test_rows_and_printed_table_from_any_result(res):
    rows = bc.rows_of("SoftSort", spec("SoftSort"), dict(res))
    comp = rows[0]
    assert comp["comparison"] == bc.COMPILE and comp["operator"] == "SoftSort"
    assert comp["fullgraph"] == res.get("compiled_fullgraph")
    if res.get("compiled_s"):
        assert comp["ratio"] == pytest.approx(res["compiled_s"] / res["eager_s"])
    if res is FULL_RESULT:
        assert rows[1]["comparison"] == bc.VALIDATION
        assert rows[1]["default_overhead"] == pytest.approx(0.2)
    text = bc.printed([dict(r) for r in rows])
    assert "SoftSort" in text
    json.dumps(harness.clean(rows))                 # what harness.Run writes


def test_short_error_keeps_first_line_and_place():
    text = ('Traceback\n  File "/x/diffalg/checks.py", line 12, in check_tensor\n'
            "Unsupported: Tensor.item()\n")
    assert bc.short(text).endswith("(at checks.py:12, check_tensor)")


def test_report_draws_rows_of_every_kind(monkeypatch):
    monkeypatch.setattr(report, "display", lambda *a, **k: None)
    monkeypatch.setattr(report.plt, "show", lambda: None)
    rows = [r for name, res in (("SoftSort", FULL_RESULT), ("soft_sort", BROKEN),
                                ("DiffSortNet", FAILED))
            for r in bc.rows_of(name, spec(name), dict(res))]
    df = report.frame({"rows": harness.clean(rows)})
    comp = report.select(df, prefix=bc.COMPILE)
    text = report.compile_summary(comp)
    assert "Of the 3 operators measured, 1 compile as one graph" in text
    assert "DiffSortNet" in text
    report.table(None, report.COMPILE_COLUMNS, df=comp)
    report.ratio_bars(comp)
    report.break_table(comp)
    val = report.select(df, prefix=bc.VALIDATION)
    assert "median of 20% (2.0 µs)" in report.validation_summary(val)
    report.table(None, report.VALIDATION_COLUMNS, df=val, wrap=["input"])


def test_report_without_a_run():
    empty = report.frame(None)
    assert report.compile_summary(empty).startswith("No run is recorded")
    assert report.validation_summary(empty).startswith("No validation cost")
    report.ratio_bars(empty)
    report.break_table(empty)


def test_report_on_the_recorded_file():
    data = report.load("compile")
    if data is None:
        pytest.skip("no benchmarks/results/compile.json")
    df = report.frame(report.shown(data))
    assert len(report.select(df, prefix=bc.COMPILE)) == len(bc.OPERATORS)


def test_fixed_cost_row_and_what_it_explains():
    floor = bc.rows_of(bc.FLOOR, {"params": bc.FLOOR_SIZES[1], "small": None},
                       {"shape": "x.sin() * 2, x (32, 64)", "eager_s": 5e-5, "compiled_s": 1.6e-4})
    assert [r["comparison"] for r in floor] == [bc.FIXED] and bc.FIXED == report.FIXED
    assert floor[0]["fixed_s"] == pytest.approx(1.1e-4)
    assert "one-line function" in bc.printed([dict(r) for r in floor])
    cases = (("SoftSort", {**FULL_RESULT, "eager_s": 1e-3, "compiled_s": 1.15e-3}),
             ("soft_sort", {**FULL_RESULT, "eager_s": 1e-2, "compiled_s": 5e-3}),
             ("DiffSortNet", {**FULL_RESULT, "eager_s": 1e-2, "compiled_s": 1.2e-2}))
    ops = [r for name, res in cases for r in bc.rows_of(name, spec(name), res)]
    df = report.frame({"rows": harness.clean(floor + ops)})
    comp = report.select(df, prefix=bc.COMPILE)
    assert sorted(comp.operator) == ["DiffSortNet", "SoftSort", "soft_sort"]
    text = report.fixed_cost_summary(df, comp)
    assert "costs about 110 µs more" in text
    assert ("5% of the eager call of 1 of the 3 timed operators with a backward pass "
            "(SoftSort)") in text
    # DiffSortNet loses 2 ms per call, far more than the fixed cost: not explained by it
    assert "Of the 2 more than 5% slower compiled, 1 lose no more than twice" in text
    assert "(SoftSort): at least half" in text
    without = report.frame({"rows": harness.clean(ops)})
    assert "cannot say" in report.fixed_cost_summary(without, comp)
