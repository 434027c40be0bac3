"""Cost of the full analysis (dimensions=all) on the real corpus videos; prints the figures.

One process, as a consumer runs: models are loaded and warmed first on a speech clip
(a consumer loads them once), then each real video is analysed once. Prints, per stage
(the progress stages of GET /api/v1/task/{id}) and in total, seconds of processing per
minute of video, and the peak RSS of this process (every model loaded).

    .venv/bin/python bench/analysis.py [--corpus ../shared/corpus] [--dimensions all]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
WARM_UP = "variants/chaplin_jfk_speech.mp4"


async def analyse(path: Path, settings: object, provider: object, dimensions: str) -> tuple[dict[str, float], float]:
    from app.pipeline import Progress, analyse_file

    progress = Progress()
    size = path.stat().st_size  # noqa: ASYNC240 - a bench script, nothing else runs on its loop
    t0 = time.perf_counter()
    got = await analyse_file(path, task_id="bench", sha256=path.stem, size=size, container="",
                             dimensions=dimensions, settings=settings, provider=provider,  # type: ignore[arg-type]
                             progress=progress)
    wall = time.perf_counter() - t0
    failed = [n for n, s in got.document["analysis"].items() if s["status"] == "failed"]
    if failed:
        print(f"  WARNING {path.name}: failed stages {failed}")
    return progress.finish(), wall


async def main(corpus: Path, model_dir: Path, dimensions: str) -> int:
    from app.config import Settings
    from app.providers.local import LocalProvider

    settings = Settings(_env_file=None, data_dir=Path(tempfile.mkdtemp()), model_dir=model_dir)
    provider = LocalProvider(settings)
    manifest = json.loads((corpus / "manifest.json").read_text())
    files = [f for f in manifest["files"] if f["category"] == "real"]
    t0 = time.perf_counter()
    await analyse(corpus / WARM_UP, settings, provider, "all")
    print(f"warm-up (model loads) on {WARM_UP}: {time.perf_counter() - t0:.1f} s")

    stages: dict[str, float] = {}
    minutes = 0.0
    wall_total = 0.0
    print(f"{'file':44s} {'video s':>8s} {'wall s':>7s} {'s/min':>6s}")
    for entry in files:
        timings, wall = await analyse(corpus / entry["path"], settings, provider, dimensions)
        minutes += entry["duration"] / 60
        wall_total += wall
        for k, v in timings.items():
            stages[k] = stages.get(k, 0.0) + v
        print(f"{entry['path']:44s} {entry['duration']:8.1f} {wall:7.2f} {wall / (entry['duration'] / 60):6.1f}")
    print(f"\nseconds of processing per minute of video ({len(files)} real videos, {minutes * 60:.1f} s of video, "
          f"dimensions={dimensions}):")
    for k, v in sorted(stages.items(), key=lambda kv: -kv[1]):
        print(f"  {k:24s} {v / minutes:7.2f}")
    print(f"  {'TOTAL (wall)':24s} {wall_total / minutes:7.2f}")
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    # RUSAGE_CHILDREN is no help for ffmpeg: a child forked from this process counts its parent's pages.
    print(f"peak RSS: worker process {own:.0f} MB (all models loaded; ffmpeg children not included)")
    return 0


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--corpus", type=Path, default=ROOT.parent / "shared" / "corpus")
    ap.add_argument("--model-dir", type=Path, default=ROOT / "data" / "models")
    ap.add_argument("--dimensions", default="all", choices=["all", "vision", "audio", "text"])
    args = ap.parse_args()
    sys.exit(asyncio.run(main(args.corpus.resolve(), args.model_dir, args.dimensions)))
