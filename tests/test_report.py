"""``vaekit report``: one self-contained HTML page of a run, or of several side by side; the page
``vaekit train`` writes; refusals; and the page in a real browser (nothing fetched, nothing
logged, every image drawn, nothing cut off)."""

from __future__ import annotations

import base64
import json
import math
import shutil
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest

import vaekit
from browser import browser, console_errors, failed_requests  # noqa: F401  (a fixture)
from cli_helpers import ok, refused
from vaekit import figures
from vaekit.config import ModelConfig, TrainConfig
from vaekit.report import EVALUATION, REPORT, format_metric, write_report
from vaekit.runs import load_run

# the figures summary.json holds for a VAE, as the metrics table must show them
SUMMARY_ROWS = ("elbo", "reconstruction", "kl", "bits_per_dim", "reconstruction_error")


class Page(HTMLParser):
    """What the tests read of a report: every tag with its attributes, the style sheet, the
    metrics table (its header, and each row's cells by ``data-key``) and the figures' cells."""

    def __init__(self, text: str):
        super().__init__()
        self.tags: list[tuple[str, dict[str, str]]] = []
        self.style = ""
        self.header: list[str] = []
        self.metrics: dict[str, list[dict[str, str]]] = {}
        self.figure_cells: dict[str, int] = {}
        self._in: list[str] = []
        self._table = self._row = self._figure = None
        self._cell: dict[str, str] | None = None
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        a = {k: v or "" for k, v in attrs}
        self.tags.append((tag, a))
        self._in.append(tag)
        if tag == "table":
            self._table = a.get("class")
        elif self._table == "metrics" and tag == "tr":
            self._row = a.get("data-key")
            if self._row:
                self.metrics[self._row] = []
        elif self._table == "metrics" and tag in ("td", "th"):
            self._cell = {**a, "text": "", "tag": tag}
        elif tag == "figure":
            self._figure = a.get("id", "")
            self.figure_cells[self._figure] = 0
        elif tag == "div" and "cell" in a.get("class", "").split() and self._figure:
            self.figure_cells[self._figure] += 1

    def handle_endtag(self, tag):
        if self._in and self._in[-1] == tag:
            self._in.pop()
        if tag == "table":
            self._table = None
        elif tag in ("td", "th") and self._cell is not None:
            cell, self._cell = self._cell, None
            if self._row is None and cell["tag"] == "th":
                self.header.append(cell["text"].strip())
            elif self._row and cell["tag"] == "td":
                self.metrics[self._row].append(cell)
        elif tag == "tr":
            self._row = None
        elif tag == "figure":
            self._figure = None

    def handle_data(self, data):
        if self._in and self._in[-1] == "style":
            self.style += data
        if self._cell is not None:
            self._cell["text"] += data

    def attrs(self, tag: str) -> list[dict[str, str]]:
        return [a for t, a in self.tags if t == tag]


def read_page(path: Path) -> tuple[str, Page]:
    text = path.read_text(encoding="utf-8")
    return text, Page(text)


@pytest.fixture(scope="module")
def table_run(tmp_path_factory) -> Path:
    """A run on a small labelled table (so its figures are plots per feature, and it has a probe)."""
    rng = np.random.default_rng(0)
    z = rng.normal(size=(200, 2))
    x = z @ rng.normal(size=(2, 4)) + 0.3 * rng.normal(size=(200, 4))
    folder = tmp_path_factory.mktemp("table")
    rows = "".join(",".join(f"{v:.4f}" for v in r) + f",{int(c)}\n" for r, c in zip(x, z[:, 0] > 0))
    (folder / "t.csv").write_text("a,b,c,d,label\n" + rows)
    vaekit.train(ModelConfig(latent_dim=2, hidden=(16,)),
                 TrainConfig(data=str(folder / "t.csv"), label_column="label", epochs=2, device="cpu"),
                 folder / "table", progress=False)
    return folder / "table"


@pytest.fixture(scope="module")
def two_runs(digits_run, table_run, tmp_path_factory) -> Path:
    """The full report of an image run and a table run, every figure drawn."""
    out = tmp_path_factory.mktemp("two") / "two.html"
    write_report([digits_run.path, table_run], out)
    return out


