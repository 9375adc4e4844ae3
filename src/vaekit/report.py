"""One self-contained HTML page of a run directory, or of several side by side.

``write_report([run], out)`` writes a single HTML file that needs nothing else: its images are
PNG ``data:`` URIs, its CSS is inline, and it names no external address (no fonts, no CDN, no
script; a Content-Security-Policy forbids any fetch). It holds the run's metrics (the ELBO and
its parts, bits per dimension, the importance-weighted log-likelihood where it was estimated,
active units, the linear-probe accuracy), its training curves, every figure of
:mod:`vaekit.figures` that applies to it, each with a sentence on what it shows, its model and
training configuration, its data and the versions that produced it. Several runs compare: one
column per run in every table, their curves overlaid, their figures side by side.

The figures come from the run directory: ``summary.json`` (what training measured on the held-out
data), then ``evaluation.json`` if the run holds one (``vaekit evaluate RUN --json >
RUN/evaluation.json``, e.g. with ``--n-importance 5000``); what neither holds (active units, the
probe) is measured here, cheaply, and ``n_importance`` estimates log p(x) anew.
"""

from __future__ import annotations

import base64
import datetime as _dt
import html
import io
import json
import math
import shlex
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from .errors import VaekitError, VaekitWarning

REPORT = "report.html"
EVALUATION = "evaluation.json"
SUFFIXES = (".html", ".htm")

#: how the metrics table names each figure, its unit, and which way is better (+1 higher, -1 lower)
METRICS: dict[str, tuple[str, str, int]] = {
    "elbo": ("ELBO", "nats per example", +1),
    "reconstruction": ("reconstruction, E_q[log p(x|z)]", "nats per example", +1),
    "kl": ("KL(q(z|x) ‖ p(z))", "nats per example", 0),
    "log_likelihood": ("log p(x)", "nats per example", +1),
    "bits_per_dim": ("bits per dimension (of the headline figure)", "bits", -1),
    "log_likelihood_bits_per_dim": ("log p(x) in bits per dimension", "bits", -1),
    "gap": ("gap, log p(x) − ELBO ≈ KL(q(z|x) ‖ p(z|x))", "nats per example", -1),
    "reconstruction_error": ("squared reconstruction error at z = E_q[z]", "per example", -1),
    "active_units": ("active units (Cov_x E_q[z] > 0.01)", "units", 0),
    "probe_accuracy": ("linear-probe accuracy (latent means)", "fraction", +1),
}


#: the figures' short names, for the notes
_SHORT = {"elbo": "ELBO", "reconstruction": "reconstruction", "log_likelihood": "log p(x)",
          "active_units": "active units", "probe_accuracy": "probe accuracy"}


@dataclass
class _RunView:
    """What the report shows of one run."""

    path: Path
    name: str
    run: Any  # vaekit.runs.Run
    metrics: dict[str, Any] = field(default_factory=dict)
    sources: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    history: list[dict[str, str]] = field(default_factory=list)
    figures: dict[str, tuple[_Png | None, str]] = field(default_factory=dict)  # kind -> (PNG, or why none)


def check_inputs(run_dirs: Sequence[str | Path], out: str | Path) -> tuple[list[Path], Path]:
    """Refuse, before any work, a run that is not a run directory and an output the report
    cannot be written to."""
    from .runs import CONFIG

    if not run_dirs:
        raise VaekitError("report: give at least one run directory")
    paths = [Path(p) for p in run_dirs]
    for p in paths:
        if not p.is_dir():
            raise VaekitError(f"{p}: no such run directory")
        if not (p / CONFIG).is_file():
            raise VaekitError(f"{p}: not a run directory (no {CONFIG})")
    out = Path(out)
    if out.suffix.lower() not in SUFFIXES:
        raise VaekitError(f"{out}: a report is an .html file; name it so (e.g. -o report.html)")
    if not out.parent.is_dir():
        raise VaekitError(f"{out}: folder {out.parent} does not exist")
    if out.is_dir():
        raise VaekitError(f"{out}: is a directory")
    return paths, out


