"""Read the recorded benchmark results (benchmarks/results/*.json, written by harness.Run) and draw
them: the tables, log-log figures and histories of the book's benchmarks appendix
(nbs/appendix/benchmarks/). Needs pandas and matplotlib, not torch.

    import report
    data = report.load("sorting")        # None when the file is missing
    run = report.shown(data)             # the newest full-size run (else the newest quick one)
    report.about(data, "sorting")        # machine, date, command; or how to make the file
    report.table(run, columns, comparisons=...)
    report.plot(run, comparisons=...)
    report.history(data)
"""
import json
import numbers
from pathlib import Path

import matplotlib.pyplot as plt
import matplotlib.ticker as ticker
import pandas as pd
from IPython.display import Markdown, display

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
try:
    from harness import FULL
except ImportError:                      # imported from elsewhere: harness is beside this file
    import sys
    sys.path.insert(0, str(HERE))
    from harness import FULL

DASH = "-"
FONTS = {"font.size": 10, "axes.titlesize": 11, "axes.labelsize": 10, "legend.fontsize": 10,
         "xtick.labelsize": 9.5, "ytick.labelsize": 9.5}
plt.rcParams.update(FONTS)


def load(name):
    "The record of results/<name>.json, or None when the file is missing or holds no run."
    path = RESULTS / f"{name}.json"
    if not path.exists():
        return None
    data = json.loads(path.read_text())
    return data if data.get("runs") else None


def shown(data):
    "The run a page shows: the newest full-size run, else the newest quick one (None if none)."
    if not data:
        return None
    full = [r for r in data["runs"] if not r["meta"].get("quick")]
    return (full or data["runs"])[-1]


def command(name):
    "The command that regenerates results/<name>.json at full size."
    return FULL.get(name, f"python benchmarks/... ({name})")


def about(data, name, run=None):
    """Where the figures below come from (machine, versions, command), or how to make the file;
    of `run` if given, else of the run the page shows."""
    if data is None or (run is None and not data["runs"]):
        display(Markdown(f"**No results yet.** `{command(name)}` (run from the repository root) "
                         f"writes `benchmarks/results/{name}.json`, and this page then draws it."))
        return
    run = run or shown(data)
    m = run["meta"]
    size = "quick sizes (`--quick`)" if m.get("quick") else "full size"
    cpu = m.get("cpu") or "not recorded"
    cores = f", {m['cores']} cores" if m.get("cores") else ""
    threads = f", {m['torch_threads']} torch threads" if m.get("torch_threads") else ""
    policy = m.get("omp_wait_policy", "?")
    lines = [f"- **machine**: {cpu}{cores}{threads}; `OMP_WAIT_POLICY={policy}`",
             f"- **software**: torch {m.get('torch', 'not recorded')}, Python "
             f"{m.get('python', 'not recorded')}; diffalg at commit `{m.get('commit', '?')}`"
             + (" with local changes" if m.get("dirty") else "")
             + f"; compiled sorting kernel: {m.get('compiled_kernel', 'not recorded')}",
             f"- **measured** {m.get('date', '?').replace('T', ' ').rstrip('Z')} UTC, {size}, "
             f"load average {' to '.join(str(x) for x in m.get('load_average', [])) or '?'}",
             f"- **command**: `{m.get('command', '?')}`",
             f"- **full size**: `{command(name)}`; `benchmarks/results/{name}.json` keeps every "
             f"run ({len(data['runs'])} so far)"]
    display(Markdown("\n".join(lines)))


def frame(run, comparisons=None):
    "The rows of a run as a DataFrame (only those of `comparisons`, in that order, if given)."
    if run is None:
        return pd.DataFrame()
    df = pd.DataFrame(run["rows"])
    if comparisons is not None and len(df):
        df = df[df.comparison.isin(comparisons)].copy()
        df["_order"] = df.comparison.map({c: i for i, c in enumerate(comparisons)})
        df = df.sort_values(["_order", "size"], kind="stable").drop(columns="_order")
    return df


def select(df, prefix=None, contains=None):
    "The rows whose comparison starts with `prefix` or contains `contains`."
    if not len(df):
        return df
    keep = df.comparison.str.startswith(prefix) if prefix else df.comparison.str.contains(contains)
    return df[keep]


def named(run, prefix):
    "The names of the comparisons of `run` that start with `prefix`, in the run's order."
    return [c for c in (run["comparisons"] if run else {}) if c.startswith(prefix)]


