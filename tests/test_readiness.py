"""Start-up waits: retries counted (never slept), the last error kept, real MariaDB and Redis."""

from __future__ import annotations

from pathlib import Path

import pytest

from app.readiness import NotReady, wait_for, wait_for_async, wait_for_services
from tests.conftest import MYSQL_URL, free_port, make_settings


def flaky(failures: int) -> tuple[list[int], object]:
    calls: list[int] = []

    def check() -> str:
        calls.append(1)
        if len(calls) <= failures:
            raise ConnectionError(f"refused #{len(calls)}")
        return "up"

    return calls, check


@pytest.mark.parametrize("failures,attempts,ok", [(0, 1, True), (2, 3, True), (3, 3, False), (5, 1, False)])
def test_wait_for(failures: int, attempts: int, ok: bool) -> None:
    calls, check = flaky(failures)
    slept: list[float] = []
    if ok:
        assert wait_for(check, attempts, 0.5, sleep=slept.append) == "up"  # type: ignore[arg-type]
        assert slept == [0.5] * failures
    else:
        with pytest.raises(NotReady) as info:
            wait_for(check, attempts, 0.5, what="redis", sleep=slept.append)  # type: ignore[arg-type]
        assert f"redis not ready after {attempts} attempt(s)" in str(info.value)
        assert isinstance(info.value.__cause__, ConnectionError) and f"refused #{attempts}" in str(info.value)
        assert slept == [0.5] * (attempts - 1)  # no pause after the last try
    assert len(calls) == min(failures + 1, attempts)


async def test_wait_for_async() -> None:
    calls, check = flaky(2)
    slept: list[float] = []

    async def acheck() -> str:
        return check()  # type: ignore[operator, no-any-return]

    async def asleep(s: float) -> None:
        slept.append(s)

    assert await wait_for_async(acheck, 5, 1.0, sleep=asleep) == "up" and slept == [1.0, 1.0]
    with pytest.raises(ValueError):
        await wait_for_async(acheck, 0, 1.0)


def test_services_up(tmp_path: Path, redis_url: str, mysql_store) -> None:  # type: ignore[no-untyped-def]
    slept: list[float] = []
    wait_for_services(make_settings(tmp_path, database_url=MYSQL_URL, redis_url=redis_url), sleep=slept.append)
    assert slept == []


def test_services_down_are_retried_then_reported(tmp_path: Path, mysql_store) -> None:  # type: ignore[no-untyped-def]
    settings = make_settings(tmp_path, database_url=MYSQL_URL, redis_url=f"redis://127.0.0.1:{free_port()}/0",
                             startup_wait_attempts=3, startup_wait_delay_s=0.25)
    slept: list[float] = []
    with pytest.raises(NotReady, match="redis not ready after 3 attempt"):
        wait_for_services(settings, sleep=slept.append)
    assert slept == [0.25, 0.25]


def test_embedded_mode_waits_for_nothing(tmp_path: Path) -> None:
    wait_for_services(make_settings(tmp_path), sleep=lambda s: pytest.fail("slept"))
