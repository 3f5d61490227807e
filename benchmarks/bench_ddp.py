"""Samples per second of the ranking experiment with one process and with two gloo processes.

Runs `python -m diffalg.experiments ranking` at the default size (n = 5, batches of 50 sets, the
16-channel CNN on 8x8 digits) as subprocesses: one process with 2 threads, one process with 1
thread, and two processes under torchrun with 1 thread each (OMP_NUM_THREADS), side by side. The
samples per second are those the runner records in results.json (the training steps only:
no start-up, no evaluation). Each setting runs `--repeats` times; the best run counts (the
least disturbed by other work on the machine). Records benchmarks/results/ddp.json.

    OMP_WAIT_POLICY=PASSIVE python benchmarks/bench_ddp.py            # 150 steps, 2 repeats
    OMP_WAIT_POLICY=PASSIVE python benchmarks/bench_ddp.py --quick    # 30 steps, 1 repeat
"""
import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from harness import Run, add_record_args, setting, table  # noqa: E402

CASES = [(1, 2), (1, 1), (2, 1)]          # (processes, threads per process)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def measure(processes, threads, steps, batch):
    "The results.json of one run of the ranking experiment with this many processes/threads."
    sets = [f"--set=steps={steps}", f"--set=batch={batch}", "--set=eval_sets=10"]
    with tempfile.TemporaryDirectory() as out:
        cli = ["-m", "diffalg.experiments", "ranking", "--out", out, "--no-progress", *sets]
        if processes > 1:
            cli = ["-m", "torch.distributed.run", f"--nproc-per-node={processes}",
                   f"--master-port={free_port()}", *cli]
        env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
        env.setdefault("OMP_WAIT_POLICY", "PASSIVE")
        done = subprocess.run([sys.executable, *cli], env=env, capture_output=True, text=True)
        if done.returncode != 0:
            raise RuntimeError(f"{processes} process(es) failed:\n{done.stderr[-3000:]}")
        return json.loads(Path(out, "results.json").read_text())


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=150, help="training steps per run")
    ap.add_argument("--batch", type=int, default=50, help="sets per step (global batch)")
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--quick", action="store_true", help="30 steps, 1 repeat")
    args = add_record_args(ap).parse_args()
    if args.quick:
        args.steps, args.repeats = 30, 1
    print(setting())
    what = "samples per second of the ranking experiment (default size), processes x threads"
    run = Run("ddp", args, repeats=args.repeats,        # made first: the load average at start
              comparisons={"ranking DDP": {"what": what, "size": "processes"}},
              params={"steps": args.steps, "batch": args.batch})
    rows = []
    for processes, threads in CASES:
        best = max((measure(processes, threads, args.steps, args.batch)
                    for _ in range(args.repeats)), key=lambda r: r["samples_per_second"])
        sps = best["samples_per_second"]
        rows.append({"comparison": "ranking DDP", "case": f"{processes} x {threads} thread(s)",
                     "size_name": "processes", "size": processes, "processes": processes,
                     "threads per process": threads, "samples/s": sps,
                     "ms / step": 1e3 * args.batch / sps, "diffalg_s": args.batch / sps,
                     "world_size": best["world_size"], "torch_threads": best["threads"]})
    by = {(r["processes"], r["threads per process"]): r["samples/s"] for r in rows}
    ratios = {"speedup_vs_2_threads": by[2, 1] / by[1, 2],
              "speedup_vs_1_thread": by[2, 1] / by[1, 1]}
    print(table(rows, ["case", "samples/s", "ms / step"]))
    print(f"2 processes x 1 thread vs 1 process x 2 threads: {ratios['speedup_vs_2_threads']:.2f}x;"
          f" vs 1 process x 1 thread: {ratios['speedup_vs_1_thread']:.2f}x "
          f"(load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores)")
    run.run["params"].update(ratios)
    run.close(rows)


if __name__ == "__main__":
    main()