def scaled(field, factor):
    "A column function: `field` (seconds) of the row times `factor`, or None where missing."
    def get(row):
        v = row.get(field)
        return None if v is None or v != v else factor * v
    return get


def ms(field):
    "A column function: `field` (seconds) of the row in milliseconds, or None where missing."
    return scaled(field, 1e3)


def pivot(df, row, column, cell, first="case"):
    """One row per value of `row`, one column per value of `column` (numbers written with
    thousands separators), each cell `cell` (a field, or a function of the row)."""
    out = {}
    for _, r in df.iterrows():
        key = r[row]
        col = r[column]
        col = f"{col:,.0f}" if isinstance(col, numbers.Number) else str(col)
        out.setdefault(key, {first: key})[col] = cell(r) if callable(cell) else r.get(cell)
    return pd.DataFrame(list(out.values()))


def as_columns(table, fmt):
    "Columns for `table`: the first as it is, every other one with format `fmt`."
    return [(c, c, None if i == 0 else fmt) for i, c in enumerate(table.columns)]


def _cell(value, fmt):
    if value is None or (isinstance(value, float) and value != value):
        return DASH
    if isinstance(value, str):
        return value
    if callable(fmt):
        return fmt(value)
    return fmt.format(value) if fmt else str(value)


def _values(df, field):
    if callable(field):
        return [field(row) for _, row in df.iterrows()]
    return list(df[field]) if field in df else [None] * len(df)


def formatted(df, columns):
    """A table of strings: `columns` is a list of (field, header, format), a field being a column
    name or a function of the row, a format a format string or a function of the value."""
    return pd.DataFrame({header: [_cell(v, fmt) for v in _values(df, field)]
                         for field, header, fmt in columns})


NOWRAP = [{"selector": "", "props": "font-size: 0.9em;"},
          {"selector": "td, th", "props": "white-space: nowrap; padding: 0.1em 0.45em;"},
          {"selector": "th", "props": "text-align: left;"}]


def table(run, columns, comparisons=None, df=None, wrap=()):
    """Display the rows of `comparisons` with `columns` (see `formatted`): no index, no NaN, cells
    on one line except in the columns named in `wrap`."""
    df = frame(run, comparisons) if df is None else df
    if not len(df):
        display(Markdown("*(nothing recorded for this in the run shown)*"))
        return
    styled = formatted(df, columns).style.hide(axis="index").set_table_styles(NOWRAP)
    if wrap:
        styled = styled.set_table_styles({c: [{"selector": "td", "props": "white-space: normal;"}]
                                          for c in wrap}, overwrite=False)
    display(styled)


def ratio_ticks(ax):
    "A logarithmic y axis of ratios labelled with plain numbers at 1, 2, 5, 10, 20..."
    low, high = ax.get_ylim()
    if high / low < 4:        # a narrow range: marks around 1 (1.1 is the usual threshold)
        marks = [m for m in (0.25, 0.33, 0.5, 0.67, 0.8, 0.9, 1.0, 1.1, 1.25, 1.5, 2.0, 3.0, 4.0)
                 if low <= m <= high]
        ax.yaxis.set_major_locator(ticker.FixedLocator(marks))
        ax.yaxis.set_minor_locator(ticker.NullLocator())
        ax.yaxis.set_major_formatter(ticker.FuncFormatter(lambda v, _: f"{v:g}"))
    elif high / low < 1e3:
        ax.yaxis.set_major_locator(ticker.LogLocator(subs=(1.0, 2.0, 5.0)))
        ax.yaxis.set_major_formatter(ticker.FuncFormatter(lambda v, _: f"{v:g}"))
        ax.yaxis.set_minor_formatter(ticker.NullFormatter())


def log_axes(ax, xlabel, ylabel, title, ratio=False, sizes=()):
    "Log-log axes; ticks at the measured sizes (up to 8 of them), plain numbers on ratio axes."
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set(xlabel=xlabel, ylabel=ylabel, title=title)
    ax.grid(True, which="major", alpha=0.3)
    sizes = sorted(set(sizes))
    if 1 < len(sizes) <= 8:
        ax.xaxis.set_major_locator(ticker.FixedLocator(sizes))
        ax.xaxis.set_major_formatter(ticker.FuncFormatter(
            lambda v, _: f"{v:,.0f}" if v < 1e6 else f"{v / 1e6:.2g}M"))
        ax.xaxis.set_minor_locator(ticker.NullLocator())
    if ratio:
        ratio_ticks(ax)


