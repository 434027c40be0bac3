"""The embedded default as a newcomer runs it: `python main.py` with nothing configured."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.conftest import ROOT, free_port

pytestmark = pytest.mark.slow


def test_main_runs_api_consumer_sqlite_and_private_redis(tmp_path: Path, corpus: Path, model_dir: Path) -> None:
    port = free_port()
    data = tmp_path / "data"
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL")}
    env.update(DATA_DIR=str(data), PORT=str(port), MODEL_DIR=str(model_dir), LOG_LEVEL="WARNING")
    proc = subprocess.Popen([sys.executable, "main.py"], cwd=tmp_path if False else ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(300):
            try:
                if httpx.get(base + "/readyz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert proc.poll() is None, proc.stdout.read().decode() if proc.stdout else ""
            time.sleep(0.1)
        sock = data / "redis.sock"
        assert sock.exists() and (sock.stat().st_mode & 0o777) == 0o700
        assert (data / "vision_to_tag.db").exists()
        with open(corpus / "hostile/tiny_valid_1frame_64x36.mp4", "rb") as f:
            r = httpx.post(base + "/api/v1/task/upload", files={"file": ("t.mp4", f)}, data={"platform": "demo"})
        task_id = r.json()["task_id"]
        for _ in range(600):
            task = httpx.get(f"{base}/api/v1/task/{task_id}").json()["data"]
            if task["status"] in ("completed", "failed"):
                break
            time.sleep(0.1)
        assert task["status"] == "completed", task
        assert task["result"]["frames"]
    finally:
        proc.send_signal(signal.SIGINT)
        out = proc.communicate(timeout=60)[0].decode()
    assert proc.returncode == 0, out
    assert not (data / "redis.sock").exists()  # the private redis-server was stopped
    ps = subprocess.run(["pgrep", "-f", f"redis-server.*{data}"], capture_output=True)
    assert ps.returncode == 1, ps.stdout


def test_half_configured_production_is_refused(tmp_path: Path) -> None:
    env = dict(os.environ, DATA_DIR=str(tmp_path), REDIS_URL="redis://127.0.0.1:6379/15")
    env.pop("DATABASE_URL", None)
    r = subprocess.run([sys.executable, "main.py"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert r.returncode != 0 and "DATABASE_URL" in r.stderr
