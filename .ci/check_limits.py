"""Size, style and layering limits that a reader of the book feels, checked on the sources.

    python .ci/check_limits.py     # exit 1 and a list of every violation, or a one-line summary

- every exported module (diffalg/**/*.py, except the generated _modidx.py) has at most 400 lines;
- every exported notebook cell (`#| export`) has at most 60 lines;
- every code cell that a page shows (not tagged hide-input, remove-input, remove-cell or hide-cell,
  no `#| hide` line) has at most 40 lines;
- no page shows more than 60 consecutive lines of code uncollapsed: a run of code cells with no
  markdown cell between them, not counting cells tagged hide-input, remove-input or remove-cell;
- exported code is wrapped at 100 characters (nbdev's generated `__all__` block aside);
- the import graph of diffalg's modules has no cycle (imports inside functions count too);
- one numbering: in _toc.yml, folder nbs/0N_* is the N-th numbered chapter and its file 0M_* the
  M-th section, and no chapter's index page has a heading below its title (Sphinx would number it
  N.1 and push every section one number on).
The notebooks' code, exported or not, is held to the same 100 characters by ruff (pyproject.toml).
"""
import ast
import json
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MAX_MODULE, MAX_EXPORT_CELL, MAX_VISIBLE_RUN, MAX_WIDTH = 400, 60, 60, 100
MAX_SHOWN_CELL = 40      # the book shows code in cells of 3-40 lines, each followed by a result
HIDDEN = {"hide-input", "remove-input", "remove-cell"}
NOT_SHOWN = HIDDEN | {"hide-cell"}


def module_name(path, pkg_root):
    rel = path.relative_to(pkg_root.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def imported_modules(path, name, modules):
    "The diffalg modules that the file `path` (module `name`) imports, anywhere in the file."
    tree = ast.parse(path.read_text(encoding="utf8"))
    is_pkg = path.name == "__init__.py"
    package = name if is_pkg else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)] if node.level > 1 else base
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            targets = [mod] + [f"{mod}.{a.name}" for a in node.names]
        else:
            continue
        for t in targets:
            while t and t not in modules:     # `import diffalg.sorting.relaxed` names that module
                t = t.rpartition(".")[0]
            if t and t != name and t != "diffalg":
                found.add(t)
    return found


def find_cycle(graph):
    "One cycle of the directed graph {node: set(nodes)} as a list of nodes, or None."
    state, stack = {}, []

    def visit(n):
        state[n] = 1
        stack.append(n)
        for m in sorted(graph.get(n, ())):
            if state.get(m) == 1:
                return stack[stack.index(m):] + [m]
            if m not in state:
                c = visit(m)
                if c:
                    return c
        stack.pop()
        state[n] = 2
        return None

    for n in sorted(graph):
        if n not in state:
            c = visit(n)
            if c:
                return c
    return None


def check_modules(problems):
    pkg = ROOT / "diffalg"
    files = [p for p in sorted(pkg.rglob("*.py")) if p.name != "_modidx.py"]
    names = {module_name(p, pkg): p for p in files}
    for name, p in names.items():
        lines = p.read_text(encoding="utf8").splitlines()
        if len(lines) > MAX_MODULE:
            problems.append(f"{p.relative_to(ROOT)}: {len(lines)} lines (at most {MAX_MODULE})")
        in_all = False
        for k, line in enumerate(lines, 1):
            in_all = line.startswith("__all__ = [") or (in_all and line.startswith(" "))
            if len(line) > MAX_WIDTH and not in_all:
                problems.append(f"{p.relative_to(ROOT)}:{k}: {len(line)} characters "
                                f"(at most {MAX_WIDTH})")
    graph = {name: imported_modules(p, name, names) for name, p in names.items()}
    cycle = find_cycle(graph)
    if cycle:
        problems.append("import cycle: " + " -> ".join(cycle))
    return len(files)


