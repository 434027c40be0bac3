"""The report folder of a batch run: results.jsonl, durations.csv, durations.png, report.html.

`summarise` is pure (outcomes in, figures out); the writers only format. Durations are the
videos' lengths, always in seconds, and plotted in link order (the order of the links file),
never in the order files happen to finish or sit in a directory.
"""

from __future__ import annotations

import base64
import csv
import html
import io
import json
import statistics
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from app.batch import BadLine, Outcome

TOP_TAGS = 25


def summarise(outcomes: Sequence[Outcome], bad: Sequence[BadLine]) -> dict[str, Any]:
    """Counts, failures by error code, top tags (by videos), duration figures (pure)."""
    status = Counter(o.status for o in outcomes)
    failures = Counter(o.error_code or "unknown" for o in outcomes if o.status != "completed")
    tags = Counter(t for o in outcomes if o.status == "completed" for t in dict.fromkeys(o.tags))
    durations = [o.duration_s for o in outcomes if o.duration_s is not None]
    figures: dict[str, float] = {}
    if durations:
        figures = {"min_s": min(durations), "median_s": statistics.median(durations), "max_s": max(durations),
                   "total_s": sum(durations)}
    return {
        "links": len(outcomes) + len(bad), "submitted": len(outcomes), "malformed": len(bad),
        "completed": status.get("completed", 0), "failed": status.get("failed", 0),
        "rejected": status.get("rejected", 0),
        "failures_by_code": dict(sorted(failures.items(), key=lambda kv: (-kv[1], kv[0]))),
        "top_tags": [[t, n] for t, n in sorted(tags.items(), key=lambda kv: (-kv[1], kv[0]))[:TOP_TAGS]],
        "durations": figures,
    }


def write_results(folder: Path, outcomes: Sequence[Outcome], bad: Sequence[BadLine]) -> None:
    """results.jsonl: one line per link of the file, in line order; malformed lines included."""
    rows: list[tuple[int, dict[str, Any]]] = [(o.line, o.as_dict()) for o in outcomes]
    rows += [(b.line, {"line": b.line, "url": b.text, "task_id": None, "status": "malformed",
                       "error_code": "malformed_line", "error_message": b.reason, "duration_s": None,
                       "processing_s": None, "tags": []}) for b in bad]
    with (folder / "results.jsonl").open("w") as f:
        for _line, row in sorted(rows, key=lambda r: r[0]):
            f.write(json.dumps(row, ensure_ascii=False) + "\n")


def write_durations_csv(folder: Path, outcomes: Sequence[Outcome]) -> None:
    with (folder / "durations.csv").open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["line", "task_id", "status", "duration_s", "processing_s", "url"])
        for o in outcomes:
            w.writerow([o.line, o.task_id or "", o.status, "" if o.duration_s is None else f"{o.duration_s:.3f}",
                        "" if o.processing_s is None else f"{o.processing_s:.3f}", o.url])