def summary(run: Path) -> dict:
    return json.loads((run / "summary.json").read_text())


def check_values(page: Page, column: int, run: Path) -> None:
    """The metrics table's column ``column`` shows ``run``'s summary.json."""
    s = summary(run)
    for key in SUMMARY_ROWS:
        cell = page.metrics[key][column]
        assert float(cell["data-value"]) == s[key], key
        assert cell["text"].startswith(format_metric(key, s[key])), (key, cell["text"])
    assert page.metrics["split"][column]["text"] == f"{s['split']}, {s['n_examples']} examples"
    latent = load_run(run).model_config.latent_dim
    assert 0 <= int(page.metrics["active_units"][column]["data-value"]) <= latent
    assert 0 <= float(page.metrics["probe_accuracy"][column]["data-value"]) <= 1


# -- the page training writes -------------------------------------------------------------------------

def test_training_writes_a_report_with_the_runs_figures(digits_run):
    text, page = read_page(digits_run.path / REPORT)
    assert page.header == ["figure", digits_run.path.name]
    assert {*SUMMARY_ROWS, "split", "active_units", "probe_accuracy", "epochs", "seconds", "parameters",
            "source"} <= set(page.metrics)
    assert "log_likelihood" not in page.metrics  # not estimated: no row
    check_values(page, 0, digits_run.path)
    assert page.metrics["epochs"][0]["text"] == str(digits_run.epochs)
    # the figures training drew, as they are, and the command for the rest
    imgs = [a["src"] for a in page.attrs("img")]
    files = [base64.b64encode((digits_run.path / f).read_bytes()).decode() for f in ("reconstructions.png", "samples.png")]
    assert imgs == [f"data:image/png;base64,{b}" for b in files]
    assert f"vaekit report {digits_run.path} -o report.html" in text
    # the curves, one panel per term, as SVG
    assert len([a for a in page.attrs("svg") if a.get("class") == "panel"]) == 3
    assert "figure-curves" not in page.figure_cells  # no matplotlib curves beside them


def test_training_report_shows_configuration_and_versions(digits_run):
    text, page = read_page(digits_run.path / REPORT)
    info = json.loads((digits_run.path / "config.json").read_text())
    for name, version in info["versions"].items():
        assert f'data-key="{name}"><th scope="row">{name}</th><td>{version}</td>' in text
    assert '<tr data-key="latent_dim"><th scope="row">latent_dim</th><td>4</td></tr>' in text
    assert f'<td>{info["train"]["batch_size"]}</td>' in text
    assert '<tr data-key="n_test"><th scope="row">n_test</th><td>359</td></tr>' in text


# -- self-contained -----------------------------------------------------------------------------------

@pytest.mark.parametrize("which", ["trained", "two"])
def test_the_page_needs_nothing_else(which, request, digits_run):
    path = digits_run.path / REPORT if which == "trained" else request.getfixturevalue("two_runs")
    text, page = read_page(path)
    assert "http://" not in text and "https://" not in text
    assert "url(" not in page.style and "@import" not in page.style and "@font-face" not in page.style
    assert not page.attrs("script") and not page.attrs("iframe") and not page.attrs("object")
    for tag, attrs in page.tags:
        for name in ("src", "href", "srcset", "action", "data", "poster", "xlink:href"):
            if name in attrs:
                value = attrs[name]
                assert value.startswith(("data:", "#")), (tag, name, value[:80])
                assert "//" not in value.split(",")[0], (tag, name, value[:80])
        assert "url(" not in attrs.get("style", "")
    imgs = page.attrs("img")
    assert imgs
    for img in imgs:
        head, _, data = img["src"].partition(",")
        assert head == "data:image/png;base64"
        assert base64.b64decode(data)[:8] == b"\x89PNG\r\n\x1a\n"
        assert int(img["width"]) > 0 and int(img["height"]) > 0 and img["alt"]
    csp = [a["content"] for a in page.attrs("meta") if a.get("http-equiv") == "Content-Security-Policy"]
    assert csp == ["default-src 'none'; img-src data:; style-src 'unsafe-inline'"]