def is_shown(cell):
    "Whether the book shows the source of this code cell (not collapsed, removed or `#| hide`)."
    src = "".join(cell["source"])
    tags = set(cell.get("metadata", {}).get("tags", []))
    hidden_line = any(re.fullmatch(r"#\|\s*hide\s*", line.strip()) for line in src.splitlines())
    return cell["cell_type"] == "code" and not (NOT_SHOWN & tags) and not hidden_line


def long_shown_cells(path, cells):
    "Problems for the shown code cells of notebook `path` (relative to ROOT) over MAX_SHOWN_CELL."
    out = []
    for i, c in enumerate(cells):
        lines = len("".join(c["source"]).splitlines())
        if is_shown(c) and lines > MAX_SHOWN_CELL:
            out.append(f"{path.as_posix()} cell {i}: shown code cell of {lines} lines (at most "
                       f"{MAX_SHOWN_CELL}; split it, each piece followed by prose or a check)")
    return out


def check_notebooks(problems):
    nbs = sorted(p for p in (ROOT / "nbs").rglob("*.ipynb") if ".ipynb_checkpoints" not in p.parts)
    for p in nbs:
        cells = json.loads(p.read_text(encoding="utf8"))["cells"]
        problems.extend(long_shown_cells(p.relative_to(ROOT), cells))
        run, run_start = 0, None
        for i, c in enumerate(cells):
            src = "".join(c["source"])
            lines = len(src.splitlines())
            if c["cell_type"] != "code":
                run, run_start = 0, None
                continue
            if src.lstrip().startswith(("#| export", "#|export")) and lines > MAX_EXPORT_CELL:
                problems.append(f"{p.relative_to(ROOT)} cell {i}: export cell of {lines} lines "
                                f"(at most {MAX_EXPORT_CELL})")
            tags = set(c.get("metadata", {}).get("tags", []))
            if HIDDEN & tags or src.startswith("#| default_exp"):
                continue
            run_start = i if run == 0 else run_start
            run += lines
            if run > MAX_VISIBLE_RUN:
                problems.append(f"{p.relative_to(ROOT)} cells {run_start}-{i}: {run} consecutive "
                                f"lines of visible code (at most {MAX_VISIBLE_RUN}; collapse "
                                "engine cells with the hide-input tag or break them up with prose)")
                run, run_start = 0, None
    return len(nbs)


def check_numbering(problems):
    import yaml
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text(encoding="utf8"))
    chapters = [c for part in toc["parts"] if part.get("numbered")
                for c in part.get("chapters", [])]
    for n, chapter in enumerate(chapters, 1):
        folder, name = chapter["file"].split("/")[-2:]
        if not folder.startswith(f"{n:02d}_") or name != "index":
            problems.append(f"_toc.yml: chapter {n} is {chapter['file']} "
                            f"(expected nbs/{n:02d}_*/index)")
        for m, section in enumerate(chapter.get("sections", []), 1):
            if not section["file"].split("/")[-1].startswith(f"{m:02d}_"):
                problems.append(f"_toc.yml: section {n}.{m} is {section['file']} (expected a file "
                                f"named {m:02d}_* in {folder})")
        index = ROOT / (chapter["file"] + ".ipynb")
        if index.is_file():
            cells = json.loads(index.read_text(encoding="utf8"))["cells"]
            heads = [line for c in cells if c["cell_type"] == "markdown"
                     for line in "".join(c["source"]).splitlines() if re.match(r"##+ ", line)]
            if heads:
                problems.append(f"{index.relative_to(ROOT)}: heading {heads[0]!r} below the "
                                "title would be numbered as a section (use bold text)")
    return len(chapters)


def main():
    problems = []
    check_numbering(problems)
    n_mod = check_modules(problems)
    n_nb = check_notebooks(problems)
    if problems:
        print("check_limits: FAILED\n  " + "\n  ".join(problems))
        return 1
    print(f"check_limits: {n_mod} modules and {n_nb} notebooks within the limits, no import cycle")
    return 0


if __name__ == "__main__":
    sys.exit(main())