def plot(run, comparisons=None, df=None, by="comparison", times=None, size_label=None,
         ratio_label=None, title="time", label=None):
    """Log-log figure of time and of the ratio against problem size, one colour per group of rows
    (`by`, the comparison by default), drawn where a group has two sizes or more. `times` maps
    time fields to line labels (default: diffalg's time, solid, and the reference's, dashed)."""
    df = frame(run, comparisons) if df is None else df
    times = times or {"diffalg_s": "diffalg", "reference_s": None}
    first = next(iter(times))
    if not len(df) or "size" not in df or first not in df:
        return
    groups = [(c, g.sort_values("size")) for c, g in df.groupby(by, sort=False)
              if g["size"].nunique() > 1 and g[first].notna().any()]
    if not groups:
        return
    has_ratio = "ratio" in df and any(g["ratio"].notna().any() for _, g in groups)
    fig, axes = plt.subplots(1, 1 + has_ratio, figsize=(7.5, 3.6) if has_ratio else (5, 3.6),
                             squeeze=False, layout="constrained")
    for i, (key, g) in enumerate(groups):
        color, name = f"C{i % 10}", label(key) if label else key
        for j, (field, side) in enumerate(times.items()):
            if field not in g or not g[field].notna().any():
                continue
            parts = g.groupby("reference") if side is None and "reference" in g else [(side, g)]
            for ref, r in parts:
                r = r[r[field].notna()].drop_duplicates("size")
                axes[0, 0].plot(r["size"], r[field], ("o-", "s--", "^:")[min(j, 2)],
                                color=color, alpha=1 if j == 0 else 0.7,
                                label=name if len(times) == 1 else f"{name}: {ref}")
        if has_ratio:
            parts = g.groupby("reference") if "reference" in g else [(None, g)]
            for _, r in parts:
                r = r[r["ratio"].notna()].drop_duplicates("size")
                axes[0, 1].plot(r["size"], r["ratio"], "o-", color=color)
    size_label = size_label or groups[0][1]["size_name"].iloc[0]
    sizes = [v for _, g in groups for v in g["size"]]
    log_axes(axes[0, 0], size_label, "seconds", title, sizes=sizes)
    if has_ratio:
        axes[0, 1].axhline(1.0, color="gray", lw=0.8)
        log_axes(axes[0, 1], size_label, ratio_label or "ratio", "ratio", ratio=True, sizes=sizes)
    handles, labels = axes[0, 0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", frameon=False,
               ncol=1 if len(labels) < 3 else (2 if max(map(len, labels)) > 24 else 3))
    plt.show()


def history(data, comparisons=None, value="ratio", fmt="{:.2f}", cases=None, by="comparison",
            last=6):
    """One row per case (the largest size of each group `by`, or `cases`), one column per run
    (the `last` runs of the file): `value` (the ratio by default) in each run that measured it;
    then which run is which (date, sizes, commit, machine)."""
    if data is None or len(data["runs"]) < 2:
        display(Markdown("*(one run recorded so far: no history yet)*"))
        return
    display(Markdown(f"`{data['name']}.json`, {len(data['runs'])} runs:"))
    rows, runs = {}, []
    for k, run in list(enumerate(data["runs"], 1))[-last:]:
        m = run["meta"]
        runs.append({"run": k, "measured (UTC)": m.get("date", "?").replace("T", " ").rstrip("Z"),
                     "sizes": "quick" if m.get("quick") else "full",
                     "commit": m.get("commit", "?"), "CPU": m.get("cpu", "not recorded"),
                     "OMP_WAIT_POLICY": m.get("omp_wait_policy", "?")})
        df = frame(run, comparisons)
        if not len(df) or value not in df:
            continue
        df = df[df[value].notna()]
        if cases is None:
            df = df.sort_values("size", kind="stable").groupby(by, sort=False).tail(1)
        else:
            df = df[df.case.isin(cases)]
        for _, r in df.iterrows():
            key = r["case"] + (f" / {r['reference']}" if isinstance(r.get("reference"), str)
                               else "")
            rows.setdefault(key, {})[f"run {k}"] = fmt.format(r[value])
    out = pd.DataFrame.from_dict(rows, orient="index").fillna(DASH)
    out = out[sorted(out.columns, key=lambda c: int(c.split()[1]))]
    # a long case name wraps within 18em, so that the table fits the column with several runs
    display(out.style.set_table_styles(NOWRAP).format_index(
        lambda name: f'<div style="max-width: 18em; white-space: normal">{name}</div>', axis=0))
    display(pd.DataFrame(runs).style.hide(axis="index").set_table_styles(NOWRAP))


