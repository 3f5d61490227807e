"""The reader's check of the built book: every page of the table of contents is opened in headless
Chromium at 1280 px, as a reader would, and fails loudly, one line per problem (`page: what
(where)`), on:

- a page that does not load, math that is not typeset offline, a script from another host, a
  missing image, a Python traceback or error output, fewer figures than the notebook made;
- the same image (same content: files and data: URIs) shown twice on one page;
- `nan` / `NaN` / `<NA>` / `NaT` in a table cell (pandas and Styler tables, Markdown tables);
- an object repr in an output (`<... object at 0x...>`, `<torch._C. ...>`);
- a code block, output block, table or image wider than the content column (the reader must
  scroll sideways, or part of it is cut); code in collapsed cells is measured expanded;
- words about how the book was made instead of the methods ("the CI setting", "sized for CI",
  "the session before", "an earlier run", a run's date or clock time...) in prose or outputs;
- any error in the browser console while the page loads (uncaught exceptions, script syntax
  errors, resources that fail to load, console.error).

How: each page is copied next to itself with a small script (.ci/reader_probe.js) injected at
the top of <head>, and opened in one headless Chromium, driven over its DevTools pipe (one tab
per job, whose stored data is cleared after every page: each page is a reader's first visit).
The script records errors from the first moment, and once the page (and MathJax) has settled it
expands collapsed cells, measures every element, collects the text of prose and outputs (code
excluded) and writes its findings into the DOM, which the check then reads, with the exceptions
the page threw. --jobs pages are open at a time; the report keeps the book's order.

Usage: python .ci/check_html.py [_build/html] [--toc _toc.yml] [--page nbs/x/y ...]
       [--jobs N] [--screenshots DIR]"""
import argparse
import base64
import fcntl
import hashlib
import html
import json
import os
import queue
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlparse

import yaml

WIDTH = 1280
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--disable-dev-shm-usage", "--virtual-time-budget=15000",
                  f"--window-size={WIDTH},1000", "--enable-logging=stderr", "--v=0"]
PROBE_JS = Path(__file__).with_name("reader_probe.js")
RESULT_ATTR = "data-reader-check"

# Words of the workshop, not of the book: case-insensitive, searched in prose and in outputs.
WORKSHOP = [
    r"\bsized for CI\b", r"\bCI[- ](?:setting|settings|size|sized|scale|budget|run|runs|job|jobs"
    r"|machine|machines|time|default|defaults)\b",
    r"\b(?:the|our|in|on|for|by|outside|inside|during|keep|every|under|of) CI\b",
    r"\bCI(?:'s| is| runs| checks| would)\b", r"\bcontinuous integration\b",
    r"\b(?:this|last|previous|earlier|prior|same|that|the|next|other|these) sessions?\b",
    r"\bsessions?(?:'s?)? (?:before|ago|earlier|work)\b",
    r"\b(?:an|the|this|that|our|my) (?:earlier|previous|prior|last|latest|recent) "
    r"(?:run|runs|session|measurement|measurements|attempt|version)\b",
    r"\bin (?:these|those|both|two|earlier|previous) runs\b", r"\bsame day\b", r"\byesterday\b",
    r"\blast (?:night|week)\b", r"\bthis morning\b", r"\bTODO\b", r"\bFIXME\b", r"\bXXX\b",
]
# A run's date or clock time: searched in prose only (a results table may name its machine).
_MONTH = (r"(?:Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Sept|Oct|Nov|Dec)[a-z]*\.?")
WHEN = [
    r"\b(?:19|20)\d\d-[01]\d-[0-3]\d\b",
    rf"\b[0-3]?\d(?:st|nd|rd|th)? {_MONTH},? (?:19|20)\d\d\b",
    rf"\b{_MONTH} [0-3]?\d(?:st|nd|rd|th)?,? (?:19|20)\d\d\b",
    r"\b[0-2]?\d:[0-5]\d(?::[0-5]\d)?(?:\s*-\s*[0-2]?\d:[0-5]\d)?\s*(?:UTC|GMT|CES?T|[PE][SD]T)\b",
    r"\b(?:a |the )?(?:run|runs|ran|measured|started|finished|recorded) at [0-2]?\d[:h][0-5]\d\b",
]
WORKSHOP_RE = re.compile("|".join(f"(?:{p})" for p in WORKSHOP), re.IGNORECASE)
WHEN_RE = re.compile("|".join(f"(?:{p})" for p in WHEN), re.IGNORECASE)
REPR_RE = re.compile(r"<torch\._C\.[^\n]{0,60}?(?:>|$)|<[^<>\n]{1,80} at 0x[0-9a-fA-F]{4,}>"
                     r"|\bobject at 0x[0-9a-fA-F]{4,}", re.MULTILINE)