def write_report(
    runs: Sequence[str | Path],
    out: str | Path,
    *,
    n_importance: int | None = None,
    data: str | None = None,
    data_dir: str | None = None,
    seed: int = 0,
    device: Any = "cpu",
    figures: bool = True,
) -> Path:
    """Write the report of ``runs`` (run directories; several are compared side by side) to
    ``out``, one self-contained HTML file, atomically.

    Parameters
    ----------
    n_importance : also estimate log p(x) by importance sampling with K samples (and the gap)
    data, data_dir : where the runs' data are, when they moved (as for ``vaekit evaluate``)
    seed : the seed of the evaluation's sampling noise and of the figures' draws
    device : where to load the models (a name or a ``torch.device``)
    figures : draw every figure of :mod:`vaekit.figures` that applies; False (what ``vaekit train``
        writes, in a fraction of a second): only the figures the run holds already as files
        (``reconstructions.png``, ``samples.png``), and the command that draws the rest

    Raises
    ------
    VaekitError
        A missing run directory, a folder that is not a run, an unreadable run file, an output
        that is not ``.html`` or whose folder is missing; nothing is written then.
    """
    from .runs import atomic_write_bytes, load_run, wait_for_writes

    paths, out = check_inputs(runs, out)
    wait_for_writes()  # a run this process is writing: its weights in place before they are read
    names = _column_names(paths)
    views = [_RunView(p, name, load_run(p, device)) for p, name in zip(paths, names)]
    for view in views:
        _read_metrics(view, n_importance=n_importance, data=data, data_dir=data_dir, seed=seed)
    kinds = _draw_figures(views, data=data, data_dir=data_dir, seed=seed) if figures else _run_files(views)
    page = render(views, kinds, curves=_curves_svg(views), all_figures=figures)
    atomic_write_bytes(out, page.encode("utf-8"))
    return out


# -- gathering -------------------------------------------------------------------------------

def _column_names(paths: list[Path]) -> list[str]:
    """Each run's column title: its folder's name, or the path where two names are alike."""
    names = [p.resolve().name or str(p) for p in paths]
    return [str(p) if names.count(n) > 1 else n for p, n in zip(paths, names)]


def _read_json(path: Path) -> dict[str, Any] | None:
    if not path.exists():
        return None
    try:
        value = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise VaekitError(f"{path}: unreadable ({type(e).__name__}: {e})") from None
    if not isinstance(value, dict):
        raise VaekitError(f"{path}: not a JSON object of figures")
    return value


def _read_metrics(view: _RunView, *, n_importance: int | None, data: str | None, data_dir: str | None,
                  seed: int) -> None:
    """The run's figures: summary.json, then evaluation.json, then what is measured here."""
    from .evaluation.metrics import evaluate_run
    from .runs import METRICS as METRICS_CSV, SUMMARY, read_metrics

    summary = _read_json(view.path / SUMMARY)
    evaluation = _read_json(view.path / EVALUATION)
    m: dict[str, Any] = {}
    if summary is not None:
        m.update(summary)
        view.sources.append(SUMMARY)
    else:
        view.notes.append(f"no {SUMMARY}: training did not finish; the figures are measured for this report")
    if evaluation is not None:
        if summary is None or evaluation.get("split") == summary.get("split"):
            m.update(evaluation)
            view.sources.append(EVALUATION)
        else:
            view.notes.append(f"{EVALUATION} is of {evaluation.get('split')!r}, not of {summary.get('split')!r}; "
                              "left out")
    headline = view.run.model.headline
    if n_importance is not None and (headline.exact or not headline.bounds_log_likelihood):
        why = "its log-likelihood is exact" if headline.exact else "it has no q(z|x) and p(z) to weigh samples by"
        view.notes.append(f"no importance sampling for a {view.run.model_config.model!r} model: {why}")
        n_importance = None
    missing = [k for k in (m.get("headline", "elbo"), "active_units", "probe_accuracy") if k not in m]
    if n_importance is not None or data is not None or missing:
        what = ", ".join(_SHORT.get(k, k) for k in missing)
        try:
            fresh = evaluate_run(view.run, data=data, data_dir=data_dir, n_importance=n_importance, seed=seed)
        except VaekitError as e:
            if n_importance is not None or data is not None:
                raise  # asked for: its failure is the answer
            view.notes.append(f"{what} not measured: {e}")
            warnings.warn(f"{view.path}: {what} not measured for the report: {e}", VaekitWarning, stacklevel=2)
        else:
            if data is not None:  # other data: none of the stored figures applies
                m, view.sources = {}, [f"measured now on {data}"]
            elif n_importance is not None:
                view.sources.append(f"log p(x) with K={n_importance}" + (f" and {what}" if what else "") + " measured now")
            else:  # only what the run's files lack: the figures they hold stay as they are
                view.sources.append(f"{what} measured now")
                fresh = {k: v for k, v in fresh.items() if k not in m}
            m.update(fresh)
    view.metrics = m
    if (view.path / METRICS_CSV).exists():
        try:
            view.history = read_metrics(view.path)
        except (OSError, ValueError) as e:
            raise VaekitError(f"{view.path / METRICS_CSV}: unreadable ({type(e).__name__}: {e})") from None


