"""The inspect pages in a real browser (headless Chromium): the figures draw, hovering answers with
the right numbers, every unit can be reached, and no text of the user's can break a page."""
import base64
import html
import json
import os
import re
import subprocess
import sys
import tempfile
import zipfile

import numpy as np
import pytest
from test_inspect import KINDS, TINY, page_data, write_one_token_tree

from numpy_lstm.cli import main
from numpy_lstm.inspection import STATES, inspect_review
from numpy_lstm.report import _figure_data, write_errors_report
from numpy_lstm.rundir import RunDir

# Hovers every figure of a page the way a mouse would (mousemove events at points of its
# canvases) and writes what the tooltip said into <pre id='probe'> as JSON: the test reads it
# from the DOM that Chromium dumps. It also counts each canvas's drawn pixels, clicks each
# quantity's button and one row of each heatmap.
PROBE = r"""
<script>
(function () {
  var out = { figures: {}, states: [], scripts: document.scripts.length, pwned: typeof window.pwned };
  function tipAt(canvas, x, y) {
    var r = canvas.getBoundingClientRect();
    canvas.dispatchEvent(new MouseEvent("mousemove", { clientX: r.left + x, clientY: r.top + y, bubbles: true }));
    var tip = document.querySelector(".tip");
    return tip && tip.style.display === "block" ? tip.textContent : null;
  }
  function ink(canvas) {
    var d = canvas.getContext("2d").getImageData(0, 0, canvas.width, canvas.height).data, n = 0;
    for (var k = 0; k < d.length; k += 4) if (d[k + 3] > 0 && (d[k] < 230 || d[k + 1] < 230 || d[k + 2] < 230)) n++;
    return n;
  }
  function sweep(canvas, along, at, step, tips) {
    var r = canvas.getBoundingClientRect();
    tips = tips || [];
    var end = along === "x" ? r.width : r.height;
    for (var v = 0; v < end; v += step) {
      var t = along === "x" ? tipAt(canvas, v, at) : tipAt(canvas, at, v);
      if (t !== null && tips.indexOf(t) < 0) tips.push(t);
    }
    return tips;
  }
  function firstColumn(canvas, y) {
    for (var x = 0; x < canvas.getBoundingClientRect().width; x++) if (tipAt(canvas, x, y) !== null) return x + 3;
    return -1;
  }
  document.querySelectorAll("[id]").forEach(function (host) {
    var canvases = host.querySelectorAll(":scope > .figure-row canvas");
    if (!canvases.length) return;
    var tiles = host.querySelectorAll(":scope > .figure-row .figure-scroll canvas");
    var tips = [];
    tiles.forEach(function (tile) { sweep(tile, "x", 20, 5, tips); });
    out.figures[host.id] = { ink: Array.prototype.map.call(canvases, ink), tips: tips,
                             width: Array.prototype.reduce.call(tiles, function (w, t) { return w + t.width; }, 0)
                                    / (window.devicePixelRatio || 1),
                             key: (document.getElementById(host.id + "-key") || {}).textContent || null };
  });
  document.querySelectorAll(".states").forEach(function (host) {
    var view = { tips: {}, legends: {}, ink: {}, caption: null };
    var buttons = host.querySelectorAll(".controls button");
    for (var b = 0; b < 6; b++) {
      buttons[b].click();
      var tile = host.querySelector(".heat .figure-scroll canvas"), x = firstColumn(tile, 12);
      view.tips[b] = sweep(tile, "y", x, 1).concat(sweep(tile, "x", 12, 3));
      view.legends[b] = host.querySelector(".legend canvas").getAttribute("aria-label");
      view.ink[b] = ink(tile);
    }
    buttons[6].click();                               // rows by unit number: unit 1 in the second row
    var heat = host.querySelector(".heat .figure-scroll canvas"), r = heat.getBoundingClientRect();
    var column = firstColumn(heat, 12), row;
    for (row = 0; row < r.height; row++) if ((tipAt(heat, column, row) || "").indexOf("unit 1 ") === 0) break;
    heat.dispatchEvent(new MouseEvent("click", { clientX: r.left + column, clientY: r.top + row, bubbles: true }));
    view.caption = host.querySelector(".caption").textContent;
    view.detail = sweep(host.querySelector(".detail .figure-scroll canvas"), "x", 20, 3);
    out.states.push(view);
  });
  var pre = document.createElement("pre");
  pre.id = "probe";
  pre.textContent = JSON.stringify(out);
  document.body.appendChild(pre);
})();
</script>
"""
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TIP = re.compile(r"step (\d+) of (\d+), word (\d+) of (\d+): \u201c(.*)\u201d$")
HOSTILE = ("cash$$ $_$ {x} \\back 100% snake_case <script>window.pwned=1</script> "
           "<img src=x onerror=window.pwned=1> '\" & </textarea> \u2028 " + "Long" * 60)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    tree = write_one_token_tree(tmp_path_factory.mktemp("imdb"))
    root = tmp_path_factory.mktemp("runs")
    kinds = {**KINDS, "long": (["--maxlen", "1200", "--mask", "--lr", "0.01"], 2)}
    for name in ("tutorial", "bidirectional-max", "long"):
        flags, epochs = kinds[name]
        args = ["train", "--data", str(tree), "--out", str(root / name), "--epochs", str(epochs), *TINY, *flags]
        assert main(args) == 0, name
    return root