def durations_png(outcomes: Sequence[Outcome]) -> bytes:
    """Two panels: a histogram of video durations (s), and each link's duration in link order."""
    import matplotlib

    matplotlib.use("Agg")  # no display; safe in any thread of a headless process
    import matplotlib.pyplot as plt

    done = [o for o in outcomes if o.duration_s is not None]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4))
    try:
        values = [float(o.duration_s or 0) for o in done]
        if values:
            ax1.hist(values, bins=min(30, max(5, len(values) // 2)), color="#3b7dd8", edgecolor="white")
        ax1.yaxis.get_major_locator().set_params(integer=True)
        ax1.set_xlabel("video duration (s)")
        ax1.set_ylabel("videos")
        ax1.set_title(f"Durations of {len(values)} videos")
        ax2.bar([o.line for o in done], values, color="#3b7dd8", width=0.8)
        failed = [o.line for o in outcomes if o.duration_s is None]
        if failed:
            ax2.scatter(failed, [0] * len(failed), marker="x", color="#c0392b", label="failed")
            ax2.legend(loc="upper right")
        ax2.set_xlabel("line in the links file")
        ax2.set_ylabel("duration (s)")
        ax2.set_title("Durations in link order")
        fig.tight_layout()
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=90)
        return buf.getvalue()
    finally:
        plt.close(fig)


def render_html(summary: dict[str, Any], outcomes: Sequence[Outcome], bad: Sequence[BadLine], png: bytes,
                thumbs: dict[str, list[str]], topics: dict[str, Any], title: str) -> str:
    """A self-contained page (images inline as data: URLs, no external resources)."""
    e = html.escape
    png64 = base64.b64encode(png).decode()
    counts = "".join(f"<tr><th>{e(k)}</th><td>{summary[k]}</td></tr>"
                     for k in ("links", "submitted", "completed", "failed", "rejected", "malformed"))
    fails = "".join(f"<tr><td>{e(code)}</td><td>{n}</td></tr>" for code, n in summary["failures_by_code"].items())
    tags = " ".join(f'<span class="tag">{e(t)} <small>{n}</small></span>' for t, n in summary["top_tags"])
    if "error" in topics:
        topic_html = f"<p class='warn'>Topics unavailable: {e(str(topics['error']))}</p>"
    else:
        items = []
        for t in topics.get("topics", []):
            summ = f"<br><em>{e(t.get('summary') or '')}</em>" if t.get("summary") else ""
            items.append(f"<li><b>{e(t['name'])}</b> ({t['size']} videos) — {e(', '.join(t['terms']))}{summ}</li>")
        warns = "".join(f"<p class='warn'>{e(w)}</p>" for w in topics.get("warnings", []))
        topic_html = f"<p>method: {e(str(topics.get('method')))}</p><ol>{''.join(items)}</ol>{warns}"
    bad_rows = "".join(f"<tr><td>{b.line}</td><td>{e(b.text)}</td><td>{e(b.reason)}</td></tr>" for b in bad)
    rows = []
    for o in outcomes:
        imgs = "".join(f'<img src="data:image/jpeg;base64,{b}" alt="keyframe">' for b in thumbs.get(o.task_id or "", []))
        dur = "" if o.duration_s is None else f"{o.duration_s:.1f} s"
        err = f"<span class='warn'>{e(o.error_code or '')}: {e((o.error_message or '')[:200])}</span>" \
            if o.status != "completed" else ""
        rows.append(f"<tr><td>{o.line}</td><td class='url'>{e(o.url)}<br><small>{e(o.task_id or '')}</small></td>"
                    f"<td>{e(o.status)}{err}</td><td>{dur}</td><td>{e(', '.join(o.tags[:20]))}</td>"
                    f"<td class='thumbs'>{imgs}</td></tr>")
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{e(title)}</title>
<style>
body{{font-family:system-ui,sans-serif;margin:2em;color:#222}} table{{border-collapse:collapse;margin:1em 0}}
td,th{{border:1px solid #ddd;padding:4px 8px;text-align:left;vertical-align:top}} .url{{max-width:28em;word-break:break-all}}
.tag{{display:inline-block;background:#eef3fb;border-radius:4px;padding:2px 6px;margin:2px}}
.warn{{color:#c0392b}} .thumbs img{{height:60px;margin-right:4px}} img.plot{{max-width:100%}}
</style></head><body>
<h1>{e(title)}</h1>
<h2>Counts</h2><table>{counts}</table>
<h2>Failures by error code</h2><table><tr><th>code</th><th>links</th></tr>{fails or '<tr><td colspan=2>none</td></tr>'}</table>
<h2>Durations</h2><img class="plot" alt="video durations" src="data:image/png;base64,{png64}">
<h2>Top tags</h2><p>{tags or 'none'}</p>
<h2>Topics</h2>{topic_html}
<h2>Malformed lines</h2><table><tr><th>line</th><th>text</th><th>why</th></tr>{bad_rows or '<tr><td colspan=3>none</td></tr>'}</table>
<h2>Videos</h2><table><tr><th>line</th><th>link</th><th>status</th><th>duration</th><th>tags</th><th>keyframes</th></tr>
{''.join(rows)}</table>
</body></html>
"""


def write_report(folder: Path, outcomes: Sequence[Outcome], bad: Sequence[BadLine], thumbs: dict[str, list[str]],
                 topics: dict[str, Any], title: str) -> dict[str, Any]:
    """Write the four report files; returns the summary."""
    folder.mkdir(parents=True, exist_ok=True)
    summary = summarise(outcomes, bad)
    write_results(folder, outcomes, bad)
    write_durations_csv(folder, outcomes)
    png = durations_png(outcomes)
    (folder / "durations.png").write_bytes(png)
    (folder / "report.html").write_text(render_html(summary, outcomes, bad, png, thumbs, topics, title))
    (folder / "summary.json").write_text(json.dumps({**summary, "topics": topics}, indent=1, ensure_ascii=False))
    return summary
