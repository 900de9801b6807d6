"""The report a person reads about scored models: JSON, and an HTML page with its pictures."""

from __future__ import annotations

import base64
import datetime as _dt
import html
import io
import json
from pathlib import Path

from classifier.store import ModelStore
from training.plots import draw_confusion, pyplot

REPORT_JSON = "report.json"
REPORT_HTML = "report.html"


def now_iso() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def data_label(folder: Path) -> str:
    """`data/validation` rather than a path of this machine."""
    return f"{folder.parent.name}/{folder.name}"


def reports_folder(store: ModelStore, name: str, label: str) -> Path:
    """Where a report goes when it belongs to no version: models/<name>/reports/<time>-<label>."""
    stamp = _dt.datetime.now(_dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    return store.model_dir(name) / "reports" / f"{stamp}-{label}"


def write_report(folder: Path, report: dict) -> None:
    """report.json and report.html (scores, per-class tables, confusion matrices as tables and
    pictures, curves and the decision)."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / REPORT_JSON).write_text(json.dumps(report, indent=2) + "\n")
    (folder / REPORT_HTML).write_text(render_html(report))


def render_html(report: dict) -> str:
    models = report["models"]
    names = report["class_names"]
    columns = [(label, key) for label, key in summary_columns(names) if _any_score(models, key)]
    calibrated = all("calibration" in m for m in models.values())
    rows = "".join(
        f"<tr><th>{html.escape(label)}</th>"
        + "".join(f"<td>{_fmt(_get(m['scores'], key))}</td>" for _, key in columns)
        + (f"<td>{_fmt(_ece(m))}</td>" if calibrated else "")
        + "</tr>"
        for label, m in models.items()
    )
    ece_head = "<th>calibration error (ECE)</th>" if calibrated else ""
    scaling = "".join(
        _temperature_html(label, m["temperature_scaling"])
        for label, m in models.items()
        if m.get("temperature_scaling")
    )
    decision = report.get("decision")
    decision_html = _decision_html(decision) if decision else ""
    details = "".join(
        f"<h2>{html.escape(label)}</h2>{_per_class_html(m['scores'], names)}"
        f"{_confusion_html(m['scores']['confusion_matrix'], names)}"
        for label, m in models.items()
        if "per_class" in m["scores"]
    )
    picture = _png_base64(report)
    photos = _training_photos_html(report.get("training_photos"), names)
    return f"""<!doctype html>
<html><head><meta charset="utf-8"><title>{html.escape(report["title"])}</title>
<style>body{{font-family:sans-serif;max-width:1100px;margin:2em auto}}
table{{border-collapse:collapse;margin:0.5em 0}}td,th{{border:1px solid #ccc;padding:4px 10px;text-align:right}}
.ok{{color:#060}}.no{{color:#a00}}</style></head><body>
<h1>{html.escape(report["title"])}</h1>
<p>Held-out data: {html.escape(report["data"])} ({html.escape(", ".join(names))})</p>
{decision_html}
{photos}
<table><tr><th></th>{"".join(f"<th>{html.escape(label)}</th>" for label, _ in columns)}{ece_head}</tr>{rows}</table>
{scaling}
{details}
<img alt="confusion matrices, training curves and calibration" src="data:image/png;base64,{picture}">
</body></html>
"""


def summary_columns(class_names: list[str]) -> list[tuple[str, str]]:
    """The summary's (heading, key) pairs; two classes' precision and recall are those of
    the second class, and their headings say so."""
    if len(class_names) != 2:
        return list(_COLUMNS)
    of = {"precision": f"precision of {class_names[1]}", "recall": f"recall of {class_names[1]}"}
    return [(of.get(key, label), key) for label, key in _COLUMNS]


def _training_photos_html(counts: dict | None, names: list[str]) -> str:
    """The challenger's training photos per source (the data folder, each extra folder such
    as labelled feedback) and class."""
    if not counts:
        return ""
    head = "".join(f"<th>{html.escape(n)}</th>" for n in names)
    rows = "".join(
        f"<tr><th>{html.escape(source)}</th>"
        + "".join(f"<td>{by_class.get(n, 0)}</td>" for n in names)
        + "</tr>"
        for source, by_class in counts.items()
    )
    return f"<p>Training photos of the challenger, by source:</p><table><tr><th>source</th>{head}</tr>{rows}</table>"


def training_photos_lines(counts: dict | None) -> list[str]:
    """`training photos from <source>: cats 3, dogs 5`, one line per source."""
    return [
        f"training photos from {source}: "
        + ", ".join(f"{name} {n}" for name, n in by_class.items())
        for source, by_class in (counts or {}).items()
    ]


def _ece(model: dict) -> float | None:
    return (model.get("calibration") or {}).get("expected_calibration_error")


def _temperature_html(label: str, scaling: dict) -> str:
    ece = scaling["expected_calibration_error"]
    return (
        f"<p>{html.escape(label)}: temperature scaling, T = {scaling['temperature']:.3f}, fitted "
        f"on {html.escape(scaling['fitted_on'])} (calibration error there "
        f"{ece['before']:.4f} before, {ece['after']:.4f} after); the scores above are of the "
        "calibrated model, as it serves.</p>"
    )


# Summary columns: (heading, key in the scores; "macro.f1" is scores["macro"]["f1"]).
_COLUMNS = (
    ("accuracy", "accuracy"),
    ("top-2 accuracy", "top_2_accuracy"),
    ("top-3 accuracy", "top_3_accuracy"),
    ("precision", "precision"),
    ("recall", "recall"),
    ("macro precision", "macro.precision"),
    ("macro recall", "macro.recall"),
    ("macro F1", "macro.f1"),
    ("ROC AUC", "roc_auc"),
    ("count", "count"),
)


def _get(scores: dict, key: str):
    for part in key.split("."):
        scores = scores.get(part) if isinstance(scores, dict) else None
    return scores


def _any_score(models: dict, key: str) -> bool:
    return any(key.split(".")[0] in m["scores"] for m in models.values())


def _fmt(value) -> str:
    if value is None:
        return "-"
    return f"{value:.4f}" if isinstance(value, float) else str(value)


def _decision_html(decision: dict) -> str:
    verdict = "Published" if decision["published"] else "Not published"
    rule = f" (rule: {html.escape(decision['rule'])})" if decision.get("rule") else ""
    checks = "".join(
        f"<li class='{'ok' if c['passed'] else 'no'}'>{html.escape(c['rule'])}: "
        f"{html.escape(c['detail'])}</li>"
        for c in decision.get("checks", [])
    )
    return (
        f"<p class='decision {'ok' if decision['published'] else 'no'}'><b>{verdict}</b>{rule}: "
        f"{html.escape(decision['reason'])}</p>" + (f"<ul>{checks}</ul>" if checks else "")
    )


def _per_class_html(scores: dict, names: list[str]) -> str:
    per_class, macro = scores["per_class"], scores["macro"]
    rows = "".join(
        f"<tr><th>{html.escape(name)}</th>"
        + "".join(f"<td>{_fmt(per_class[name][k])}</td>" for k in _PER_CLASS)
        + "</tr>"
        for name in names
    )
    rows += (
        "<tr><th>macro average</th>"
        + "".join(f"<td>{_fmt(macro[k])}</td>" for k in _PER_CLASS[:3])
        + f"<td>{scores['count']}</td></tr>"
    )
    return (
        "<table><tr><th>class</th><th>precision</th><th>recall</th><th>F1</th>"
        f"<th>support</th></tr>{rows}</table>"
    )


def _confusion_html(matrix: list[list[int]], names: list[str]) -> str:
    head = "".join(f"<th>{html.escape(n)}</th>" for n in names)
    rows = "".join(
        f"<tr><th>{html.escape(name)}</th>" + "".join(f"<td>{n}</td>" for n in row) + "</tr>"
        for name, row in zip(names, matrix)
    )
    return f"<table><tr><th>truth \\ answer</th>{head}</tr>{rows}</table>"


_PER_CLASS = ("precision", "recall", "f1", "support")


def markdown_tables(scores: dict, class_names: list[str]) -> str:
    """The headline figures, the per-class table (with macro averages) and the confusion
    matrix (rows: truth) as Markdown: what the command lines print."""
    heads = [
        f"{label} {_fmt(_get(scores, key))}"
        for label, key in summary_columns(class_names)
        if key != "count" and _get(scores, key) is not None
    ]
    parts = [", ".join(heads) + f" ({scores['count']} photos)"]
    if "per_class" in scores:
        parts.append(per_class_markdown(scores, class_names))
    parts.append(confusion_markdown(scores["confusion_matrix"], class_names))
    return "\n\n".join(parts)


def per_class_markdown(scores: dict, class_names: list[str]) -> str:
    """Precision, recall, F1 and support of each class, then their macro averages."""
    per_class, macro = scores["per_class"], scores["macro"]
    lines = ["| class | precision | recall | F1 | support |", "|---|---:|---:|---:|---:|"]
    lines += [
        f"| {name} | " + " | ".join(_fmt(per_class[name][k]) for k in _PER_CLASS) + " |"
        for name in class_names
    ]
    lines.append(
        "| macro average | "
        + " | ".join(_fmt(macro[k]) for k in _PER_CLASS[:3])
        + f" | {scores['count']} |"
    )
    return "\n".join(lines)


def confusion_markdown(matrix: list[list[int]], class_names: list[str]) -> str:
    """The confusion matrix, rows the true class, columns the answer."""
    lines = [
        "| truth \\ answer | " + " | ".join(class_names) + " |",
        "|---|" + "---:|" * len(class_names),
    ]
    lines += [
        f"| {name} | " + " | ".join(map(str, row)) + " |" for name, row in zip(class_names, matrix)
    ]
    return "\n".join(lines)


def _png_base64(report: dict) -> str:
    plt = pyplot()
    models = report["models"]
    histories = {k: m["history"] for k, m in models.items() if m.get("history")}
    curves = {k: m["calibration"] for k, m in models.items() if m.get("calibration")}
    columns = len(models) + (1 if histories else 0) + (1 if curves else 0)
    names = report["class_names"]
    side = 3.8 + (0.45 * len(names) if len(names) > 2 else 0.4)
    fig, axes = plt.subplots(1, columns, figsize=(side * columns, side), squeeze=False)
    for ax, (label, m) in zip(axes[0], models.items()):
        title = f"{label}: accuracy {m['scores']['accuracy']:.3f}"
        draw_confusion(ax, m["scores"]["confusion_matrix"], names, title)
    if histories:
        ax = axes[0][len(models)]
        for label, history in histories.items():
            for key in ("accuracy", "val_accuracy"):
                if key in history:
                    ax.plot(range(1, len(history[key]) + 1), history[key], label=f"{label} {key}")
        ax.set_xlabel("epoch")
        ax.set_title("training curves")
        ax.legend(fontsize=7)
        ax.grid(alpha=0.3)
    if curves:
        ax = axes[0][-1]
        ax.plot([0, 1], [0, 1], "--", color="grey", label="perfectly calibrated")
        for label, curve in curves.items():
            bins = curve["bins"]
            ax.plot(
                [b["mean_predicted"] for b in bins],
                [b["observed"] for b in bins],
                "-o",
                label=f"{label} (ECE {curve['expected_calibration_error']:.3f})",
            )
        ax.set_xlabel(f"predicted {curve['of']}")
        ax.set_title("calibration on the held-out photos")
        ax.legend(fontsize=7)
        ax.grid(alpha=0.3)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=80)
    plt.close(fig)
    return base64.b64encode(buffer.getvalue()).decode()
