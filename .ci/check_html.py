"""Check the built book in headless Chromium: every page of the table of contents loads, math is
typeset offline (MathJax served locally, no CDN), every image exists, and no page shows a Python
traceback. Usage: python .ci/check_html.py [_build/html] [--screenshots DIR]"""
import argparse
import re
import shutil
import subprocess
import sys
import tempfile
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlparse

import yaml

CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--disable-dev-shm-usage", "--virtual-time-budget=15000"]


def toc_pages(toc_file="_toc.yml"):
    "Paths (without extension) of every page in the table of contents, in order."
    toc = yaml.safe_load(Path(toc_file).read_text())
    pages = [toc["root"]]
    def walk(entries):
        for e in entries or []:
            if "file" in e:
                pages.append(e["file"])
            walk(e.get("sections")); walk(e.get("chapters"))
    for part in toc.get("parts", []):
        walk(part.get("chapters"))
    walk(toc.get("chapters"))
    return pages


class Collect(HTMLParser):
    def __init__(self):
        super().__init__()
        self.imgs, self.scripts = [], []
    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "img" and a.get("src"):
            self.imgs.append(a["src"])
        if tag == "script" and a.get("src"):
            self.scripts.append(a["src"])


def chromium():
    for name in ("chromium", "chromium-browser", "google-chrome"):
        if shutil.which(name):
            return shutil.which(name)
    sys.exit("check_html: no chromium found (apt-get install -y chromium)")


def dump_dom(browser, url, profile):
    r = subprocess.run([browser, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", "--dump-dom", url],
                       capture_output=True, text=True, timeout=120)
    return r.stdout


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("html", nargs="?", default="_build/html")
    ap.add_argument("--screenshots", default=None)
    args = ap.parse_args()
    root = Path(args.html).resolve()
    browser = chromium()
    problems = []
    pages = toc_pages()
    total_figures = 0
    with tempfile.TemporaryDirectory() as profile:
        for page in pages:
            path = root / f"{page}.html"
            if not path.is_file():
                problems.append(f"{page}: no HTML file {path}"); continue
            static = path.read_text(encoding="utf8")
            col = Collect(); col.feed(static)
            # MathJax must be local: no script from another host
            remote = [s for s in col.scripts if urlparse(s).scheme in ("http", "https") or s.startswith("//")]
            if remote:
                problems.append(f"{page}: loads remote scripts {remote}")
            for src in col.imgs:
                if src.startswith("data:"):
                    continue
                if urlparse(src).scheme:
                    problems.append(f"{page}: remote image {src}"); continue
                if not (path.parent / unquote(src.split("#")[0].split("?")[0])).is_file():
                    problems.append(f"{page}: missing image {src}")
            dom = dump_dom(browser, path.as_uri(), profile)
            if "<main" not in dom or "</html>" not in dom:
                problems.append(f"{page}: page did not load in Chromium ({len(dom)} bytes of DOM)"); continue
            has_math = 'class="math' in static
            typeset = dom.count("<mjx-container")
            if has_math and typeset == 0:
                problems.append(f"{page}: has math but nothing was typeset by MathJax")
            if re.search(r"Traceback \(most recent call last\)|class=\"[^\"]*output traceback", dom):
                problems.append(f"{page}: shows a Python traceback")
            if re.search(r"ansi-red-fg\">[A-Za-z]*Error", dom):
                problems.append(f"{page}: shows an error output")
            n_fig = sum(1 for s in col.imgs if not s.startswith("data:"))
            total_figures += n_fig
            executed = root.parent / "jupyter_execute" / f"{page}.ipynb"
            if executed.is_file():   # every figure the executed notebook produced must be on the page
                import json
                nb = json.loads(executed.read_text(encoding="utf8"))
                made = sum(1 for c in nb["cells"] for o in c.get("outputs", [])
                           if any(k.startswith("image/") for k in o.get("data", {})))
                if made > n_fig:
                    problems.append(f"{page}: the notebook made {made} figures but the page shows {n_fig}")
            print(f"ok  {page:45s} images={n_fig:2d} math_typeset={typeset}")
            if args.screenshots:
                out = Path(args.screenshots); out.mkdir(parents=True, exist_ok=True)
                subprocess.run([browser, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", "--window-size=1280,2400",
                                f"--screenshot={out / (page.replace('/', '_') + '.png')}", path.as_uri()],
                               capture_output=True, timeout=120)
    if total_figures == 0:
        problems.append("no page of the book shows a figure (were the notebooks run with a non-inline MPLBACKEND?)")
    if problems:
        print("\n".join(["", "check_html: FAILED", *problems]))
        sys.exit(1)
    print(f"check_html: {len(pages)} pages OK")


if __name__ == "__main__":
    main()
