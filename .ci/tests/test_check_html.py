"""Tests of the reader's check (.ci/check_html.py): each check on a tiny page that has the defect
(it must be reported, one line `page: what (where)`) and on a clean page (nothing reported).
Needs Chromium (apt-get install chromium); without it every test fails.
Run: python -m pytest .ci/tests -q"""
import base64
import importlib.util
import json
import subprocess
import sys
import zlib
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
spec = importlib.util.spec_from_file_location("check_html", HERE.parent / "check_html.py")
ch = importlib.util.module_from_spec(spec)
spec.loader.exec_module(ch)

STYLE = """<style>
body { margin: 0; font: 16px sans-serif; }
article.bd-article { width: 600px; padding: 0 20px; }
pre { overflow-x: auto; font: 14px monospace; }
.scroll { overflow-x: auto; }
</style>"""


def png(r, g, b, size=4):
    "A tiny valid PNG of one colour (distinct colours give distinct images)."
    def chunk(kind, data):
        body = kind + data
        return len(data).to_bytes(4, "big") + body + zlib.crc32(body).to_bytes(4, "big")
    raw = b"".join(b"\x00" + bytes([r, g, b]) * size for _ in range(size))
    ihdr = size.to_bytes(4, "big") * 2 + bytes([8, 2, 0, 0, 0])
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(raw))
            + chunk(b"IEND", b""))


def page(tmp_path, body, head="", name="page"):
    "Write a page shaped like the book's (main > article.bd-article > section) and return its path."
    path = tmp_path / f"{name}.html"
    path.write_text(f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>t</title>{STYLE}"
                    f"{head}</head><body><main><article class='bd-article'><section><h1>Title</h1>"
                    f"{body}</section></article></main></body></html>", encoding="utf8")
    return path


def code(src):
    return ("<div class='cell'><div class='cell_input'><div class='highlight'>"
            f"<pre>{src}</pre></div></div></div>")


def output(text):
    return ("<div class='cell_output'><div class='output stream'><div class='highlight'>"
            f"<pre>{text}</pre></div></div></div>")


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    browser = ch.Browser(ch.chromium())
    profiles = tmp_path_factory.mktemp("profiles")

    def check(path, executed=None):
        problems, _ = ch.check_page("p", path, browser, profiles, executed)
        for line in problems:
            assert line.startswith("p: ")
        return problems
    yield check
    browser.close()


def one(problems, text):
    "The problems that contain `text`."
    return [p for p in problems if text in p]


CLEAN = (
    "<p>The default size takes a few minutes on two CPU cores; set <code>SCALE = 2</code> for "
    "a larger one. An earlier comparison decides the next; see Liu et al. (2019), a 3:1 ratio.</p>"
    + code("x = sorted(values)  # last session; CI setting\n# object at 0x7f00dead; 2026-11-26")
    + output("tensor([0.1000, 0.2000])")
    + "<table><tr><th>method</th><th>accuracy</th></tr><tr><td>Nancy</td><td>0.91</td></tr>"
    "<tr><td>banana</td><td>nanometre</td></tr></table>"
    "<img src='a.png'><img src='b.png'>"
    "<details><summary>show</summary>" + code("y = 1") + "</details>"
)


def test_clean_page_passes(tmp_path, run):
    (tmp_path / "a.png").write_bytes(png(255, 0, 0))
    (tmp_path / "b.png").write_bytes(png(0, 0, 255))
    assert run(page(tmp_path, CLEAN)) == []


def test_page_that_does_not_load(tmp_path, run):
    path = tmp_path / "p.html"
    path.write_text("<html><body>no main element</body></html>")
    assert one(run(path), "did not load")


def test_math_not_typeset(tmp_path, run):
    assert one(run(page(tmp_path, "<p><span class='math'>\\(x^2\\)</span></p>")),
               "nothing was typeset")


def test_remote_script(tmp_path, run):
    probs = run(page(tmp_path, "<p>x</p>", head="<script src='https://cdn.invalid/m.js'></script>"))
    assert one(probs, "loads a script from another host")


def test_missing_image(tmp_path, run):
    probs = run(page(tmp_path, "<img src='nowhere.png'>"))
    assert one(probs, "missing image (nowhere.png)")
    assert one(probs, "browser console error (could not load img")


def test_traceback_and_error_output(tmp_path, run):
    probs = run(page(tmp_path, output("Traceback (most recent call last):\n  File x")))
    assert one(probs, "shows a Python traceback")
    probs = run(page(tmp_path, "<pre><span class=\"ansi-red-fg\">ValueError</span>: bad</pre>"))
    assert one(probs, "shows an error output")


