"""Pictures of a label-issue report: the most suspect samples and, for contrast, the least
suspect ones, each with its given → suggested label and its score.

``label_issues.png`` is a bare matplotlib ``Figure`` (no pyplot, as in
:mod:`sopjax.evaluators.plots`); ``label_issues.html`` is one self-contained page (its
thumbnails embedded as base64 PNGs) listing more rows than the picture holds. Images come
from ``image_of(index) -> (H, W, 3) uint8``, so CIFAR arrays and image files on disk draw
alike.
"""

from __future__ import annotations

import base64
import html
import io
import pathlib

import numpy as np
from matplotlib.figure import Figure
from PIL import Image

from sopjax.infra.jsonio import atomic_path, atomic_write

COLS = 8
WRONG = "#c0392b"  # frame of a sample whose label is known to be wrong (true labels given)


def _label(row: dict, key: str) -> str:
    name = row.get(key.replace("_label", "_class"))
    return name if name else str(row[key])


def caption(row: dict) -> str:
    """Two short lines: "given → suggested" and the rank and score."""
    arrow = f"{_label(row, 'given_label')} → {_label(row, 'predicted_label')}"
    return f"{arrow}\n#{row['rank']}  score {1 - row['label_score']:.3f}"


def _tile(ax, row: dict, image: np.ndarray) -> None:
    ax.imshow(image, interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks([])
    known_wrong = "true_label" in row and row["true_label"] != row["given_label"]
    for s in ax.spines.values():
        s.set(color=WRONG if known_wrong else "#999999", linewidth=3 if known_wrong else 0.8)
    ax.set_title(caption(row), fontsize=7, color="black")


def figure(table: list[dict], image_of, top: int = 24, bottom: int = 8, title: str = "") -> Figure:
    """The gallery: the ``top`` most suspect rows of ``table`` (most suspect first, as
    :func:`sopjax.evaluators.label_issues.rows` orders them), then the ``bottom`` least
    suspect ones, ``COLS`` to a line. A red frame marks a label known to be wrong."""
    top, bottom = min(top, len(table)), min(bottom, max(len(table) - top, 0))
    lines_top, lines_bottom = -(-top // COLS), -(-bottom // COLS)
    fig = Figure(figsize=(1.45 * COLS, 1.75 * (lines_top + lines_bottom) + 0.9), constrained_layout=True)
    subs = fig.subfigures(2, 1, height_ratios=[max(lines_top, 1), max(lines_bottom, 0.01)]) if bottom else [fig]
    known = " — red frame: the given label is known to be wrong" if "true_label" in table[0] else ""
    panels = [(subs[0], table[:top], f"most suspect {top} (given → suggested label){known}")]
    if bottom:
        panels.append((subs[1], table[len(table) - bottom:], f"least suspect {bottom}, for contrast"))
    for sub, rows_, head in panels:
        axes = np.atleast_1d(sub.subplots(-(-len(rows_) // COLS), COLS)).reshape(-1)
        for ax in axes[len(rows_):]:
            ax.set_axis_off()
        for ax, row in zip(axes, rows_):
            _tile(ax, row, image_of(row["index"]))
        sub.suptitle(head, fontsize=9)
    if title:
        fig.suptitle(title, fontsize=10)
    return fig


def thumbnail_uri(image: np.ndarray, side: int = 48) -> str:
    """A ``data:image/png;base64,…`` URI of ``image`` scaled to ``side`` pixels (nearest neighbour)."""
    im = Image.fromarray(np.asarray(image, np.uint8))
    im = im.resize((side, max(1, round(side * im.height / im.width))), Image.NEAREST)
    buf = io.BytesIO()
    im.save(buf, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def _html_row(row: dict, image: np.ndarray) -> str:
    cells = [f'<img src="{thumbnail_uri(image)}" alt="sample {row["index"]}">', str(row["rank"]), str(row["index"]),
             html.escape(row.get("path", "")), html.escape(_label(row, "given_label")),
             html.escape(_label(row, "predicted_label")), f"{row['label_score']:.4f}",
             "yes" if row["is_label_issue"] else "", html.escape(_label(row, "true_label") if "true_label" in row
                                                                  else "")]
    return "<tr>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>"


def page(table: list[dict], image_of, top: int = 60, bottom: int = 12, title: str = "label issues") -> str:
    """A self-contained HTML page: the ``top`` most and ``bottom`` least suspect rows with
    their thumbnails, path, given and suggested label, label_score and flag."""
    top, bottom = min(top, len(table)), min(bottom, max(len(table) - top, 0))
    head = ("<tr><th>image</th><th>rank</th><th>index</th><th>path</th><th>given</th><th>suggested</th>"
            "<th>label_score</th><th>flagged</th><th>true</th></tr>")
    parts = [f"<!doctype html><meta charset='utf-8'><title>{html.escape(title)}</title>",
             "<style>body{font-family:sans-serif}td,th{padding:2px 8px;border-bottom:1px solid #ddd}"
             "img{image-rendering:pixelated}</style>", f"<h1>{html.escape(title)}</h1>",
             f"<h2>most suspect {top}</h2><table>{head}"]
    parts += [_html_row(r, image_of(r["index"])) for r in table[:top]]
    if bottom:
        parts += [f"</table><h2>least suspect {bottom}</h2><table>{head}"]
        parts += [_html_row(r, image_of(r["index"])) for r in table[len(table) - bottom:]]
    return "\n".join(parts + ["</table>"])


def write(path, table: list[dict], image_of, title: str = "") -> None:
    """``label_issues.png`` and ``label_issues.html`` into the folder ``path``, each written whole
    or not at all."""
    path = pathlib.Path(path)
    with atomic_path(path / "label_issues.png") as tmp:
        figure(table, image_of, title=title).savefig(tmp, dpi=100)
    atomic_write(path / "label_issues.html", page(table, image_of, title=title or "label issues"))
