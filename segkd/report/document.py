"""OUT/report.html (one self-contained page: every image a base64 data URI) and OUT/report.md (its PNGs under
OUT/report/), both from the demo's step results."""

from __future__ import annotations

import base64
import html
from pathlib import Path

from segkd.data.synthetic import CLASSES, PALETTE
from segkd.outputs import atomic_write, guard_outputs
from segkd.report import figures
from segkd.report.table import COLUMNS, LABELS, cell, kd_gain, markdown_table, table_rows

FIGURES = {  # file under OUT/report/ -> caption
    "overlays.png": "Test images: the label and each model's prediction over the photo (student, distilled "
                    "student, teacher).",
    "curves.png": "Training curves of the three runs (results.csv of each).",
    "confusion.png": "Confusion matrix of the distilled student on the test split (rows: true class, normalised).",
    "fps_vs_miou.png": "Speed against accuracy on this CPU: each model eager and in ONNX Runtime (fp32, int8).",
}
STYLE = """body{font:15px/1.45 system-ui,sans-serif;max-width:1180px;margin:2em auto;padding:0 1em;color:#222}
table{border-collapse:collapse;font-size:13px}th,td{border:1px solid #ccc;padding:4px 7px;text-align:right}
th{background:#f3f3f3}td:first-child,td:nth-child(2),th:first-child,th:nth-child(2){text-align:left}
figure{margin:1.4em 0}
img{max-width:100%;border:1px solid #ddd}figcaption{color:#555;font-size:13px}
code,pre{background:#f6f6f6;font-size:12.5px}pre{padding:.6em;overflow-x:auto;white-space:pre-wrap}
.swatch{display:inline-block;width:.9em;height:.9em;margin:0 .3em 0 1em;vertical-align:middle;border:1px solid #999}"""


def report_outputs(out: Path) -> list[Path]:
    return [out / "report.html", out / "report.md", *(out / "report" / n for n in FIGURES)]


def write_report(out: Path, results: dict[str, dict], plan: dict, lines: list[str]) -> dict:
    """Draw the figures, write both documents into `out`; returns the table rows, the KD gain and the files.

    `results`: the demo's step results; `plan`: its epochs (`teacher_epochs`, `student_epochs`); `lines`: the
    equivalent commands, shown at the end."""
    guard_outputs(report_outputs(out), force=True)
    rows = table_rows(results)
    pngs = _figures(results, rows)
    for name, data in pngs.items():
        with atomic_write(out / "report" / name) as f:
            f.write(data)
    gain = kd_gain(rows)
    text = {"md": _markdown(rows, gain, results, plan, lines), "html": _html(rows, gain, results, plan, lines, pngs)}
    for kind, body in text.items():
        with atomic_write(out / f"report.{kind}", "w", encoding="utf-8") as f:
            f.write(body)
    return {"table": rows, "kd_gain": gain, "html": str(out / "report.html"), "md": str(out / "report.md"),
            "figures": [str(out / "report" / n) for n in pngs]}


def _figures(results: dict[str, dict], rows: list[dict]) -> dict[str, bytes]:
    predict = results["predict"]
    order = ["student", "student-kd", "teacher"]
    predictions = {LABELS[m].split(" · ")[0]: predict["labels"][m] for m in order}
    runs = {LABELS[m].split(" · ")[0]: results["distill" if m == "student-kd" else m]["results"] for m in LABELS}
    confusion = Path(results["eval"]["student-kd"]["run_dir"]) / "confusion_matrix_normalized.png"
    return {"overlays.png": figures.overlay_grid(predict["images"], predict["masks"], predictions, PALETTE),
            "curves.png": figures.training_curves(runs), "confusion.png": confusion.read_bytes(),
            "fps_vs_miou.png": figures.fps_vs_miou(rows)}


def _summary(gain: float, results: dict[str, dict], plan: dict) -> list[str]:
    data, distill = results["data"], results["distill"]
    splits = " / ".join(f"{n} {s}" for s, n in data["splits"].items())
    (th, tw), (sh, sw) = distill["teacher_size"], distill["student_size"]
    verdict = "beats" if gain > 0 else "does not beat"
    return [
        f"Data: {data['images']} synthetic navel-orange images {data['size']}×{data['size']} ({splits}); classes "
        f"{', '.join(CLASSES)}.",
        f"Teacher SegFormer-B1 at {th}×{tw}, {_epochs(plan['teacher_epochs'])}; student FastSegFormer-P at {sh}×{sw}, "
        f"{_epochs(plan['student_epochs'])} alone and {_epochs(plan['student_epochs'])} distilled (KD terms: "
        f"{', '.join(distill['terms'])}; the teacher sees the larger image).",
        f"The distilled student {verdict} the student alone: {gain:+.2f} test mIoU points.",
    ]


def _epochs(n: int) -> str:
    return f"{n} epoch{'' if n == 1 else 's'}"


def _markdown(rows, gain, results, plan, shell: list[str]) -> str:
    text = ["# segkd demo report", "", *_summary(gain, results, plan), "", markdown_table(rows), ""]
    for name, caption in FIGURES.items():
        text += [f"![{caption}](report/{name})", "", f"*{caption}*", ""]
    text += ["## The same steps on the command line", "", "```bash", *shell, "```", ""]
    return "\n".join(text)


def _html(rows, gain, results, plan, lines: list[str], pngs: dict[str, bytes]) -> str:
    esc = html.escape
    head = "".join(f"<th>{esc(h)}</th>" for _, h, _ in COLUMNS)
    body = "".join("<tr>" + "".join(f"<td>{esc(cell(r, k, f))}</td>" for k, _, f in COLUMNS) + "</tr>" for r in rows)
    legend = "".join(f'<span class="swatch" style="background:rgb{tuple(c)}"></span>{esc(n)}'
                     for n, c in zip(CLASSES, PALETTE))
    figs = "".join(f'<figure><img alt="{esc(name)}" src="data:image/png;base64,'
                   f'{base64.b64encode(data).decode("ascii")}"><figcaption>{esc(FIGURES[name])}</figcaption></figure>'
                   for name, data in pngs.items())
    shell = "\n".join(esc(c) for c in lines)
    protocol = "<br>".join(esc(h) for h in results["bench"]["header"])
    summary = "".join(f"<p>{esc(s)}</p>" for s in _summary(gain, results, plan))
    return (f"<!doctype html><html lang=en><head><meta charset=utf-8><title>segkd demo report</title>"
            f"<style>{STYLE}</style></head><body><h1>segkd demo report</h1>{summary}"
            f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"
            f"<p><small>{protocol}</small></p><p>Classes:{legend}</p>{figs}"
            f"<h2>The same steps on the command line</h2><pre>{shell}</pre></body></html>\n")
