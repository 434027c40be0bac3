"""A private redis-server for the embedded mode, on a unix socket in DATA_DIR.

No TCP port is opened (--port 0) and the socket is owner-only (700). Persistence:
append-only file with fsync every second, so queued tasks survive a restart of the
service (the SQL record re-enqueues anything lost beyond that).
"""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path

import redis as redis_sync


class EmbeddedRedis:
    def __init__(self, data_dir: Path) -> None:
        self.dir = data_dir.resolve()
        self.socket = self.dir / "redis.sock"
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"unix://{self.socket}"

    def start(self, timeout_s: float = 10.0) -> str:
        exe = shutil.which("redis-server")
        if exe is None:
            raise RuntimeError("redis-server is not installed: apt-get install redis-server (or run `make run`)")
        self.dir.mkdir(parents=True, exist_ok=True)
        if self._alive():
            raise RuntimeError(f"another service already uses {self.socket}; stop it or choose another DATA_DIR")
        self.socket.unlink(missing_ok=True)
        self.proc = subprocess.Popen(
            [exe, "--port", "0", "--unixsocket", str(self.socket), "--unixsocketperm", "700",
             "--dir", str(self.dir), "--appendonly", "yes", "--appendfsync", "everysec", "--save", "",
             "--daemonize", "no", "--logfile", str(self.dir / "redis.log")],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        )
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                err = self.proc.stderr.read().decode(errors="replace") if self.proc.stderr else ""
                raise RuntimeError(f"redis-server exited at start: {err.strip() or 'see ' + str(self.dir / 'redis.log')}")
            if self._alive():
                return self.url
            time.sleep(0.02)
        self.stop()
        raise RuntimeError("redis-server did not start within the timeout")

    def _alive(self) -> bool:
        if not self.socket.exists():
            return False
        try:
            client = redis_sync.Redis(unix_socket_path=str(self.socket), socket_timeout=0.5)
            ok = bool(client.ping())
            client.close()
            return ok
        except (redis_sync.ConnectionError, redis_sync.TimeoutError, OSError):
            return False

    def stop(self) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None
        self.socket.unlink(missing_ok=True)
