"""A short run of bench/chaos.py: consumers SIGKILLed, Redis and MariaDB restarted mid-run."""

from __future__ import annotations

import importlib.util
import shutil
import sys

import pytest

from tests.conftest import CORPUS, ROOT

pytestmark = pytest.mark.slow


@pytest.mark.skipif(shutil.which("mariadbd") is None and shutil.which("/usr/sbin/mariadbd") is None,
                    reason="needs the MariaDB server binary to start a private instance")
async def test_nothing_lost_stuck_or_duplicated_under_chaos(model_dir) -> None:
    assert (CORPUS / "hostile/tiny_valid_1frame_64x36.mp4").exists()
    spec = importlib.util.spec_from_file_location("chaos", ROOT / "bench" / "chaos.py")
    assert spec is not None and spec.loader is not None
    chaos = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = chaos  # dataclasses look their module up there
    spec.loader.exec_module(chaos)
    result = await chaos.run(tasks=40, kill_every=3.0, drain_s=150)
    assert result["accepted"] == 40, result
    assert result["lost"] == 0 and result["stuck"] == 0 and result["duplicate_results"] == 0, result
    assert result["completed"] + result["failed"] == 40
    assert any("Redis killed" in e for e in result["events"]) and any("MariaDB killed" in e for e in result["events"])
    assert result["consumers_started"] >= 4  # at least one consumer was killed and replaced