def test_figures_made_but_not_shown(tmp_path, run):
    (tmp_path / "a.png").write_bytes(png(255, 0, 0))
    nb = {"cells": [{"outputs": [{"data": {"image/png": "..."}}]} for _ in range(2)]}
    (tmp_path / "p.ipynb").write_text(json.dumps(nb))
    probs = run(page(tmp_path, "<img src='a.png'>"), executed=tmp_path / "p.ipynb")
    assert one(probs, "the notebook made 2 figures but the page shows 1")
    nb["cells"] = nb["cells"][:1]
    (tmp_path / "p.ipynb").write_text(json.dumps(nb))
    assert run(page(tmp_path, "<img src='a.png'>"), executed=tmp_path / "p.ipynb") == []


def test_duplicate_images_files_and_data_uris(tmp_path, run):
    red = png(255, 0, 0)
    (tmp_path / "a.png").write_bytes(red)
    (tmp_path / "copy.png").write_bytes(red)          # another file, same content
    uri = "data:image/png;base64," + base64.b64encode(red).decode()
    body = f"<img src='a.png'><h2>Later</h2><img src='copy.png'><img src='{uri}'>"
    probs = run(page(tmp_path, body))
    assert one(probs, "the same image shown 3 times") and one(probs, "images 1, 2, 3 of 3")
    probs = run(page(tmp_path, f"<img src='{uri}'><img src='{uri}'>"))
    assert one(probs, "the same image shown 2 times")


@pytest.mark.parametrize("table", [
    # pandas DataFrame.to_html
    "<table class='dataframe'><thead><tr><th></th><th>time</th></tr></thead><tbody><tr><th>0</th>"
    "<td>NaN</td></tr></tbody></table>",
    # pandas Styler (formats a missing value as nan)
    "<table id='T_1'><thead><tr><th class='col_heading'>acc</th></tr></thead><tbody><tr>"
    "<td id='T_1_row0_col0' class='data row0 col0'>nan</td></tr></tbody></table>",
    # a Markdown table, and pandas' other missing values
    "<table class='table'><tr><th>a</th><th>b</th><th>c</th></tr><tr><td>-nan</td>"
    "<td>&lt;NA&gt;</td><td>NaT</td></tr></table>",
])
def test_nan_in_table(tmp_path, run, table):
    probs = run(page(tmp_path, f"<div class='cell_output'>{table}</div>"))
    assert len(one(probs, "cells of a table read")) == 1


@pytest.mark.parametrize("repr_", [
    "&lt;torch._C.Generator object at 0x7f3b2c1d0e90&gt;",
    "&lt;function relaxed_step at 0x7f00ab12cd34&gt;",
    "&lt;__main__.Model object at 0xdeadbeef&gt;",
    "<__main__.Model object at 0x55d2",
])
def test_object_repr_in_output(tmp_path, run, repr_):
    probs = run(page(tmp_path, output(f"done\n{repr_}")))
    assert len(one(probs, "an object repr in an output")) == 1


WIDE = "x = [" + ", ".join(str(i) for i in range(40)) + "]"


@pytest.mark.parametrize("body, what", [
    (code(WIDE), "code block wider than the content column"),
    (output(WIDE), "output block wider than the content column"),
    ("<details><summary>show</summary>" + code(WIDE) + "</details>",
     "code block (collapsed) wider"),
    ("<div class='scroll'><table><tr>" + "<td>column_name_long</td>" * 12 + "</tr></table></div>",
     "table wider than the content column"),
    ("<table><tr>" + "<td>column_name_long</td>" * 12 + "</tr></table>",
     "table wider than the content column"),
    ("<img src='a.png' style='width: 900px; height: 10px'>", "image wider than the content column"),
])
def test_wider_than_the_column(tmp_path, run, body, what):
    (tmp_path / "a.png").write_bytes(png(255, 0, 0))
    probs = run(page(tmp_path, body))
    assert len(one(probs, what)) == 1, probs


WORKSHOP = ["the CI setting", "sized for CI", "to keep CI fast", "outside CI", "on every CI run",
            "CI runs", "in the session before", "the previous session's", "last session",
            "an earlier run", "the previous run", "in these runs", "at 04:21 the same day",
            "an earlier version of the sampler", "yesterday", "TODO", "continuous integration"]