TRACEBACK_RE = re.compile(r"Traceback \(most recent call last\)|class=\"[^\"]*output traceback")
MATH_RE = re.compile(r"class=[\"'](?:[^\"']* )?math[\"' ]")
ERROR_OUTPUT_RE = re.compile(r"ansi-red-fg\">[A-Za-z]*Error")


def toc_pages(toc_file="_toc.yml"):
    "Paths (without extension) of every page in the table of contents, in order."
    toc = yaml.safe_load(Path(toc_file).read_text())
    pages = [toc["root"]]

    def walk(entries):
        for e in entries or []:
            if "file" in e:
                pages.append(e["file"])
            walk(e.get("sections"))
            walk(e.get("chapters"))
    for part in toc.get("parts", []):
        walk(part.get("chapters"))
    walk(toc.get("chapters"))
    return pages


class Collect(HTMLParser):
    "Script sources of the whole page; image sources inside <main>."
    def __init__(self):
        super().__init__()
        self.imgs, self.scripts, self._main = [], [], 0

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        self._main += tag == "main"
        if tag == "img" and a.get("src") and self._main:
            self.imgs.append(a["src"])
        if tag == "script" and a.get("src"):
            self.scripts.append(a["src"])

    def handle_endtag(self, tag):
        self._main -= tag == "main" and self._main > 0


def chromium():
    for name in ("chromium", "chromium-browser", "google-chrome"):
        if shutil.which(name):
            return shutil.which(name)
    sys.exit("check_html: no chromium found (apt-get install -y chromium)")


def short(text, n=70):
    text = " ".join(str(text).split())
    return text if len(text) <= n else text[:n - 3] + "..."


