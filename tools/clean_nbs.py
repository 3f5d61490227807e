"""Keep the notebooks clean: no outputs, no execution counts, only `tags` in cell metadata, and the
same notebook metadata (a Python 3 kernel) everywhere. Cell ids are kept (nbdev's exported markers
refer to them). Usage: python tools/clean_nbs.py [--check] [paths...]
(default: every notebook in nbs/)"""
import json
import sys
from pathlib import Path

NB_METADATA = {"kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"},
               "language_info": {"name": "python"}}


def clean(nb):
    nb["metadata"] = dict(NB_METADATA)
    for cell in nb["cells"]:
        meta = {k: v for k, v in cell.get("metadata", {}).items() if k == "tags" and v}
        cell["metadata"] = meta
        if cell["cell_type"] == "code":
            cell["outputs"], cell["execution_count"] = [], None
        else:
            cell.pop("outputs", None); cell.pop("execution_count", None)
            if cell["cell_type"] == "markdown":
                cell.pop("attachments", None)
    return nb


def dumps(nb):
    return json.dumps(nb, indent=1, ensure_ascii=False, sort_keys=True) + "\n"


def main(argv):
    check = "--check" in argv
    paths = [Path(a) for a in argv if a != "--check"] or sorted(Path("nbs").rglob("*.ipynb"))
    dirty = []
    for p in paths:
        if ".ipynb_checkpoints" in p.parts:
            continue
        text = p.read_text(encoding="utf8")
        new = dumps(clean(json.loads(text)))
        if new != text:
            dirty.append(p)
            if not check:
                p.write_text(new, encoding="utf8")
    if check and dirty:
        print("notebooks not clean (run `python tools/clean_nbs.py`):\n  "
              + "\n  ".join(map(str, dirty)))
        return 1
    rewrote = f", rewrote {len(dirty)}" if dirty and not check else ""
    print(f"{'checked' if check else 'cleaned'} {len(paths)} notebooks{rewrote}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