# ------------------------------------------------------------------ compiled against eager
def us(field):
    "A column function: `field` (seconds) of the row in microseconds, or None where missing."
    return scaled(field, 1e6)


def yes_no(value):
    return {True: "yes", False: "no"}.get(value, DASH)


COMPILE_COLUMNS = [("operator", "operator", None), ("graph_breaks", "breaks", "{:.0f}"),
                   ("fullgraph", "one graph", yes_no),
                   ("compiled_compile_s", "compile s", "{:.1f}"),
                   (ms("eager_s"), "eager ms", "{:.3g}"),
                   (ms("compiled_s"), "compiled ms", "{:.3g}"),
                   ("ratio", "ratio", "{:.2f}")]
VALIDATION_COLUMNS = [("operator", "operator", None), ("shape", "input", None),
                      (us("validate_off_s"), "off µs", "{:.1f}"),
                      (us("validate_default_s"), "default µs", "{:.1f}"),
                      (us("validate_on_s"), "on µs", "{:.1f}"),
                      ("default_overhead", "default", "{:+.0%}"), ("on_overhead", "on", "{:+.0%}")]


def _column(df, name):
    return df[name] if name in df else pd.Series([None] * len(df), index=df.index, dtype=object)


def compile_summary(comp):
    "One paragraph on the compile table: how many operators compile whole, and the ratios."
    if not len(comp):
        return "No run is recorded yet: the command above makes one."
    whole = int(_column(comp, "fullgraph").eq(True).sum())
    clean = int(_column(comp, "graph_breaks").eq(0).sum())
    text = (f"Of the {len(comp)} operators measured, {whole} compile as one graph "
            f"(`fullgraph=True`, forward and backward) and {clean} have no graph break in "
            f"their forward pass.")
    r = comp[_column(comp, "ratio").notna()].set_index("operator")["ratio"] if "ratio" in comp \
        else pd.Series(dtype=float)
    if len(r):
        text += (f" Compiled, {int((r < 1).sum())} of the {len(r)} timed run faster than eager and "
                 f"{int((r > 1.05).sum())} more than 5% slower; the ratio compiled / eager goes "
                 f"from {r.min():.2f} ({r.idxmin()}) to {r.max():.2f} ({r.idxmax()}), median "
                 f"{r.median():.2f}.")
    failed = comp[_column(comp, "error").notna()].operator.tolist()
    if failed:
        text += f" Not measured (see below): {', '.join(failed)}."
    return text


FIXED = "compiler's fixed cost"


def fixed_cost(df):
    "The run's one-line function as a row (eager_s, compiled_s, fixed_s), or None if not timed."
    rows = select(df, prefix=FIXED)
    rows = rows[_column(rows, "fixed_s").notna()] if len(rows) else rows
    return rows.iloc[0] if len(rows) else None


def fixed_cost_summary(df, comp):
    """One paragraph: what a compiled call costs beyond its work (the one-line function), and
    which operators' eager calls are so short that this alone is more than 5% of them."""
    f = fixed_cost(df)
    if f is None:
        return ("The run shown did not time the one-line function (it was added to the script "
                "after this run), so this page cannot say how much of each ratio is the "
                "compiler's fixed cost per call.")
    us = lambda s: f"{1e6 * s:,.0f} µs"                              # noqa: E731
    text = (f"A one-line function (`{f['shape']}`), forward and backward, takes "
            f"{us(f['eager_s'])} per call eager and {us(f['compiled_s'])} compiled in the same "
            f"run: a compiled call costs about {us(f['fixed_s'])} more than its work, whatever it "
            f"computes (dynamo's guards, AOTAutograd's wrappers around the two graphs).")
    timed = comp[_column(comp, "ratio").notna()] if len(comp) else comp
    both = timed[_column(timed, "pass").eq("forward + backward")] if len(timed) else timed
    if not len(both):
        return text
    short = both[f["fixed_s"] / both.eager_s > 0.05]
    slow = both[both.ratio > 1.05]
    text += (f" That is more than 5% of the eager call of {len(short)} of the {len(both)} timed "
             f"operators with a backward pass"
             + (f" ({', '.join(short.operator)})" if len(short) else "") + ".")
    if len(slow):
        explained = slow[(slow.compiled_s - slow.eager_s) <= 2 * f["fixed_s"]]
        text += (f" Of the {len(slow)} more than 5% slower compiled, {len(explained)} lose no "
                 f"more than twice that fixed cost per call"
                 + (f" ({', '.join(explained.operator)})" if len(explained) else "")
                 + ": at least half of what they lose is that fixed cost, which a longer call "
                 "(a larger input) hides.")
    return text


