"""The report a person reads about scored models: JSON, and an HTML page with its pictures."""

from __future__ import annotations

import base64
import datetime as _dt
import html
import io
import json
from pathlib import Path

import numpy as np

from classifier.store import ModelStore
from training.plots import pyplot

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
    """report.json and report.html (scores, confusion matrices, curves and the decision)."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / REPORT_JSON).write_text(json.dumps(report, indent=2) + "\n")
    (folder / REPORT_HTML).write_text(render_html(report))


def render_html(report: dict) -> str:
    models = report["models"]
    rows = "".join(
        f"<tr><th>{html.escape(label)}</th>"
        + "".join(f"<td>{_fmt(m['scores'].get(k))}</td>" for k in _KEYS)
        + "</tr>"
        for label, m in models.items()
    )
    decision = report.get("decision")
    decision_html = (
        f"<p class='decision {'ok' if decision['published'] else 'no'}'><b>"
        f"{'Published' if decision['published'] else 'Not published'}</b>: "
        f"{html.escape(decision['reason'])}</p>"
        if decision
        else ""
    )
    picture = _png_base64(report)
    return f"""<!doctype html>
<html><head><meta charset="utf-8"><title>{html.escape(report["title"])}</title>
<style>body{{font-family:sans-serif;max-width:960px;margin:2em auto}}
table{{border-collapse:collapse}}td,th{{border:1px solid #ccc;padding:4px 10px;text-align:right}}
.ok{{color:#060}}.no{{color:#a00}}</style></head><body>
<h1>{html.escape(report["title"])}</h1>
<p>Held-out data: {html.escape(report["data"])} ({html.escape(", ".join(report["class_names"]))})</p>
{decision_html}
<table><tr><th></th>{"".join(f"<th>{k}</th>" for k in _KEYS)}</tr>{rows}</table>
<img alt="confusion matrices and training curves" src="data:image/png;base64,{picture}">
</body></html>
"""


_KEYS = ("accuracy", "precision", "recall", "roc_auc", "count")


def _fmt(value) -> str:
    if value is None:
        return "-"
    return f"{value:.4f}" if isinstance(value, float) else str(value)


def _png_base64(report: dict) -> str:
    plt = pyplot()
    models = report["models"]
    histories = {k: m["history"] for k, m in models.items() if m.get("history")}
    columns = len(models) + (1 if histories else 0)
    fig, axes = plt.subplots(1, columns, figsize=(4.2 * columns, 3.8), squeeze=False)
    names = report["class_names"]
    for ax, (label, m) in zip(axes[0], models.items()):
        matrix = np.array(m["scores"]["confusion_matrix"])
        ax.imshow(matrix, cmap="Blues")
        for (i, j), n in np.ndenumerate(matrix):
            ax.text(j, i, str(n), ha="center", va="center")
        ax.set_xticks([0, 1], names)
        ax.set_yticks([0, 1], names)
        ax.set_xlabel("predicted")
        ax.set_ylabel("true")
        ax.set_title(f"{label}: accuracy {m['scores']['accuracy']:.3f}")
    if histories:
        ax = axes[0][-1]
        for label, history in histories.items():
            for key in ("accuracy", "val_accuracy"):
                if key in history:
                    ax.plot(range(1, len(history[key]) + 1), history[key], label=f"{label} {key}")
        ax.set_xlabel("epoch")
        ax.set_title("training curves")
        ax.legend(fontsize=7)
        ax.grid(alpha=0.3)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=80)
    plt.close(fig)
    return base64.b64encode(buffer.getvalue()).decode()
