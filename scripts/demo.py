"""`make run`: start the service on embedded defaults, tag a sample video, keep serving.

Uses `--video PATH` if given, else a corpus clip from ../shared/corpus when present, else
a generated test clip (ffmpeg lavfi), so it works on a fresh machine.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from urllib import request

ROOT = Path(__file__).resolve().parents[1]
CORPUS_SAMPLE = ROOT.parent / "shared" / "corpus" / "real" / "phone_dog_fireplace_rot180_moviepy.mp4"


def sample_video(data_dir: Path, given: str | None) -> Path:
    if given:
        return Path(given)
    if CORPUS_SAMPLE.exists():
        return CORPUS_SAMPLE
    out = data_dir / "sample.mp4"
    if not out.exists():
        data_dir.mkdir(parents=True, exist_ok=True)
        subprocess.run(["ffmpeg", "-v", "error", "-y", "-f", "lavfi", "-i", "testsrc2=size=640x360:rate=25:duration=6",
                        "-f", "lavfi", "-i", "sine=frequency=440:duration=6", "-c:v", "libx264", "-pix_fmt", "yuv420p",
                        "-c:a", "aac", "-shortest", str(out)], check=True)
    return out


def call(method: str, url: str, body: bytes | None = None, headers: dict[str, str] | None = None) -> dict:
    req = request.Request(url, data=body, method=method, headers=headers or {})
    try:
        with request.urlopen(req, timeout=30) as resp:
            return json.loads(resp.read())
    except request.HTTPError as exc:
        return json.loads(exc.read())


def upload(base: str, path: Path) -> dict:
    boundary = "vttdemo" + os.urandom(8).hex()
    parts = [f"--{boundary}\r\nContent-Disposition: form-data; name=\"platform\"\r\n\r\ndemo\r\n".encode(),
             f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{path.name}\"\r\n"
             f"Content-Type: application/octet-stream\r\n\r\n".encode(), path.read_bytes(), f"\r\n--{boundary}--\r\n".encode()]
    return call("POST", base + "/api/v1/task/upload", b"".join(parts),
                {"Content-Type": f"multipart/form-data; boundary={boundary}"})


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--video", help="a video file to tag (default: a sample)")
    p.add_argument("--exit", action="store_true", help="stop the service after tagging the sample")
    args = p.parse_args(argv)
    host, port = os.environ.get("HOST", "127.0.0.1"), os.environ.get("PORT", "8000")
    base = f"http://{host}:{port}"
    data_dir = Path(os.environ.get("DATA_DIR", ROOT / "data"))
    proc = subprocess.Popen([sys.executable, str(ROOT / "main.py")], cwd=ROOT)
    try:
        for _ in range(600):
            if proc.poll() is not None:
                print("the service exited; see the log above", file=sys.stderr)
                return 1
            try:
                if call("GET", base + "/readyz").get("code") == 200:
                    break
            except OSError:
                pass
            time.sleep(0.2)
        video = sample_video(data_dir, args.video)
        print(f"\n== tagging {video} ...")
        submitted = upload(base, video)
        if submitted.get("code") != 200:
            print("upload refused:", submitted, file=sys.stderr)
            return 1
        task_id = submitted["task_id"]
        while True:
            task = call("GET", f"{base}/api/v1/task/{task_id}")["data"]
            if task["status"] in ("completed", "failed"):
                break
            time.sleep(0.5)
        if task["status"] == "failed":
            print(f"== failed: {task['error']}")
        else:
            tags = ", ".join(f"{t['name']} ({t['confidence']:.2f}, {'+'.join(t['sources'])})" for t in task["result"]["tags"][:10])
            print(f"== completed in {sum(task['timings'].values()):.1f} s: {tags or 'no confident tags'}")
        print(f"== full result: curl {base}/api/v1/task/{task_id}")
        print(f"== API docs: {base}/docs   (Ctrl-C stops the service)\n")
        if args.exit:
            return 0 if task["status"] == "completed" else 1
        proc.wait()
        return proc.returncode or 0
    except KeyboardInterrupt:
        return 0
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            proc.wait(60)


if __name__ == "__main__":
    sys.exit(main())
