"""benchmarks/paper_tables.py: the settings of each method, the run folders, and a tiny run that
records its rows, is killed half-way (one method recorded) and skips what is recorded when run
again; the 8x8 digits keep it to seconds (the script's real data, mnist5k, is the default)."""
import json
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

BENCH = Path(__file__).resolve().parent.parent / "benchmarks"
sys.path.insert(0, str(BENCH))

import harness  # noqa: E402
import paper_tables as pt  # noqa: E402


def args(**kw):
    base = dict(data="mnist5k", eval_sets=1000, seed=0, steps=150, batch=50, eval_every=None,
                paper=False, out="/tmp/x")
    return SimpleNamespace(**{**base, **kw})


def test_configs_follow_the_chapters():
    from diffalg.experiments.ranking import resolved_loss, DEFAULTS
    losses = {k: resolved_loss({**DEFAULTS, **pt.config(k, 5, args())}) for k in pt.METHODS}
    assert losses == {"odd_even": "bce", "bitonic": "bce", "neuralsort": "bce",
                      "softsort": "bce", "bubble": "swaps", "odd_even_newton": "sort_loss"}
    assert pt.config("odd_even_newton", 5, args())["newton"] == "hessian"
    assert pt.config("bitonic", 32, args())["steepness"] == 20.0
    assert "steepness" not in pt.config("neuralsort", 32, args())
    paper = pt.config("odd_even", 5, args(paper=True, steps=None, batch=None))
    assert "steps" not in paper and "batch" not in paper          # PAPER's values apply
    a, b = pt.folder("odd_even", 5, pt.config("odd_even", 5, args()), args()), \
        pt.folder("odd_even", 5, pt.config("odd_even", 5, args(steps=300)), args(steps=300))
    assert a != b and a.name.startswith("odd_even_n5_s150_b50_mnist5k")


def test_quick_run_records_and_resumes(tmp_path):
    cmd = [sys.executable, str(BENCH / "paper_tables.py"), "--quick", "--data", "digits",
           "--methods", "softsort,bubble", "--no-progress", "--out", str(tmp_path / "runs"),
           "--results", str(tmp_path)]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    record = json.loads((tmp_path / "paper_ranking_quick.json").read_text())
    run = record["runs"][-1]
    assert run["complete"] and [r["key"] for r in run["rows"]] == ["softsort", "bubble"]
    for row in run["rows"]:
        assert 0 <= row["exact_match"] <= row["elementwise"] <= 1
        assert row["steps"] == 6 and row["batch"] == 10 and row["device"] == "cpu"
    # an interrupted run: the last entry unfinished with one row; the same command continues it
    run["complete"], run["rows"] = False, run["rows"][:1]
    harness.save(record, tmp_path)
    again = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stderr[-2000:]
    runs = json.loads((tmp_path / "paper_ranking_quick.json").read_text())["runs"]
    assert len(runs) == 1 and runs[0]["complete"] and len(runs[0]["rows"]) == 2
    assert runs[0]["rows"][1]["resumed_from"] == 6       # bubble's checkpoint was complete
