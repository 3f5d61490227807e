"""The experiment runner: configs, CLI, resume, and 2 gloo processes == 1 process."""
import contextlib
import io
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from diffalg.experiments import run, make_config, load_config, load_checkpoint, EXPERIMENTS
from diffalg.experiments.runner import load_experiment
from diffalg.experiments.__main__ import main, parse_value

TINY = {"channels": 4, "hidden": 8, "batch": 8, "eval_sets": 40, "dtype": "float64"}


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _state(out):
    return load_checkpoint(Path(out, "checkpoint.pt"))


def test_two_gloo_processes_equal_one(tmp_path):
    "torchrun with 2 processes on equal shards == 1 process on the whole batch, to 1e-6."
    settings = [f"--set={k}={v}" for k, v in {**TINY, "steps": 3}.items()]
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node=2",
           f"--master-port={_free_port()}", "-m", "diffalg.experiments", "ranking",
           "--out", str(tmp_path / "two"), "--no-progress", *settings]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    one = run("ranking", {**TINY, "steps": 3}, out=tmp_path / "one", progress=False)
    two = json.loads((tmp_path / "two" / "results.json").read_text())
    assert two["world_size"] == 2 and one["world_size"] == 1
    a, b = _state(tmp_path / "one")["model"], _state(tmp_path / "two")["model"]
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=1e-6)
    assert a["head.0.weight"].dtype == torch.float64
    assert not torch.equal(a["head.0.weight"], _initial_head())       # it did train
    torch.testing.assert_close(torch.tensor(one["losses"]), torch.tensor(two["losses"]),
                               rtol=0, atol=1e-9)
    for k in one["metrics"]:
        assert one["metrics"][k] == pytest.approx(two["metrics"][k], abs=1e-3)


def _initial_head():
    from diffalg.experiments import ranking
    from diffalg.experiments.runner import seed_everything
    cfg = make_config("ranking", {**TINY, "steps": 0})
    seed_everything(cfg["seed"])
    return ranking.build(cfg, torch.device("cpu")).model.state_dict()["head.0.weight"]


@pytest.mark.parametrize("k", [2, 3])
def test_resume_equals_uninterrupted(tmp_path, k):
    "A run stopped after k steps and run again to N ends exactly as N uninterrupted steps."
    cfg = {**TINY, "dtype": "float32", "eval_every": 2, "checkpoint_every": 1}
    whole = run("ranking", {**cfg, "steps": 5}, out=tmp_path / "whole", progress=False)
    run("ranking", {**cfg, "steps": k}, out=tmp_path / "cut", progress=False)
    resumed = run("ranking", {**cfg, "steps": 5}, out=tmp_path / "cut", progress=False)
    assert resumed["resumed_from"] == k and resumed["steps_run"] == 5 - k
    for key in ("losses", "metrics", "history", "steps", "config"):
        assert resumed[key] == whole[key], key
    a, b = _state(tmp_path / "whole"), _state(tmp_path / "cut")
    for k2 in a["model"]:
        assert torch.equal(a["model"][k2], b["model"][k2])
    exp_avg = [s["exp_avg"] for s in a["optimizer"]["state"].values()]
    assert all(torch.equal(x, s["exp_avg"]) for x, s in
               zip(exp_avg, b["optimizer"]["state"].values()))
    on_disk = json.loads((tmp_path / "cut" / "results.json").read_text())
    assert on_disk["losses"] == whole["losses"] and on_disk["metrics"] == whole["metrics"]
    assert sorted(os.listdir(tmp_path / "cut")) == ["checkpoint.pt", "results.json"]


def test_resume_refuses_another_config(tmp_path):
    run("ranking", {**TINY, "steps": 1}, out=tmp_path, progress=False)
    with pytest.raises(ValueError, match="another config"):
        run("ranking", {**TINY, "steps": 2, "n": 4}, out=tmp_path, progress=False)
    with pytest.raises(ValueError, match="past steps"):
        run("ranking", {**TINY, "steps": 0}, out=tmp_path, progress=False)
    again = run("ranking", {**TINY, "steps": 1, "n": 4}, out=tmp_path, resume=False,
                progress=False)
    assert again["resumed_from"] == 0