WHEN = ["2026-11-26", "04:21 UTC", "08:48-08:51 UTC", "26 November 2026", "Nov 26, 2026",
        "a run at 04:21"]


def test_workshop_words_in_prose_and_outputs(tmp_path, run):
    prose = "".join(f"<p>Text {w} text.</p>" for w in WORKSHOP)
    outs = "".join(output(f"{w.upper()}") for w in WORKSHOP)
    probs = run(page(tmp_path, prose + outs + code("# " + " ".join(WORKSHOP))))
    for w in WORKSHOP:
        prose_hits = [p for p in one(probs, "words of the workshop in prose")
                      if w.lower() in p.lower()]
        out_hits = [p for p in one(probs, "words of the workshop in an output")
                    if w.lower() in p.lower()]
        assert prose_hits and out_hits, w
    assert not one(probs, "section 'Title': \"# ")   # nothing from the code cell


def test_dates_in_prose_not_in_code(tmp_path, run):
    prose = "".join(f"<p>Measured {w} on two cores.</p>" for w in WHEN)
    probs = run(page(tmp_path, prose + code("# " + "; ".join(WHEN))))
    for w in WHEN:
        assert [p for p in one(probs, "a run's date or time in prose") if w in p], w
    assert len(one(probs, "a run's date")) == len(WHEN)


@pytest.mark.parametrize("script, message", [
    ("<script>const THEBE_JS_URL = 1;</script><script>const THEBE_JS_URL = 1;</script>",
     "Identifier 'THEBE_JS_URL' has already been declared"),
    ("<script>console.error('Got invalid theme mode')</script>", "console.error: Got invalid"),
    ("<script>window.addEventListener('load', () => null.x)</script>", "TypeError"),
    ("<script>Promise.reject(new Error('late'))</script>", "Uncaught (in promise) Error: late"),
    ("<link rel='stylesheet' href='missing.css'>", "could not load link"),
])
def test_console_errors(tmp_path, run, script, message):
    probs = run(page(tmp_path, "<p>x</p>", head=script))
    assert len(one(probs, "browser console error")) == 1 and one(probs, message), probs


def test_measured_at_1280_px(tmp_path, run, monkeypatch):
    flags = [f for f in ch.CHROMIUM_FLAGS if not f.startswith("--window-size")]
    monkeypatch.setattr(ch, "CHROMIUM_FLAGS", flags + ["--window-size=1000,800"])
    assert one(run(page(tmp_path, "<p>x</p>")), "measured at 1000 px, not 1280 px")


def test_probe_that_does_not_run_is_reported(tmp_path, run, monkeypatch):
    noop = tmp_path / "noop.js"
    noop.write_text("/* does nothing */")
    monkeypatch.setattr(ch, "PROBE_JS", noop)
    assert one(run(page(tmp_path, "<p>x</p>")), "the reader's probe did not run")


def test_main_one_line_per_problem(tmp_path):
    book = tmp_path / "html"
    (book / "nbs").mkdir(parents=True)
    (book / "nbs" / "a.png").write_bytes(png(255, 0, 0))
    (book / "nbs" / "b.png").write_bytes(png(0, 0, 255))
    page(book / "nbs", CLEAN, name="good")
    page(book / "nbs", "<p>Sized for CI.</p><img src='a.png'><img src='a.png'>", name="bad")
    toc = tmp_path / "toc.yml"
    toc.write_text("root: nbs/good\nchapters:\n  - file: nbs/bad\n")
    assert ch.toc_pages(toc) == ["nbs/good", "nbs/bad"]
    cmd = [sys.executable, str(HERE.parent / "check_html.py"), str(book), "--toc", str(toc)]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert r.returncode == 1, r.stdout
    lines = r.stdout.splitlines()
    assert any(x.startswith("ok  nbs/good") for x in lines)
    bad = [x for x in lines if x.startswith("nbs/bad: ")]
    assert len(bad) == 2 and not [x for x in lines if x.startswith("nbs/good: ")]
    r = subprocess.run(cmd[:-2] + ["--page", "nbs/good"], capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == 0 and "1 pages OK" in r.stdout


def test_every_page_is_a_first_visit(tmp_path, run):
    "Each page gets a fresh profile: an error that only a first visit shows is seen on every page."
    head = ("<script>if (!localStorage.getItem('seen')) console.error('first visit');"
            "localStorage.setItem('seen', '1');</script>")
    for name in ("one", "two"):
        assert one(run(page(tmp_path, "<p>x</p>", head=head, name=name)), "first visit")