class Browser:
    """One headless Chromium for every page, driven over its DevTools pipe
    (`--remote-debugging-pipe`: JSON messages ending in a NUL byte, on file descriptors 3 and 4).
    Starting a browser per page cost about a second each, and starts did not run in parallel."""

    def __init__(self, exe, tabs=1):
        self.exe, self.profile = exe, tempfile.mkdtemp(prefix="reader-check-")
        to_r, to_w = os.pipe()
        from_r, from_w = os.pipe()
        ends = [fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 10) for fd in (to_r, from_w)]
        for fd in (to_r, from_w):
            os.close(fd)

        def pipe_ends():                    # in the child: its end of each pipe as fd 3 and 4
            os.dup2(ends[0], 3)
            os.dup2(ends[1], 4)
        flags = [f for f in CHROMIUM_FLAGS if not f.startswith("--virtual-time-budget")]
        flags += ["--disable-renderer-backgrounding", "--disable-background-timer-throttling",
                  "--disable-backgrounding-occluded-windows"]      # every tab is in front
        self.proc = subprocess.Popen(
            [exe, *flags, "--remote-debugging-pipe", f"--user-data-dir={self.profile}",
             "about:blank"], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL, close_fds=False, preexec_fn=pipe_ends)
        for fd in ends:
            os.close(fd)
        self.out, self.inp = to_w, from_r
        self.lock, self.next_id, self.replies, self.thrown = threading.Lock(), 0, {}, {}
        threading.Thread(target=self._read, daemon=True).start()
        # One tab per page open at a time (pages are opened in it one after another).
        self.tabs = queue.Queue()
        for _ in range(tabs):
            self.tabs.put(self.new_tab())

    def _read(self):
        buf = b""
        while chunk := os.read(self.inp, 1 << 16):
            *messages, buf = (buf + chunk).split(b"\0")
            for raw in messages:
                msg = json.loads(raw)
                if "id" in msg:
                    slot = self.replies[msg["id"]]
                    slot.append(msg)
                    slot[0].set()
                elif msg.get("method") == "Runtime.exceptionThrown":
                    d = msg["params"]["exceptionDetails"]
                    what = d.get("exception", {}).get("description") or ""
                    self.thrown.setdefault(msg.get("sessionId"), []).append(
                        f"{d.get('text', 'Uncaught')} {what.splitlines()[0] if what else ''}"
                        .strip())
        for slot in list(self.replies.values()):          # the browser is gone
            slot[0].set()

    def send(self, method, session=None, **params):
        with self.lock:
            self.next_id += 1
            mid, slot = self.next_id, [threading.Event()]
            self.replies[mid] = slot
            msg = {"id": mid, "method": method, "params": params}
            if session:
                msg["sessionId"] = session
            os.write(self.out, json.dumps(msg).encode() + b"\0")
        if not slot[0].wait(120) or len(slot) < 2:
            raise RuntimeError(f"Chromium did not answer {method}")
        reply = self.replies.pop(mid)[1]
        if "error" in reply:
            raise RuntimeError(f"{method}: {reply['error'].get('message')}")
        return reply.get("result", {})

    def evaluate(self, session, expression):
        return self.send("Runtime.evaluate", session, expression=expression,
                         returnByValue=True)["result"].get("value")

    def new_tab(self):
        "A browser context of its own with one page in it: the page's DevTools session."
        context = self.send("Target.createBrowserContext")["browserContextId"]
        target = self.send("Target.createTarget", url="about:blank",
                           browserContextId=context)["targetId"]
        session = self.send("Target.attachToTarget", targetId=target, flatten=True)["sessionId"]
        self.send("Runtime.enable", session)
        return session

    def open(self, url, settle=10.0):
        """Open url at the window size of CHROMIUM_FLAGS as a first visit (the tab's stored data
        is cleared after every page); once the probe has written its result (or `settle` seconds
        after the load event), return (DOM, uncaught exceptions)."""
        session = self.tabs.get()                # a free tab (see __init__)
        try:
            return self._open(session, url, settle)
        finally:
            self.tabs.put(session)

    def _open(self, session, url, settle):
        w, h = next(map(int, f.split("=")[1].split(",")) for f in CHROMIUM_FLAGS
                    if f.startswith("--window-size="))
        self.send("Emulation.setDeviceMetricsOverride", session, width=w, height=h,
                  deviceScaleFactor=1, mobile=False)
        self.thrown.pop(session, None)
        self.send("Page.navigate", session, url=url)
        loaded, deadline = None, time.monotonic() + 120
        while time.monotonic() < deadline:
            state = self.evaluate(session, f"[document.URL, document.readyState, "
                                  f"document.documentElement.hasAttribute('{RESULT_ATTR}')]")
            if state and state[0] == url and state[2]:
                break
            if state and state[0] == url and state[1] == "complete":
                loaded = loaded or time.monotonic()
                if time.monotonic() - loaded > settle:
                    break
            time.sleep(0.05)
        dom = self.evaluate(session, "document.documentElement.outerHTML") or ""
        thrown = self.thrown.pop(session, [])
        # A first visit for the next page: no stored data, and no result of this one in the
        # DOM. (Not a navigation to about:blank: with more than two tabs, Chromium 156 then
        # stopped answering the next Page.navigate.)
        self.evaluate(session, "try { localStorage.clear(); sessionStorage.clear(); } catch (e) {}"
                      f"document.documentElement.removeAttribute('{RESULT_ATTR}')")
        return dom, thrown

    def close(self):
        self.proc.kill()
        self.proc.wait()
        for fd in (self.out, self.inp):
            os.close(fd)
        shutil.rmtree(self.profile, ignore_errors=True)


