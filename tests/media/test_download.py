import ipaddress
from pathlib import Path

import pytest

from app.errors import BlockedAddress, DownloadFailed, InvalidUrl, SourceGone, TooLarge, UnsupportedFormat
from app.media.download import Downloader, backoff_s
from app.media.netguard import Policy
from tests.conftest import MediaServer

LOOPBACK = Policy(allowed_networks=(ipaddress.ip_network("127.0.0.0/8"),))


def downloader(policy: Policy = LOOPBACK, **kw: object) -> Downloader:
    args: dict = {"policy": policy, "max_bytes": 5_000_000, "retries": 2, "read_timeout_s": 5.0}
    args.update(kw)
    return Downloader(**args)


async def test_downloads_and_hashes(media_server: MediaServer, tmp_path: Path, corpus: Path) -> None:
    import hashlib

    dl = downloader()
    got = await dl.fetch(media_server.url("corpus/containers/bbb_clip.webm"), tmp_path / "a.part")
    await dl.close()
    data = (corpus / "containers/bbb_clip.webm").read_bytes()
    assert got.size == len(data) and got.sha256 == hashlib.sha256(data).hexdigest() and got.container == "webm"
    assert got.path.read_bytes() == data


@pytest.mark.parametrize("target", [
    "http://127.0.0.1:{port}/corpus/containers/bbb_clip.mp4",
    "http://localhost:{port}/corpus/containers/bbb_clip.mp4",
    "http://169.254.169.254/latest/meta-data/",
    "http://[::1]:{port}/corpus/containers/bbb_clip.mp4",
    "http://[::ffff:127.0.0.1]:{port}/x",
    "http://0177.0.0.1:{port}/x",
])
async def test_ssrf_refused_by_default(media_server: MediaServer, tmp_path: Path, target: str) -> None:
    dl = downloader(Policy())
    with pytest.raises(BlockedAddress):
        await dl.fetch(target.format(port=media_server.port), tmp_path / "a.part")
    await dl.close()
    assert media_server.hits == {}  # nothing reached the server
    assert not (tmp_path / "a.part").exists()


async def test_redirect_to_private_address_is_refused(media_server: MediaServer, tmp_path: Path) -> None:
    # The media host itself is allowed (by name); the hop to the metadata address is not.
    dl = downloader(Policy(allowed_hostnames=frozenset({"127.0.0.1"})))
    for to in ("http://169.254.169.254/latest/meta-data/", "http://10.0.0.1/x", "http://[::1]/x"):
        with pytest.raises(BlockedAddress):
            await dl.fetch(media_server.url(f"redirect?to={to}"), tmp_path / "a.part")
    with pytest.raises(InvalidUrl):
        await dl.fetch(media_server.url("redirect?to=file:///etc/passwd"), tmp_path / "a.part")
    await dl.close()


async def test_redirects_are_followed_and_capped(media_server: MediaServer, tmp_path: Path) -> None:
    dl = downloader()
    final = media_server.url("corpus/containers/bbb_clip.mp4")
    got = await dl.fetch(media_server.url(f"redirect?to={final}"), tmp_path / "a.part")
    assert got.final_url == final
    url = final
    for _ in range(6):
        from urllib.parse import quote

        url = media_server.url("redirect?to=" + quote(url, safe=""))
    with pytest.raises(SourceGone, match="redirects"):
        await dl.fetch(url, tmp_path / "b.part")
    await dl.close()


async def test_size_cap_on_content_length_and_on_counted_bytes(media_server: MediaServer, tmp_path: Path) -> None:
    dl = downloader(max_bytes=100_000)
    with pytest.raises(TooLarge):  # Content-Length says 200 kB
        await dl.fetch(media_server.url("corpus/containers/bbb_clip.mp4"), tmp_path / "a.part")
    with pytest.raises(TooLarge):  # chunked, no length: counted while streaming
        await dl.fetch(media_server.url("big"), tmp_path / "b.part")
    await dl.close()
    assert list(tmp_path.iterdir()) == []


async def test_status_codes(media_server: MediaServer, tmp_path: Path) -> None:
    dl = downloader(retries=1)
    with pytest.raises(SourceGone):
        await dl.fetch(media_server.url("status/404"), tmp_path / "a.part")
    assert media_server.hits["/status/404"] == 1  # 4xx is not retried
    with pytest.raises(DownloadFailed):
        await dl.fetch(media_server.url("status/503"), tmp_path / "a.part")
    assert media_server.hits["/status/503"] == 2  # 5xx is retried
    got = await dl.fetch(media_server.url("flaky/containers/bbb_clip.mp4"), tmp_path / "c.part")
    assert got.size > 0 and media_server.hits["/flaky/containers/bbb_clip.mp4"] == 2
    await dl.close()


async def test_html_is_refused_by_content(media_server: MediaServer, tmp_path: Path) -> None:
    dl = downloader()
    with pytest.raises(UnsupportedFormat, match="HTML"):
        await dl.fetch(media_server.url("html"), tmp_path / "a.part")
    await dl.close()
    assert not (tmp_path / "a.part").exists()


async def test_connection_refused_is_retryable(tmp_path: Path) -> None:
    from tests.conftest import free_port

    dl = downloader(retries=0)
    with pytest.raises(DownloadFailed) as info:
        await dl.fetch(f"http://127.0.0.1:{free_port()}/x.mp4", tmp_path / "a.part")
    await dl.close()
    assert info.value.retryable


@pytest.mark.parametrize("attempt,rand,expect", [(0, 1.0, 0.5), (1, 1.0, 1.0), (3, 0.5, 2.0), (10, 1.0, 10.0), (2, 0.0, 0.0)])
def test_backoff(attempt: int, rand: float, expect: float) -> None:
    assert backoff_s(attempt, rand=lambda: rand) == expect