#: the figures a run directory holds as files (``plots.save_run_figures``), by kind
RUN_FILES = {"reconstructions": "reconstructions.png", "samples": "samples.png"}


def _run_files(views: list[_RunView]) -> list[str]:
    """The figures the runs hold as files (drawn at 100 dpi), read as they are."""
    found = []
    for kind, name in RUN_FILES.items():
        for view in views:
            path = view.path / name
            if path.is_file():
                data = path.read_bytes()
                if data[:8] == b"\x89PNG\r\n\x1a\n":
                    width, height = (int.from_bytes(data[i:i + 4], "big") * _CSS_PX_PER_INCH // 100 for i in (16, 20))
                    view.figures[kind] = (_Png(base64.b64encode(data).decode("ascii"), width, height), "")
                    if kind not in found:
                        found.append(kind)
    for view in views:
        for kind in found:
            view.figures.setdefault(kind, (None, f"no {RUN_FILES[kind]} in the run"))
    return found


def _draw_figures(views: list[_RunView], *, data: str | None, data_dir: str | None, seed: int) -> list[str]:
    """Every figure that applies to each run, as PNG (but the training curves, drawn here as SVG);
    the kinds in the order of ``KINDS``."""
    from . import figures as F

    drawn: set[str] = set()
    own = [[k for k in F.applicable(view.run) if k != "curves"] for view in views]  # the curves: SVG, here
    for view, kinds in zip(views, own):
        for kind in kinds:
            try:
                fig = F.make_figure(view.run, kind, data=data, data_dir=data_dir, seed=seed)
            except VaekitError as e:
                view.figures[kind] = (None, str(e))
                warnings.warn(f"{view.path}: figure {kind!r} not drawn: {e}", VaekitWarning, stacklevel=2)
            else:
                view.figures[kind] = (_png(fig, dpi=F.DPI), "")
            drawn.add(kind)
    for view, kinds in zip(views, own):  # why a kind another run has does not apply to this one
        for kind in drawn.difference(kinds):
            try:
                F.make_figure(view.run, kind)  # refuses at once, saying why
                note = "does not apply to this run"
            except VaekitError as e:
                note = str(e)
            view.figures[kind] = (None, note)
    return [k for k in F.KINDS if k in drawn]


#: how large a figure is shown: CSS pixels per inch of figure (a 10-point label is 12 pixels high)
_CSS_PX_PER_INCH = 88


@dataclass(frozen=True)
class _Png:
    """A figure as a base64 PNG, with the size to show it at, in CSS pixels."""

    base64: str
    width: int
    height: int


def _png(fig, *, dpi: int = 100) -> _Png:
    """``fig`` as a PNG (its layout is the figure's own: constrained; no tight bounding box, so
    that its size in pixels is its size in inches times ``dpi``)."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    head = buf.getvalue()[16:24]  # the IHDR chunk's width and height
    width, height = int.from_bytes(head[:4], "big"), int.from_bytes(head[4:], "big")
    return _Png(base64.b64encode(buf.getvalue()).decode("ascii"), round(width * _CSS_PX_PER_INCH / dpi),
                round(height * _CSS_PX_PER_INCH / dpi))


def _number(text: Any) -> float:
    try:
        return float(text)
    except (TypeError, ValueError):
        return math.nan


def _curve_panels(views: list[_RunView]) -> list[str]:
    """The columns of metrics.csv to plot, one panel each: the models' terms (training and
    validation), then the KL weight and the learning rate where they change."""
    panels: list[str] = []
    for view in views:
        if not view.history:
            continue
        own = view.metrics.get("terms") or [k[len("train_"):] for k in view.history[0] if k.startswith("train_")]
        for t in own:
            if t not in panels and any(f"{s}_{t}" in view.history[0] for s in ("train", "val")):
                panels.append(t)
    for key in ("beta", "lr"):
        values = {_number(r.get(key)) for v in views for r in v.history} - {math.nan}
        if len({x for x in values if not math.isnan(x)}) > 1:
            panels.append(key)
    return panels


#: one colour per run (matplotlib's)
_COLOURS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22",
            "#17becf")
#: a panel's title and unit
_PANEL_TITLES = {"elbo": ("ELBO", "nats per example"), "reconstruction": ("reconstruction E[log p(x|z)]", "nats"),
                 "kl": ("KL(q(z|x) ‖ p(z))", "nats"), "log_likelihood": ("log p(x)", "nats per example"),
                 "beta": ("KL weight β", ""), "lr": ("learning rate", "")}


def _ticks(lo: float, hi: float, n: int = 5, *, integer: bool = False) -> tuple[list[float], float]:
    """About ``n`` round values from ``lo`` to ``hi`` (steps of 1, 2, 2.5 or 5 times a power of
    ten), and the step."""
    raw = (hi - lo) / n
    mag = 10.0 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw * (1 - 1e-9))
    if integer:
        step = max(1.0, round(step))
    first = math.ceil(lo / step - 1e-9)
    return [k * step for k in range(first, math.floor(hi / step + 1e-9) + 1)], step


def _tick_label(value: float, step: float) -> str:
    decimals = max(0, -math.floor(math.log10(step) + 1e-9))
    if decimals and abs(step / 10.0 ** -decimals - 2.5) < 1e-6:
        decimals += 1
    text = f"{value:.{decimals}f}" if decimals <= 4 else f"{value:.1e}"
    return text.replace("-", "\u2212") if value < 0 else text


def _panel_svg(key: str, series: list[tuple[list[float], list[float], str, bool]]) -> str:
    """One panel of curves as inline SVG: ``series`` of (epochs, values, colour, dashed)."""
    W, H, L, R, T, B = 360, 236, 62, 14, 30, 40
    pw, ph = W - L - R, H - T - B
    xs = [x for s in series for x in s[0] if not math.isnan(x)]
    ys = [y for s in series for y in s[1] if not math.isnan(y)]
    if not xs or not ys:
        return ""
    x0, x1 = min(xs), max(xs)
    if x1 - x0 < 1:
        x0, x1 = x0 - 0.5, x1 + 0.5
    y0, y1 = min(ys), max(ys)
    pad = (y1 - y0) * 0.06 or (abs(y0) * 0.1 or 1.0)
    y0, y1 = y0 - pad, y1 + pad
    px = lambda x: L + (x - x0) / (x1 - x0) * pw  # noqa: E731
    py = lambda y: T + (1 - (y - y0) / (y1 - y0)) * ph  # noqa: E731
    title, unit = _PANEL_TITLES.get(key) or (key.replace("_", " "), "nats")
    out = [f'<svg class="panel" viewBox="0 0 {W} {H}" width="{W}" height="{H}" role="img" '
           f'aria-label="{_e(title)} by epoch"><title>{_e(title)} by epoch</title>',
           f'<text x="{L}" y="18" class="t">{_e(title)}<tspan class="u">{_e("  " + unit if unit else "")}</tspan></text>']
    yt, ystep = _ticks(y0, y1)
    for y in yt:
        out.append(f'<line x1="{L}" x2="{L + pw}" y1="{py(y):.1f}" y2="{py(y):.1f}" class="g"/>'
                   f'<text x="{L - 6}" y="{py(y) + 4:.1f}" text-anchor="end">{_e(_tick_label(y, ystep))}</text>')
    xt, xstep = _ticks(x0, x1, 6, integer=True)
    for x in xt:
        out.append(f'<line x1="{px(x):.1f}" x2="{px(x):.1f}" y1="{T}" y2="{T + ph}" class="g"/>'
                   f'<text x="{px(x):.1f}" y="{T + ph + 16}" text-anchor="middle">{_e(_tick_label(x, xstep))}</text>')
    out.append(f'<rect x="{L}" y="{T}" width="{pw}" height="{ph}" class="frame"/>'
               f'<text x="{L + pw / 2:.1f}" y="{H - 6}" text-anchor="middle">epoch</text>')
    for epochs, values, colour, dashed in series:
        dash = ' stroke-dasharray="5 3"' if dashed else ""
        segment: list[str] = []
        points = [(x, y) for x, y in zip(epochs, values)]
        for x, y in [*points, (math.nan, math.nan)]:  # a missing value breaks the line
            if math.isnan(x) or math.isnan(y):
                if len(segment) > 1:
                    out.append(f'<polyline points="{" ".join(segment)}" stroke="{colour}"{dash}/>')
                segment = []
            else:
                segment.append(f"{px(x):.1f},{py(y):.1f}")
        if len(points) <= 12:
            out.extend(f'<circle cx="{px(x):.1f}" cy="{py(y):.1f}" r="2.4" fill="{colour}"/>'
                       for x, y in points if not (math.isnan(x) or math.isnan(y)))
    out.append("</svg>")
    return "".join(out)


def _curves_svg(views: list[_RunView]) -> str | None:
    """The training curves of metrics.csv as inline SVG, against the epoch: a panel per term,
    training solid and validation dashed, a colour per run; None when no run has any."""
    panels = _curve_panels(views)
    if not panels:
        return None
    several = len(views) > 1
    svgs = []
    for key in panels:
        series = []
        for i, view in enumerate(views):
            epochs = [_number(r.get("epoch")) for r in view.history]
            colour = _COLOURS[i % len(_COLOURS)]
            columns = [(key, False)] if key in ("beta", "lr") else [(f"train_{key}", False), (f"val_{key}", True)]
            for column, dashed in columns:
                values = [_number(r.get(column)) for r in view.history]
                if any(not math.isnan(v) for v in values):
                    series.append((epochs, values, colour, dashed))
        svgs.append(_panel_svg(key, series))
    keys = []
    for i, view in enumerate(views):
        if not view.history:
            continue
        colour = _COLOURS[i % len(_COLOURS)]
        for split, prefix, dash in (("training", "train_", ""), ("validation", "val_", ' stroke-dasharray="5 3"')):
            if not any(k.startswith(prefix) and k[len(prefix):] in panels for k in view.history[0]):
                continue
            label = f"{view.name}, {split}" if several else split
            keys.append(f'<span class="key"><svg width="28" height="10"><line x1="1" x2="27" y1="5" y2="5" '
                        f'stroke="{colour}" stroke-width="2"{dash}/></svg>{_e(label)}</span>')
    return f'<div class="curves">{"".join(svgs)}</div><p class="keys">{"".join(keys)}</p>'


# -- the page --------------------------------------------------------------------------------

def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


def format_metric(key: str, value: Any) -> str:
    """How the metrics table writes ``value`` of figure ``key``."""
    if value is None:
        return "—"
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return str(value)
    if key in ("active_units", "n_examples", "n_importance", "epochs"):
        return f"{int(value)}"
    if key in ("bits_per_dim", "log_likelihood_bits_per_dim", "probe_accuracy"):
        return f"{value:.4f}"
    if key == "seconds":
        return f"{value:.1f} s" if value < 600 else f"{value / 60:.1f} min"
    return f"{value:.2f}"


def _metric_rows(views: list[_RunView]) -> list[str]:
    """Every figure any run has, in the table's order: the models' terms first."""
    keys: list[str] = []
    for view in views:
        for k in view.metrics.get("terms", []):
            if k not in keys:
                keys.append(k)
    for k in METRICS:
        if k not in keys and any(k in v.metrics for v in views):
            keys.append(k)
    return keys


def _best(key: str, views: list[_RunView]) -> set[int]:
    """The columns holding the best value of ``key``, when the runs are comparable (the same
    data, split and number of examples) and the figure has a better direction."""
    sense = METRICS.get(key, ("", "", 0))[2]
    if len(views) < 2 or not sense:
        return set()
    same = {(v.run.train_config.data, v.metrics.get("split"), v.metrics.get("n_examples")) for v in views}
    values = [v.metrics.get(key) for v in views]
    if len(same) != 1 or sum(isinstance(x, (int, float)) for x in values) < 2:
        return set()
    best = max(sense * x for x in values if isinstance(x, (int, float)))
    return {i for i, x in enumerate(values) if isinstance(x, (int, float)) and sense * x == best}


def _metrics_table(views: list[_RunView]) -> str:
    head = "".join(f'<th scope="col" title="{_e(v.path)}">{_e(v.name)}</th>' for v in views)
    rows = []
    split_cells = []
    for v in views:
        m = v.metrics
        split = m.get("split", "—")
        n = m.get("n_examples")
        split_cells.append(f"<td>{_e(split)}{'' if n is None else f', {_e(n)} examples'}</td>")
    rows.append(f'<tr data-key="split"><th scope="row">evaluated on</th>{"".join(split_cells)}</tr>')
    for key in _metric_rows(views):
        label, unit, _ = METRICS.get(key, (key.replace("_", " "), "nats per example", 0))
        best = _best(key, views)
        cells = []
        for i, v in enumerate(views):
            value = v.metrics.get(key)
            note = ""
            if key == "log_likelihood" and value is not None:
                note = (f"K = {v.metrics['n_importance']}" if "n_importance" in v.metrics
                        else "exact" if key in v.metrics.get("terms", ()) else "")
            if key == v.metrics.get("headline"):
                note = (note + ", " if note else "") + "headline"
            if key == "active_units" and value is not None:
                note = f"of {v.run.model_config.latent_dim}"
            attrs = f' data-value="{_e(repr(value))}"' if isinstance(value, (int, float)) else ""
            cls = ' class="best"' if i in best else ""
            title = ' title="no labels to fit the probe on"' if key == "probe_accuracy" and value is None else ""
            small = f' <small>{_e(note)}</small>' if note else ""
            cells.append(f"<td{cls}{attrs}{title}>{_e(format_metric(key, value))}{small}</td>")
        rows.append(f'<tr data-key="{_e(key)}"><th scope="row">{_e(label)} <small>{_e(unit)}</small></th>{"".join(cells)}</tr>')
    for key, label, get in (
        ("epochs", "epochs trained", lambda v: int(_number(v.history[-1]["epoch"])) if v.history else None),
        ("seconds", "training time", lambda v: sum(_number(r.get("seconds")) for r in v.history
                                                    if not math.isnan(_number(r.get("seconds")))) if v.history else None),
        ("parameters", "parameters", lambda v: sum(p.numel() for p in v.run.model.parameters())),
    ):
        cells = "".join(f"<td>{_e(format_metric(key, get(v)) if key != 'parameters' else f'{get(v):,}')}</td>" for v in views)
        rows.append(f'<tr data-key="{key}"><th scope="row">{label}</th>{cells}</tr>')
    source = "".join(f"<td>{_e('; '.join(v.sources) or '—')}</td>" for v in views)
    rows.append(f'<tr data-key="source"><th scope="row">read from</th>{source}</tr>')
    return (f'<div class="scroll"><table class="metrics"><thead><tr><th scope="col">figure</th>{head}</tr></thead>'
            f'<tbody>{"".join(rows)}</tbody></table></div>')


def _value(value: Any) -> str:
    if isinstance(value, (list, tuple)):
        return " ".join(map(str, value)) if value else "—"
    if value is None:
        return "—"
    if isinstance(value, dict):
        return ", ".join(f"{k}: {_value(v)}" for k, v in value.items())
    return str(value)


def _side_by_side(title: str, key: str, sections: list[dict[str, Any]], views: list[_RunView], *,
                  mark_differences: bool = True) -> str:
    """A table of ``sections`` (one dict per run), a row per field, a column per run; with
    several runs, the rows that differ are marked."""
    fields: list[str] = []
    for s in sections:
        fields.extend(k for k in s if k not in fields)
    head = "".join(f'<th scope="col" title="{_e(v.path)}">{_e(v.name)}</th>' for v in views)
    rows = []
    for f in fields:
        values = [_value(s.get(f)) if f in s else "" for s in sections]
        differs = mark_differences and len(views) > 1 and len(set(values)) > 1
        cls = ' class="differs"' if differs else ""
        cells = "".join(f"<td>{_e(x)}</td>" for x in values)
        rows.append(f'<tr{cls} data-key="{_e(f)}"><th scope="row">{_e(f)}</th>{cells}</tr>')
    return (f'<div class="block"><h3 id="{_e(key)}">{_e(title)}</h3><div class="scroll"><table class="fields">'
            f'<thead><tr><th scope="col">field</th>{head}</tr></thead><tbody>{"".join(rows)}</tbody></table></div></div>')


_CSS = """
:root { color-scheme: light; --ink: #1d2330; --muted: #5b6475; --line: #d9dde5; --band: #f4f6f9;
        --accent: #2f5fb3; --mark: #fff4cc; }
* { box-sizing: border-box; }
body { margin: 0; font: 15px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif;
       color: var(--ink); background: #fff; }
main { max-width: 1240px; margin: 0 auto; padding: 24px 28px 48px; }
h1 { font-size: 26px; margin: 0 0 4px; }
h2 { font-size: 20px; margin: 36px 0 8px; padding-bottom: 4px; border-bottom: 2px solid var(--line); }
h3 { font-size: 16px; margin: 22px 0 6px; }
p, li { max-width: 80ch; }
.lead { color: var(--muted); margin: 0 0 12px; }
nav { margin: 10px 0 0; font-size: 14px; }
nav a { color: var(--accent); text-decoration: none; margin-right: 14px; }
.scroll { overflow-x: auto; }
table { border-collapse: collapse; font-size: 14px; margin: 6px 0; }
th, td { border-bottom: 1px solid var(--line); padding: 5px 12px; text-align: left; vertical-align: top; }
thead th { background: var(--band); border-bottom: 2px solid var(--line); white-space: nowrap; }
tbody th { font-weight: 500; }
small { color: var(--muted); font-size: 12px; font-weight: normal; }
table.metrics td { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; min-width: 9em; }
table.metrics td.best { font-weight: 700; }
table.metrics tbody th { min-width: 15em; }
table.metrics tr[data-key="source"] td { white-space: normal; max-width: 24em; font-size: 13px; color: var(--muted); }
table.fields td { font-family: ui-monospace, "SFMono-Regular", Menlo, Consolas, monospace; font-size: 13px; }
tr.differs { background: var(--mark); }
.runs { display: grid; gap: 18px; align-items: start; }
.cell { min-width: 0; }
figure { margin: 0 0 14px; }
.kinds { display: flex; flex-wrap: wrap; gap: 4px 28px; align-items: flex-start; }
.kinds > figure { flex: 0 1 auto; max-width: 100%; min-width: 320px; }
.kinds .caption { width: 0; min-width: 100%; }  /* as wide as its figure, never wider */
.cell h4 { margin: 0 0 4px; font-size: 14px; color: var(--muted); font-weight: 600; }
img { display: block; max-width: 100%; height: auto; border: 1px solid var(--line); border-radius: 4px; }
.caption { margin: 0 0 8px; color: var(--muted); }
.note { color: #8a5a00; font-size: 14px; }
.missing { padding: 18px; border: 1px dashed var(--line); color: var(--muted); font-size: 14px; }
.tables { display: grid; gap: 0 22px; }
.block { min-width: 0; }
.tables table { width: 100%; }
.tables td { overflow-wrap: anywhere; }
.curves { display: flex; flex-wrap: wrap; gap: 6px 18px; }
svg.panel { max-width: 100%; height: auto; font-size: 11px; fill: var(--muted); }
svg.panel .t { font-size: 13px; font-weight: 600; fill: var(--ink); }
svg.panel .u { font-weight: normal; fill: var(--muted); font-size: 11px; }
svg.panel .g { stroke: #e6e9ef; stroke-width: 1; }
svg.panel .frame { fill: none; stroke: #9aa3b2; stroke-width: 1; }
svg.panel polyline { fill: none; stroke-width: 1.8; stroke-linejoin: round; }
.keys { margin: 4px 0 0; font-size: 13px; color: var(--muted); }
.key { margin-right: 18px; white-space: nowrap; }
.key svg { vertical-align: middle; margin-right: 6px; }
code { font-family: ui-monospace, "SFMono-Regular", Menlo, Consolas, monospace; font-size: 13px; background: var(--band);
       padding: 1px 5px; border-radius: 3px; }
footer { margin-top: 40px; color: var(--muted); font-size: 13px; }
"""

# no fetch of any kind: images are data: URIs, the style is inline, there is no script
_CSP = "default-src 'none'; img-src data:; style-src 'unsafe-inline'"


def _img(png: _Png, alt: str) -> str:
    """An ``img`` of a PNG at its own size (scaled down to fit)."""
    return (f'<img src="data:image/png;base64,{png.base64}" alt="{_e(alt)}" width="{png.width}" '
            f'height="{png.height}">')


def _grid(n: int) -> str:
    return f'style="grid-template-columns: repeat({n}, minmax(0, 1fr))"'


def _kinds_captions() -> dict[str, str]:
    from .figures import KINDS

    return KINDS


def _figure_row(kind: str, captions: dict[str, str], views: list[_RunView], *, heading: bool = True) -> str:
    """One kind of figure: its caption, then each run's figure side by side (or why it has none)."""
    several = len(views) > 1
    parts = [f'<figure id="figure-{_e(kind)}">']
    if heading:
        parts.append(f"<h3>{_e(kind.replace('-', ' '))}</h3>")
    parts.append(f'<p class="caption">{_e(captions.get(kind, ""))}</p>')
    if several:
        parts.append(f'<div class="runs" {_grid(len(views))}>')
    for v in views:
        png, note = v.figures.get(kind, (None, "does not apply to this run"))
        body = _img(png, f"{kind} of {v.name}") if png else f'<div class="missing">{_e(note)}</div>'
        parts.append(f'<div class="cell"><h4>{_e(v.name)}</h4>{body}</div>' if several else body)
    if several:
        parts.append("</div>")
    parts.append("</figure>")
    return "".join(parts)


def render(views: list[_RunView], kinds: list[str], *, curves: str | None = None, all_figures: bool = True) -> str:
    """The HTML page of ``views``: their figures of ``kinds`` (drawn already), the ``curves``
    (inline SVG); ``all_figures`` False adds the command that draws every figure."""
    from .runs import versions
    from .version import __version__

    several = len(views) > 1
    title = f"vaekit report: {views[0].name}" if not several else f"vaekit report: {len(views)} runs"
    now = _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    what = ", ".join(f"{v.name} ({v.run.model_config.model} on {v.run.train_config.data})" for v in views)
    parts = [f"<h1>{_e(title)}</h1>",
             f'<p class="lead">{_e(what)}. Figures in nats per example; the ELBO and log p(x) are higher-is-better.</p>',
             '<nav><a href="#metrics">Metrics</a><a href="#curves">Training curves</a><a href="#figures">Figures</a>'
             '<a href="#configuration">Configuration</a><a href="#data">Data</a><a href="#versions">Versions</a></nav>']

    parts.append('<section id="metrics"><h2>Metrics</h2>')
    parts.append('<p class="caption">The held-out figures of each run' + (" (the best of comparable runs in bold)" if several else "")
                 + ". log p(x) appears where it was estimated by importance sampling (vaekit report --n-importance K, "
                 "or an evaluation.json in the run) or is exact.</p>")
    parts.append(_metrics_table(views))
    for v in views:
        for note in v.notes:
            parts.append(f'<p class="note">{_e(v.name)}: {_e(note)}</p>')
    parts.append("</section>")

    captions = _kinds_captions()
    parts.append('<section id="curves"><h2>Training curves</h2>')
    if curves:
        parts.append('<p class="caption">The figures of the training data (solid) and of the validation data (dashed) '
                     "at the end of each epoch" + (", a colour per run" if several else "") + ", from metrics.csv: "
                     "whether training has converged, and whether it overfits (validation falling behind).</p>")
        parts.append(curves)
    else:
        parts.append('<p class="missing">No training curves: ' + ("no run has" if several else "the run has no")
                     + " epochs in a metrics.csv.</p>")
    parts.append("</section>")

    parts.append('<section id="figures"><h2>Figures</h2>')
    if not all_figures:
        command = "vaekit report " + " ".join(shlex.quote(str(v.path)) for v in views) + " -o report.html"
        parts.append(f'<p class="caption">The figures training wrote. Every other figure that applies (interpolations, '
                     f'the latent space, traversals, the KL per unit, ...): <code>{_e(command)}</code></p>')
    if not kinds:
        parts.append('<p class="missing">No figure applies to ' + ("these runs" if several else "this run") + ".</p>")
    else:
        parts.append(f'<div class="{"stacked" if several else "kinds"}">')
        parts.extend(_figure_row(kind, captions, views) for kind in kinds)
        parts.append("</div>")
    parts.append("</section>")

    from .config import to_dict

    parts.append('<section id="configuration"><h2>Configuration, data and versions</h2><p class="caption">'
                 + ("The settings of each run, what it was trained on and what produced it, from its config.json; "
                    "rows where the runs differ are highlighted.</p>" if several else
                    "The settings of the run, what it was trained on and what produced it, from its config.json.</p>"))
    model = [to_dict(v.run.model_config) for v in views]
    train = [to_dict(v.run.train_config) for v in views]
    if several:
        merged = [{**{f"model.{k}": x for k, x in m.items()}, **{f"train.{k}": x for k, x in t.items()}}
                  for m, t in zip(model, train)]
        differ = [{k: x for k, x in m.items() if len({_value(o.get(k)) for o in merged}) > 1} for m in merged]
        if any(differ):
            parts.append(_side_by_side("Where the runs differ", "differences", differ, views, mark_differences=False))
        else:
            parts.append('<p class="caption">The runs have the same model and training settings.</p>')
    min_width = 200 + 120 * len(views)
    parts.append(f'<div class="tables" style="grid-template-columns: repeat(auto-fill, minmax({min_width}px, 1fr))">')
    parts.append(_side_by_side("Model", "model", model, views))
    parts.append(_side_by_side("Training", "training", train, views))
    parts.append(_side_by_side("Data", "data", [dict(v.run.info.get("data") or {}) for v in views], views))
    parts.append(_side_by_side("Versions", "versions",
                               [{**(v.run.info.get("versions") or {}), "created": v.run.info.get("created")} for v in views],
                               views))
    parts.append("</div></section>")
    here = versions()
    parts.append(f"<footer>Written {_e(now)} by vaekit {_e(__version__)} (torch {_e(here['torch'])}, "
                 f"Python {_e(here['python'])}); {' '.join(_e(str(v.path)) for v in views)}.</footer>")
    body = "\n".join(parts)
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
            f'<meta http-equiv="Content-Security-Policy" content="{_e(_CSP)}">'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">'
            f'<title>{_e(title)}</title><link rel="icon" href="data:,"><style>{_CSS}</style></head>\n'
            f"<body><main>\n{body}\n</main></body></html>\n")