# -- several runs -------------------------------------------------------------------------------------

def test_two_runs_side_by_side(two_runs, digits_run, table_run):
    text, page = read_page(two_runs)
    assert page.header == ["figure", digits_run.path.name, table_run.name]
    assert all(len(cells) == 2 for cells in page.metrics.values()), {k: len(v) for k, v in page.metrics.items()}
    check_values(page, 0, digits_run.path)
    check_values(page, 1, table_run)
    # every applicable figure of each run, in its run's column; the other column says why not
    kinds = {run: [k for k in figures.applicable(load_run(run)) if k != "curves"] for run in (digits_run.path, table_run)}
    union = [k for k in figures.KINDS if any(k in v for v in kinds.values())]
    assert len(page.attrs("img")) == sum(map(len, kinds.values()))
    assert {k: page.figure_cells[f"figure-{k}"] for k in union} == {k: 2 for k in union}
    for kind in union:
        assert f'<p class="caption">{figures.KINDS[kind]}</p>' in text.replace("&#x27;", "'")
    assert "figure &#x27;manifold&#x27; does not apply" in text  # the digits run's latent has 4 dimensions
    # the settings that differ, marked
    assert '<tr class="differs" data-key="latent_dim">' in text
    assert '<tr data-key="activation">' in text  # the same in both: not marked
    # both runs' curves in the same panels, four keys: each run's training and validation
    assert text.count('<span class="key">') == 4


def test_several_runs_with_the_same_name_are_told_apart(digits_run, tmp_path):
    copy = tmp_path / "other" / digits_run.path.name
    shutil.copytree(digits_run.path, copy)
    write_report([digits_run.path, copy], tmp_path / "same.html", figures=False)
    _, page = read_page(tmp_path / "same.html")
    assert page.header == ["figure", str(digits_run.path), str(copy)]
    # the same data, split and examples: comparable, and the best value in bold (both, being equal)
    assert [c.get("class") for c in page.metrics["elbo"]] == ["best", "best"]


# -- what the metrics come from ------------------------------------------------------------------------