def chromium_run(chromium, *args):
    """Headless Chromium on its own throwaway profile: no network services, no GPU."""
    with tempfile.TemporaryDirectory() as profile:
        proc = subprocess.run([chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                               "--no-first-run", "--disable-background-networking", "--disable-component-update",
                               "--disable-sync", f"--user-data-dir={profile}", *args],
                              capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc.stdout


def probe(chromium, page):
    """Load a copy of the page with PROBE at its end; what PROBE found."""
    probed = page.with_name("probed.html")
    probed.write_text(page.read_text().replace("</body>", PROBE + "</body>"))
    dom = chromium_run(chromium, "--window-size=1200,900", "--dump-dom", probed.as_uri())
    return json.loads(html.unescape(re.search(r"<pre id=\"probe\">(.*?)</pre>", dom, re.S).group(1)))


def word_of(tip, tokens, steps):
    """The word index (from 0) a tooltip names, checked against the review's tokens and steps."""
    line = next(line for line in tip.split("\n") if TIP.search(line))
    step, total, k, n, word = TIP.search(line).groups()
    assert (int(total), int(n)) == (steps, len(tokens)) and word == tokens[int(k) - 1], tip
    assert int(step) == steps - len(tokens) + int(k)
    return int(k) - 1


def inspect_json(run, text, out, capsys):
    assert main(["inspect", str(run), text, "--json", "--out", str(out)]) == 0
    return json.loads(capsys.readouterr().out)


@pytest.mark.parametrize("kind", ["tutorial", "bidirectional-max"])
def test_every_figure_draws_and_hovering_gives_its_numbers(kind, chromium, runs, tmp_path, capsys):
    out = inspect_json(runs / kind, "A great movie, the story and the music; a camera, an actor.", tmp_path, capsys)
    found = probe(chromium, tmp_path / "report.html")
    tokens, T = out["tokens"], len(page_data((tmp_path / "report.html").read_text())["gradients"][0]["values"])
    figures = found["figures"]
    expected = {"attributions", "occlusion", "gradients"} | ({"running"} if out["running_probability"] else set())
    assert expected <= set(figures)
    for name, figure in figures.items():
        assert all(n > 200 for n in figure["ink"]), (name, figure["ink"])     # axis and plot both drawn
    for name, key, values in (("attributions", "attribution", out["attributions"]),
                              ("running", "P(positive) after it", out["running_probability"])):
        if name not in figures:
            continue
        seen = set()
        for tip in figures[name]["tips"]:
            k = word_of(tip, tokens, T)
            value = float(re.search(re.escape(key) + r" = ([-+0-9.]+)", tip).group(1))
            assert value == pytest.approx(values[k], abs=6e-5), tip
            seen.add(k)
        assert seen == set(range(len(tokens)))                               # every word's column
    gradient_tips = figures["gradients"]["tips"]
    assert len([t for t in gradient_tips if "d logit / d x_t" in t]) >= len(tokens)
    key = figures["gradients"]["key"]
    assert ("padding" in key) == (T > len(tokens)) and key.count("d logit / d c_t") == len(out["states"])
    if out["running_probability"]:
        assert "leaning positive" in figures["running"]["key"]

    assert len(found["states"]) == len(out["states"])
    for view, states in zip(found["states"], out["states"]):
        H = len(states["h"][0])
        for b, name in enumerate(STATES):
            assert name in view["legends"][str(b)] and view["ink"][str(b)] > 1000
            units, words = set(), set()
            for tip in view["tips"][str(b)]:
                unit = re.match(r"unit (\d+) \(rank (\d+) of (\d+)", tip)
                if not unit:
                    continue
                k, u = word_of(tip, tokens, T), int(unit.group(1))
                value = float(re.search(rf"\n{name} = ([-0-9.]+)$", tip).group(1))
                assert value == pytest.approx(states[name][k][u], abs=6e-5), (tip, states[name][k][u])
                units.add(u)
                words.add(k)
            assert units == set(range(H)) and words == set(range(len(tokens))), name   # all reachable
        assert view["caption"].startswith("Below: every quantity of unit 1 (")
        for tip in view["detail"]:
            k = word_of(tip, tokens, T)
            for name in STATES:
                value = float(re.search(rf"\n{name} = ([-0-9.]+)", tip).group(1))
                assert value == pytest.approx(states[name][k][1], abs=6e-5)


def test_a_page_of_a_thousand_words_keeps_its_labels_readable(chromium, runs, tmp_path):
    filler = "movie film plot actor scene story director camera music ending character script".split()
    text = " ".join(filler[k % len(filler)] for k in range(1000)) + " great"
    assert main(["inspect", str(runs / "long"), text, "--out", str(tmp_path)]) == 0
    found = probe(chromium, tmp_path / "report.html")
    # Every word has a column at least 18 px wide, room for its 12 px label slanted at 60 degrees:
    # 1,001 words make figures over 18,000 px wide, drawn in several canvases, that scroll.
    tokens = text.split()
    for name in ("running", "attributions", "occlusion", "gradients"):
        figure = found["figures"][name]
        assert figure["width"] >= 18 * len(tokens) and all(n > 200 for n in figure["ink"]), name
        assert {word_of(t, tokens, len(tokens)) for t in figure["tips"]} == set(range(len(tokens))), name


def test_any_text_is_safe_in_the_page_and_the_figures(chromium, runs, tmp_path, capsys):
    out = inspect_json(runs / "tutorial", HOSTILE, tmp_path, capsys)
    page = (tmp_path / "report.html").read_text()
    assert page_data(page)["words"] == out["tokens"]
    assert any("$" in t for t in out["tokens"]) and any(len(t) == 240 for t in out["tokens"])
    assert page.count("<script") == 2 and "window.pwned=1</script>" not in page
    found = probe(chromium, tmp_path / "report.html")
    assert found["pwned"] == "undefined" and found["scripts"] == 3           # data, code, probe
    # Each word, whole in the tooltip however long, under its own column.
    steps = len(page_data(page)["gradients"][0]["values"])
    shown = {word_of(t, out["tokens"], steps) for t in found["figures"]["attributions"]["tips"]}
    assert shown == set(range(len(out["tokens"])))


def test_the_errors_page_shows_the_review_as_written(chromium, runs, tmp_path):
    model, vocab, config = RunDir(runs / "tutorial").load_model()
    text = "It's GREAT -- really!<br /><br />Don't miss it. " + HOSTILE
    ins = inspect_review(model, vocab, config, text)
    path = write_errors_report([(ins, 0, 7)], str(tmp_path), "run$_{x}", 100)
    page = open(path).read()
    assert "Test review 7: true label: negative; the model: P(positive) = " in page
    # The words as written ("GREAT", "Don't"), the marks between them, "<br />" as a line break.
    assert ">GREAT</span> -- <span" in page and ">really</span>!<br><br><span" in page
    assert ">Don&#x27;t</span>" in page and "title='“dont”: read" in page
    assert "<script" not in page and "&lt;script&gt;window" in page and "&lt;img" in page
    check = "<script>document.title = typeof window.pwned + ' ' + document.scripts.length;</script></body>"
    (tmp_path / "probed.html").write_text(page.replace("</body>", check))
    dom = chromium_run(chromium, "--dump-dom", (tmp_path / "probed.html").as_uri())
    assert "<title>undefined 1</title>" in dom                       # nothing of the review ran


def test_the_plain_install_ships_the_page_files(tmp_path):
    """`pip install .` (a wheel) carries numpy_lstm/static/, which every page copies in."""
    proc = subprocess.run([sys.executable, "-m", "pip", "wheel", ".", "--no-deps", "-q", "-w", str(tmp_path)],
                          capture_output=True, text=True, timeout=600, cwd=REPO)
    assert proc.returncode == 0, proc.stderr[-2000:]
    (wheel,) = tmp_path.glob("numpy_lstm-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    for name in ("figures.js", "inspect.js", "inspect.css"):
        assert f"numpy_lstm/static/{name}" in names


def test_the_figures_numbers_are_the_inspections(runs):
    """The page's embedded states decode to the Inspection's own, as float32."""
    model, vocab, config = RunDir(runs / "bidirectional-max").load_model()
    ins = inspect_review(model, vocab, config, "great movie plot")
    data = _figure_data(ins)
    n = len(ins.attributions)
    for view, encoded in zip(ins.views, data["views"]):
        for name in STATES:
            decoded = np.frombuffer(base64.b64decode(encoded["states"][name]), "<f4").reshape(n, -1)
            np.testing.assert_array_equal(decoded, getattr(view, name)[-n:].astype(np.float32))