def probe(browser, path):
    """Open a copy of the page with the probe injected (a first visit: nothing stored from other
    pages); return (DOM, the probe's findings or None, uncaught exceptions)."""
    src = path.read_text(encoding="utf8")
    tag = f"<script>{PROBE_JS.read_text(encoding='utf8')}</script>".replace("\n", " ")
    m = re.search(r"<head[^>]*>", src, re.IGNORECASE)
    at = m.end() if m else 0
    copy = path.with_name(f".{path.stem}.reader-check.html")
    copy.write_text(src[:at] + tag + src[at:], encoding="utf8")
    try:
        dom, thrown = browser.open(copy.as_uri())
    finally:
        copy.unlink(missing_ok=True)
    m = re.search(rf'{RESULT_ATTR}="([^"]*)"', dom)
    found = json.loads(html.unescape(m.group(1))) if m else None
    return dom, found, thrown


def image_bytes(src, page_path):
    "Content of an image (file or data: URI), or None when it cannot be read."
    if src.startswith("data:"):
        head, _, data = src.partition(",")
        try:
            return base64.b64decode(data) if head.endswith(";base64") else unquote(data).encode()
        except ValueError:
            return None
    if urlparse(src).scheme:
        return None
    f = page_path.parent / unquote(src.split("#")[0].split("?")[0])
    return f.read_bytes() if f.is_file() else None


def where(section, extra=""):
    parts = [f"section '{short(section, 50)}'" if section else "", extra]
    return "; ".join(p for p in parts if p)


def static_problems(page, path, static):
    "What the HTML file alone shows: remote scripts, missing or remote images."
    problems = []
    col = Collect()
    col.feed(static)
    remote = [s for s in col.scripts
              if urlparse(s).scheme in ("http", "https") or s.startswith("//")]
    for s in remote:     # MathJax must be local: no script from another host
        problems.append(f"{page}: loads a script from another host ({short(s)})")
    for src in col.imgs:
        if src.startswith("data:"):
            continue
        if urlparse(src).scheme:
            problems.append(f"{page}: image from another host ({short(src)})")
        elif not (path.parent / unquote(src.split("#")[0].split("?")[0])).is_file():
            problems.append(f"{page}: missing image ({short(src)})")
    return problems, col


def duplicate_images(page, path, images):
    "One line per image whose content is shown more than once on the page."
    seen = {}
    for i, img in enumerate(images, 1):
        data = image_bytes(img["src"], path)
        if data:
            seen.setdefault(hashlib.sha256(data).hexdigest(), []).append((i, img))
    problems = []
    for same in seen.values():
        if len(same) > 1:
            nums = ", ".join(str(i) for i, _ in same)
            secs = sorted({img["section"] for _, img in same if img["section"]})
            problems.append(f"{page}: the same image shown {len(same)} times "
                            f"({where('; '.join(secs), f'images {nums} of {len(images)}')})")
    return problems


def text_problems(page, blocks):
    "Workshop words in prose and outputs, dates in prose, object reprs in outputs."
    problems = []
    for b in blocks:
        text, kind = b["text"], b["kind"]
        checks = [(WORKSHOP_RE, "words of the workshop")]
        if kind == "prose":
            checks.append((WHEN_RE, "a run's date or time"))
        else:
            checks.append((REPR_RE, "an object repr"))
        for rx, what in checks:
            for m in rx.finditer(text):
                ctx = text[max(0, m.start() - 30):m.end() + 30]
                problems.append(f"{page}: {what} in {'an output' if kind == 'output' else 'prose'}"
                                f" \"{short(m.group(0), 50)}\" ({where(b['section'])}: "
                                f"\"{short(ctx, 90)}\")")
    return problems


def layout_problems(page, found):
    problems = []
    for t in found["nan_tables"]:
        at = where(t["section"], "columns " + short(t["label"], 60))
        problems.append(f"{page}: {t['n']} of {t['cells']} cells of a table read "
                        f"{'/'.join(t['values'])} ({at})")
    for w in found["wide"]:
        hidden = " (collapsed)" if w["collapsed"] else ""
        at = where(w["section"], short(w["label"], 60))
        problems.append(f"{page}: {w['kind']}{hidden} wider than the content column by "
                        f"{w['over']} px ({w['width']} px, column {w['column']} px) ({at})")
    return problems


