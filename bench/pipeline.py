"""Media pipeline cost on the real corpus, against a naive every-frame baseline.

For each real corpus video, in a fresh process each (so peak RSS is that run's):
  ours-all     probe + one ffmpeg decode pass sampling <= 1 frame/s + labels + OCR
  ours-vision  the same with dimensions=vision (labels only)
  naive        OpenCV reads every frame and classifies each with the same ONNX model
               (how the seed scripts sample frames)
Prints processing seconds, seconds per minute of video and peak RSS (worker + ffmpeg).
Models are loaded and warmed before timing: a consumer loads them once.

    .venv/bin/python bench/pipeline.py [--corpus ../shared/corpus] [--files real/a.mp4 ...]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def run_one(mode: str, path: Path, model_dir: Path) -> dict[str, float]:
    from app.config import Settings
    from app.pipeline import Progress, analyse_file
    from app.providers.local import LocalProvider

    settings = Settings(_env_file=None, data_dir=Path(tempfile.mkdtemp()), model_dir=model_dir)
    provider = LocalProvider(settings)
    labeler = provider.labeler()
    if mode == "ours-all":
        provider.text_reader()
    import numpy as np

    labeler.classify([np.zeros((64, 64, 3), np.uint8)])
    t0 = time.perf_counter()
    frames = 0
    if mode == "naive":
        import cv2

        cap = cv2.VideoCapture(str(path))
        while True:
            ok, img = cap.read()
            if not ok:
                break
            labeler.classify([img[:, :, ::-1]], batch=1)
            frames += 1
        cap.release()
    else:
        dims = "all" if mode == "ours-all" else "vision"
        got = asyncio.run(analyse_file(path, task_id="bench", sha256="", size=path.stat().st_size, container="",
                                       dimensions=dims, settings=settings, provider=provider, progress=Progress()))
        frames = len(got.document["frames"])
    seconds = time.perf_counter() - t0
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    kids = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    return {"seconds": seconds, "frames": frames, "rss_mb": own + kids}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--corpus", type=Path, default=ROOT.parent / "shared" / "corpus")
    p.add_argument("--files", nargs="*", help="paths relative to the corpus (default: every real/ and variants/ video)")
    p.add_argument("--one", nargs=3, metavar=("MODE", "PATH", "MODEL_DIR"), help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.one:
        print(json.dumps(run_one(args.one[0], Path(args.one[1]), Path(args.one[2]))))
        return 0
    manifest = json.loads((args.corpus / "manifest.json").read_text())
    entries = [f for f in manifest["files"] if f["category"] in ("real", "variant")]
    if args.files:
        entries = [f for f in entries if f["path"] in args.files]
    model_dir = ROOT / "data" / "models"
    subprocess.run([sys.executable, "-c", "import sys; sys.path.insert(0, sys.argv[1]);"
                    "from app.providers.local import export_onnx; from pathlib import Path;"
                    "export_onnx(Path(sys.argv[2]) / 'efficientnet_lite0.onnx')", str(ROOT), str(model_dir)],
                   check=True, capture_output=True)
    modes = ("ours-all", "ours-vision", "naive")
    print(f"{'video':44} {'dur s':>6} | " + " | ".join(f"{m:>11} s  s/min  RSS MB frames" for m in modes) + " | naive/ours-vision")
    totals = {m: 0.0 for m in modes}
    total_dur = 0.0
    for e in entries:
        row = {}
        for m in modes:
            out = subprocess.run([sys.executable, __file__, "--one", m, str(args.corpus / e["path"]), str(model_dir)],
                                 capture_output=True, text=True, check=True)
            row[m] = json.loads(out.stdout.strip().splitlines()[-1])
            totals[m] += row[m]["seconds"]
        dur = float(e["duration"])
        total_dur += dur
        cells = [f"{row[m]['seconds']:13.2f} {row[m]['seconds'] / dur * 60:6.1f} {row[m]['rss_mb']:6.0f} {row[m]['frames']:6d}"
                 for m in modes]
        print(f"{e['path']:44} {dur:6.1f} | " + " | ".join(cells) + f" | {row['naive']['seconds'] / row['ours-vision']['seconds']:6.1f}x")
    print(f"{'TOTAL':44} {total_dur:6.1f} | " + " | ".join(
        f"{totals[m]:13.2f} {totals[m] / total_dur * 60:6.1f} {'':6} {'':6}" for m in modes)
        + f" | {totals['naive'] / totals['ours-vision']:6.1f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
