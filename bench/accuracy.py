"""Analysis accuracy against ../shared/corpus/manifest.json; prints the figures.

  scene cuts   precision / recall / F1 at +-1 frame over every file with a cut list
               (files whose list is empty count: a cut found there is a false positive)
  speech       word error rate on the clip with a reference transcript (JFK), per engine
  on-screen    exact-string recall of the known on-screen text

    .venv/bin/python bench/accuracy.py [--corpus ../shared/corpus] [--engines whisper,pocketsphinx]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


async def main(corpus: Path, engines: list[str], model_dir: Path) -> int:
    from app.analysis.evaluation import scene_accuracy, speech_wer, text_recall
    from app.config import Settings

    settings = Settings(_env_file=None, data_dir=Path(tempfile.mkdtemp()), model_dir=model_dir)
    manifest = json.loads((corpus / "manifest.json").read_text())

    t0 = time.perf_counter()
    total, rows = await scene_accuracy(corpus, manifest, settings)
    print(f"scene cuts (+-1 frame), {len(rows)} files, {time.perf_counter() - t0:.1f} s")
    print(f"  {'file':48s} {'truth':>5s} {'found':>5s} {'tp':>3s} {'fp':>3s} {'fn':>3s}")
    for r in rows:
        c = r["counts"]
        print(f"  {r['path']:48s} {len(r['truth']):5d} {len(r['found']):5d} {c.tp:3d} {c.fp:3d} {c.fn:3d}")
    print(f"  TOTAL precision {total.precision:.3f}  recall {total.recall:.3f}  F1 {total.f1:.3f}"
          f"  (tp {total.tp}, fp {total.fp}, fn {total.fn})")

    for engine in engines:
        t0 = time.perf_counter()
        error, reference, hypothesis = await speech_wer(corpus, manifest, settings, engine)
        print(f"speech WER ({engine}): {error:.3f}  [{time.perf_counter() - t0:.1f} s, model load included]")
        print(f"  reference:  {reference}")
        print(f"  hypothesis: {hypothesis}")

    t0 = time.perf_counter()
    found = await text_recall(corpus, manifest, settings)
    hits = sum(1 for _t, ok, _seen in found if ok)
    print(f"on-screen text exact-string recall: {hits}/{len(found)} = {hits / max(1, len(found)):.3f}"
          f"  [{time.perf_counter() - t0:.1f} s]")
    for text, ok, seen in found:
        print(f"  {'FOUND' if ok else 'MISSED':6s} {text!r}  read: {sorted(set(seen))}")
    return 0


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--corpus", type=Path, default=ROOT.parent / "shared" / "corpus")
    ap.add_argument("--engines", default="whisper,pocketsphinx")
    ap.add_argument("--model-dir", type=Path, default=ROOT / "data" / "models")
    args = ap.parse_args()
    sys.exit(asyncio.run(main(args.corpus.resolve(), [e for e in args.engines.split(",") if e], args.model_dir)))