def ratio_bars(comp):
    "compiled / eager per operator on a log axis, coloured by whether it compiled as one graph."
    d = comp[_column(comp, "ratio").notna()] if len(comp) else comp
    if not len(d):
        return
    fig, ax = plt.subplots(figsize=(7.5, 1.3 + 0.26 * len(d)), layout="constrained")
    y = list(range(len(d)))[::-1]
    whole = _column(d, "fullgraph").eq(True).tolist()
    colors = ["C0" if w else "C3" for w in whole]
    ax.hlines(y, 1.0, d.ratio, colors=colors, lw=2)
    for w, label in ((True, "inductor, one graph"), (False, "inductor, with graph breaks")):
        pick = [i for i, v in enumerate(whole) if v == w]
        ax.plot(d.ratio.iloc[pick], [y[i] for i in pick], "o", color="C0" if w else "C3",
                label=label)
    if _column(d, "aot_eager_ratio").notna().any():
        ax.plot(d.aot_eager_ratio, y, "s", mfc="none", color="gray", label="aot_eager")
    ax.axvline(1.0, color="gray", lw=0.8)
    ax.set_xscale("log")
    ax.set(yticks=y, ylim=(-0.7, len(d) - 0.3), xlabel="compiled / eager (below 1: faster)",
           title="compiled time over eager time, per call")
    ax.set_yticklabels(d.operator)
    low, high = ax.get_xlim()
    if high / low < 1e3:
        ax.xaxis.set_major_locator(ticker.LogLocator(subs=(1.0, 2.0, 5.0)))
        ax.xaxis.set_major_formatter(ticker.FuncFormatter(lambda v, _: f"{v:g}"))
        ax.xaxis.set_minor_formatter(ticker.NullFormatter())
    ax.grid(True, axis="x", alpha=0.3)
    fig.legend(loc="outside lower center", ncol=3, frameon=False)
    plt.show()


def break_table(comp):
    "The reasons of the graph breaks and of the failed `fullgraph=True` attempts, per operator."
    if not len(comp):
        return
    broken = comp[~_column(comp, "fullgraph").eq(True) | ~_column(comp, "graph_breaks").eq(0)
                  | _column(comp, "error").notna()]
    if not len(broken):
        display(Markdown("Every operator measured compiles as one graph, with no graph break."))
        return

    def reasons(row):
        found = row.get("break_reasons")
        return "; ".join(found[:2]) if isinstance(found, list) and found else \
            row.get("explain_error")

    def error(row):
        parts = [row.get(k) for k in ("error", "compiled_fullgraph_error", "compiled_error")]
        return "; ".join(p for p in parts if isinstance(p, str)) or None
    table(None, [("operator", "operator", None), ("graph_breaks", "breaks", "{:.0f}"),
                 (reasons, "first reasons (explain)", None),
                 (error, "error of fullgraph=True", None)], df=broken,
          wrap=["first reasons (explain)", "error of fullgraph=True"])


def validation_summary(val):
    "One sentence on the validation table: the median and largest overhead of the default."
    v = val.set_index("operator") if len(val) else val
    over = v["default_overhead"].dropna() if "default_overhead" in v else pd.Series(dtype=float)
    if not len(over):
        return "No validation cost is recorded yet."
    extra = 1e6 * (v.validate_default_s - v.validate_off_s).dropna()
    text = (f"At these sizes the default setting adds a median of {over.median():.0%} "
            f"({extra.median():.1f} µs) to an eager forward call over `False`, at most "
            f"{over.max():.0%} ({over.idxmax()}).")
    failed = [k for k in v.index if k not in over.index]
    if failed:
        text += f" Not measured: {', '.join(failed)}."
    return text