def check_page(page, path, browser, profiles, executed=None, screenshots=None):
    """All problems of one page, as lines `page: what (where)`, and a one-line summary."""
    static = path.read_text(encoding="utf8")
    problems, col = static_problems(page, path, static)
    dom, found, logged = probe(browser, path)
    if "<main" not in dom or "</html>" not in dom:
        return problems + [f"{page}: did not load in Chromium ({len(dom)} bytes of DOM)"], "no DOM"
    if found is None or "fatal" in found:
        why = found["fatal"] if found else "no result in the DOM"
        return problems + [f"{page}: the reader's probe did not run ({short(why)})"], "no probe"
    if found["viewport"] != WIDTH:
        problems.append(f"{page}: measured at {found['viewport']} px, not {WIDTH} px")
    typeset = dom.count("<mjx-container")
    if MATH_RE.search(static) and typeset == 0:
        problems.append(f"{page}: has math but nothing was typeset by MathJax")
    if TRACEBACK_RE.search(dom):
        problems.append(f"{page}: shows a Python traceback")
    if ERROR_OUTPUT_RE.search(dom):
        problems.append(f"{page}: shows an error output")
    hooked = found["errors"]
    for err in dict.fromkeys(hooked + [e for e in logged
                                       if not any(f.startswith(e) for f in hooked)]):
        problems.append(f"{page}: browser console error ({short(err, 120)})")
    problems += duplicate_images(page, path, found["images"])
    problems += layout_problems(page, found)
    problems += text_problems(page, found["blocks"])
    n_img = len(found["images"])
    if executed is not None and executed.is_file():
        nb = json.loads(executed.read_text(encoding="utf8"))
        made = sum(1 for c in nb["cells"] for o in c.get("outputs", [])
                   if any(k.startswith("image/") for k in o.get("data", {})))
        if made > n_img:
            problems.append(f"{page}: the notebook made {made} figures but the page shows {n_img}")
    if screenshots:
        out = Path(screenshots)
        out.mkdir(parents=True, exist_ok=True)
        subprocess.run([browser.exe, *CHROMIUM_FLAGS, f"--user-data-dir={profiles}",
                        f"--window-size={WIDTH},2400",
                        f"--screenshot={out / (page.replace('/', '_') + '.png')}", path.as_uri()],
                       capture_output=True, timeout=120)
    return problems, f"images={n_img:2d} math typeset={typeset}"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("html", nargs="?", default="_build/html")
    ap.add_argument("--toc", default="_toc.yml")
    ap.add_argument("--page", action="append", help="check only this page (repeatable)")
    ap.add_argument("--screenshots", default=None)
    ap.add_argument("--jobs", type=int, default=min(4, os.cpu_count() or 1),
                    help="pages loaded at the same time (default: cores, at most 4)")
    args = ap.parse_args()
    root = Path(args.html).resolve()
    browser = Browser(chromium(), tabs=args.jobs)
    pages = args.page or toc_pages(args.toc)
    problems, total_images = [], 0
    def one(page):
        path = root / f"{page}.html"
        if not path.is_file():
            return [f"{page}: no HTML file ({path})"], "missing"
        executed = root.parent / "jupyter_execute" / f"{page}.ipynb"
        return check_page(page, path, browser, profiles, executed, args.screenshots)

    with tempfile.TemporaryDirectory() as profiles, ThreadPoolExecutor(args.jobs) as pool:
        for page, (found, summary) in zip(pages, pool.map(one, pages)):   # in the book's order
            total_images += int(re.search(r"images=\s*(\d+)", summary + " images=0").group(1))
            print(f"{'ok ' if not found else 'BAD'} {page:45s} {summary}"
                  f"{'' if not found else f'  ({len(found)} problems)'}", flush=True)
            problems += found
    browser.close()
    if total_images == 0 and not args.page:
        problems.append("book: no page shows a figure (were the notebooks run with a non-inline "
                        "MPLBACKEND?)")
    if problems:
        print("\n".join(["", f"check_html: FAILED, {len(problems)} problems", *problems]))
        sys.exit(1)
    print(f"check_html: {len(pages)} pages OK")


if __name__ == "__main__":
    main()