def test_evaluation_json_and_n_importance(digits_run, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(digits_run.path, run)
    s = summary(run)
    (run / EVALUATION).write_text(json.dumps({**s, "log_likelihood": -12.5, "n_importance": 7, "gap": 0.25,
                                              "log_likelihood_bits_per_dim": 0.3, "active_units": 3,
                                              "probe_accuracy": 0.5}))
    write_report([run], tmp_path / "e.html", figures=False)
    _, page = read_page(tmp_path / "e.html")
    ll = page.metrics["log_likelihood"][0]
    assert float(ll["data-value"]) == -12.5 and "K = 7" in ll["text"]
    assert float(page.metrics["gap"][0]["data-value"]) == 0.25
    assert page.metrics["active_units"][0]["data-value"] == "3"  # read, not measured again
    assert page.metrics["source"][0]["text"] == "summary.json; evaluation.json"

    write_report([run], tmp_path / "k.html", figures=False, n_importance=4)
    _, page = read_page(tmp_path / "k.html")
    ll = page.metrics["log_likelihood"][0]
    assert "K = 4" in ll["text"] and math.isfinite(float(ll["data-value"])) and float(ll["data-value"]) != -12.5
    assert float(page.metrics["gap"][0]["data-value"]) == pytest.approx(float(ll["data-value"]) - s["elbo"])
    assert "log p(x) with K=4 measured now" in page.metrics["source"][0]["text"]

    (run / EVALUATION).write_text(json.dumps({**s, "split": "train", "elbo": -1.0}))  # another split: left out
    write_report([run], tmp_path / "o.html", figures=False)
    text, page = read_page(tmp_path / "o.html")
    assert float(page.metrics["elbo"][0]["data-value"]) == s["elbo"]
    assert "evaluation.json is of &#x27;train&#x27;, not of &#x27;test&#x27;; left out" in text


def test_n_importance_beside_a_model_whose_log_likelihood_is_exact(digits_run, tmp_path):
    pca = tmp_path / "pca"
    vaekit.train(ModelConfig(model="pca", latent_dim=2), TrainConfig(data="digits", device="cpu"), pca, progress=False)
    write_report([digits_run.path, pca], tmp_path / "r.html", figures=False, n_importance=3)
    text, page = read_page(tmp_path / "r.html")
    vae, exact = page.metrics["log_likelihood"]
    assert "K = 3" in vae["text"] and "exact" in exact["text"]
    assert float(exact["data-value"]) == summary(pca)["log_likelihood"]
    assert "pca: no importance sampling for a &#x27;pca&#x27; model: its log-likelihood is exact" in text


def test_every_value_is_escaped(digits_run, tmp_path):
    run = tmp_path / 'a<b>&"c'
    shutil.copytree(digits_run.path, run)
    write_report([run], tmp_path / "x.html", figures=False)
    text, page = read_page(tmp_path / "x.html")
    assert '<b>&"c' not in text
    assert page.header == ["figure", 'a<b>&"c']  # the parser unescapes what the page escaped
    assert "a&lt;b&gt;&amp;&quot;c" in text


# -- the command line ------------------------------------------------------------------------------------

def test_cli_writes_the_report(capsys, digits_run, table_run, tmp_path):
    out = tmp_path / "r.html"
    r = ok(capsys, "report", digits_run.path, table_run, "-o", out, "--no-figures")
    assert r.out.startswith(f"{out}: report of 2 runs (")
    _, page = read_page(out)
    assert page.header == ["figure", digits_run.path.name, table_run.name]


def test_cli_refuses_bad_input_writing_nothing(capsys, digits_run, tmp_path):
    out = tmp_path / "r.html"
    missing = tmp_path / "nope"
    refused(capsys, tmp_path, "report", missing, "-o", out, says=(str(missing), "no such run directory"))
    folder = tmp_path / "plain"
    folder.mkdir()
    (folder / "notes.txt").write_text("not a run")
    refused(capsys, tmp_path, "report", digits_run.path, folder, "-o", out, says=(str(folder), "not a run directory"))
    refused(capsys, tmp_path, "report", digits_run.path, "-o", tmp_path / "r.pdf", says=("r.pdf", ".html"))
    refused(capsys, tmp_path, "report", digits_run.path, "-o", tmp_path / "no" / "r.html", says=("does not exist",))
    assert not out.exists()


# -- in a browser -----------------------------------------------------------------------------------------

@pytest.mark.parametrize("which", ["two", "trained"])
def test_the_page_in_a_browser(which, browser, request, digits_run, tmp_path):  # noqa: F811
    path = request.getfixturevalue("two_runs") if which == "two" else digits_run.path / REPORT
    console_errors(browser), failed_requests(browser)  # what earlier pages logged
    browser.get(path.resolve().as_uri())
    assert browser.execute_script("return document.readyState") == "complete"
    shot = tmp_path / "report.png"
    assert browser.save_screenshot(str(shot)) and shot.stat().st_size > 10_000
    assert failed_requests(browser) == []
    assert console_errors(browser) == []
    images = browser.execute_script(
        "return Array.from(document.images).map(i => [i.complete, i.naturalWidth, i.getBoundingClientRect().width])")
    assert len(images) == len(Page(path.read_text()).attrs("img")) > 0
    assert all(done and natural > 0 and shown > 0 for done, natural, shown in images), images
    panels = browser.execute_script(
        "return Array.from(document.querySelectorAll('svg.panel')).map(s => s.getBoundingClientRect().width)")
    assert panels and all(w > 100 for w in panels)
    # nothing cut off: the page is no wider than the window, and no image is wider than its column
    assert browser.execute_script("return document.documentElement.scrollWidth <= window.innerWidth")
    assert browser.execute_script(
        "return Array.from(document.images).every(i => i.getBoundingClientRect().right <= "
        "i.parentElement.getBoundingClientRect().right + 1)")