def test_config_errors(tmp_path):
    with pytest.raises(ValueError, match=r"'stpes' \(did you mean 'steps'\?\)"):
        make_config("ranking", {"stpes": 3})
    with pytest.raises(TypeError, match="'n' must be an int .* got float 5.5"):
        make_config("ranking", {"n": 5.5})
    with pytest.raises(TypeError, match="'method' must be a string"):
        make_config("ranking", {"method": 3})
    with pytest.raises(TypeError, match="'batch' must be an int"):
        make_config("ranking", {"batch": False})
    with pytest.raises(ValueError, match="'steps' must be >= 0"):
        make_config("ranking", {"steps": -1})
    assert make_config("ranking", {"lr": 1})["lr"] == 1.0
    paper = make_config("ranking", {"n": 7}, paper=True)
    assert paper["steps"] == 100_000 and paper["n"] == 7
    with pytest.raises(ValueError, match="unknown experiment 'rank'"):
        make_config("rank")
    (tmp_path / "c.toml").write_text('n = 7\nmethod = "bitonic"\nsteepness = 20\n')
    cfg = make_config("ranking", load_config(tmp_path / "c.toml"))
    assert (cfg["n"], cfg["method"], cfg["steepness"]) == (7, "bitonic", 20.0)
    (tmp_path / "t.toml").write_text("[ranking]\nn = 7\n")
    with pytest.raises(ValueError, match="tables such as"):
        load_config(tmp_path / "t.toml")


def test_registry_and_missing_module():
    assert list(EXPERIMENTS) == ["ranking", "topk", "logic", "shortest_paths"]
    for name in EXPERIMENTS:
        try:
            load_experiment(name)
        except ImportError as e:
            assert "not installed" in str(e)


def _cli(*argv):
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main(list(argv))
        except SystemExit as stop:
            code = stop.code
    return code, out.getvalue(), err.getvalue()


def test_cli(tmp_path):
    code, out, _ = _cli("--list")
    assert code == 0 and out.splitlines()[0].startswith("ranking") and "topk" in out
    code, out, _ = _cli("--help")
    assert code == 0 and "--set KEY=VALUE" in out and "torchrun" in out
    code, _, err = _cli("ranking", "--set", "stpes=3")
    assert code == 2 and "unknown key 'stpes'" in err
    code, _, err = _cli("ranking", "--set", "n=five")
    assert code == 2 and "'n' takes an int" in err
    code, _, err = _cli("nosuch")
    assert code == 2 and "unknown experiment" in err
    code, _, err = _cli()
    assert code == 2 and "NAME is required" in err
    (tmp_path / "c.toml").write_text("steps = 2\nbatch = 4\n")
    sets = ["--set=channels=2", "--set=hidden=4", "--set=eval_sets=20", "--set=steps=1"]
    code, out, _ = _cli("ranking", "--config", str(tmp_path / "c.toml"), *sets,
                        "--out", str(tmp_path / "r"), "--no-progress")
    assert code == 0 and "results.json" in out
    results = json.loads((tmp_path / "r" / "results.json").read_text())
    assert results["steps"] == 1 and results["config"]["batch"] == 4   # --set after --config
    assert results["samples_per_second"] > 0 and set(results["metrics"]) == {
        "exact_match", "elementwise"}
    for key in ("world_size", "torch", "device", "losses", "history", "train_seconds"):
        assert key in results


def test_parse_value():
    assert parse_value("true", False) is True and parse_value("off", True) is False
    assert parse_value("100_000", 1) == 100_000 and parse_value("2e3", 1) == 2000
    with pytest.raises(ValueError, match="takes an int"):
        parse_value("1.5", 1)
    with pytest.raises(ValueError, match="takes a bool"):
        parse_value("maybe", True)


def test_console_script_declared():
    text = (Path(__file__).parents[1] / "pyproject.toml").read_text()
    assert 'diffalg-experiment = "diffalg.experiments.__main__:main"' in text


def test_import_is_light():
    code = ("import sys, diffalg.experiments; "
            "print(any(m.startswith('diffalg.experiments.ranking') for m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.stdout.strip() == "False", done.stderr


def test_return_setup_gives_the_trained_model(tmp_path):
    record, setup = run("ranking", {**TINY, "steps": 2}, out=tmp_path, progress=False,
                        return_setup=True)
    saved = _state(tmp_path)["model"]
    for name, value in setup.model.state_dict().items():
        assert torch.equal(value, saved[name]), name
    assert record["steps"] == 2 and record == json.loads((tmp_path / "results.json").read_text())
    assert isinstance(run("ranking", {**TINY, "steps": 1}, progress=False), dict)


def test_seconds_per_step_counts_only_the_timed_calls():
    from diffalg.experiments import seconds_per_step
    calls = []
    clock = iter([10.0, 10.6])                  # perf_counter at the start and the end

    def step(i):
        calls.append(i)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr("diffalg.experiments.runner.time.perf_counter", lambda: next(clock))
        assert seconds_per_step(step, steps=3, warmup=2) == pytest.approx(0.2)
    assert calls == [0, 1, 2, 3, 4]             # warm-up calls first, then the timed ones
    with pytest.raises(ValueError, match="`warmup` must be >= 0"):
        seconds_per_step(step, warmup=-1)
    with pytest.raises(TypeError, match="`steps` must be an int"):
        seconds_per_step(step, steps=2.5)
    with pytest.raises(TypeError, match="`step` must be callable"):
        seconds_per_step("step")
