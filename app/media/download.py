"""Streaming, SSRF-safe video downloads (aiohttp + aiofiles).

Every connection goes through `GuardedResolver`, so each address actually dialled is
checked (no DNS-rebinding window between check and connect); IP-literal hosts, which
aiohttp never resolves, are checked before each request. Redirects are followed by
hand, at most MAX_REDIRECTS, each hop re-checked. Bytes are counted as they arrive;
the first 4 KiB are sniffed so an HTML page is refused before the rest is fetched.
"""

from __future__ import annotations

import asyncio
import hashlib
import ipaddress
import os
import random
import socket
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urljoin

import aiofiles
import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult

from app.errors import BlockedAddress, DownloadFailed, SourceGone, TooLarge, VttError
from app.media.netguard import Policy, check_addresses, check_target, parse_url
from app.media.sniff import SNIFF_BYTES, sniff

MAX_REDIRECTS = 5
CHUNK = 256 * 1024
USER_AGENT = "vision-to-tag/0.1 (+video tagging service)"


@dataclass(frozen=True)
class Downloaded:
    path: Path
    size: int
    sha256: str
    container: str
    final_url: str


class GuardedResolver(AbstractResolver):
    """Resolve with getaddrinfo, then refuse the host if any address is not allowed."""

    def __init__(self, policy: Policy) -> None:
        self.policy = policy

    async def resolve(self, host: str, port: int = 0, family: int = socket.AF_INET) -> list[ResolveResult]:
        loop = asyncio.get_running_loop()
        try:
            infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM, family=family)
        except socket.gaierror as exc:
            raise OSError(f"cannot resolve host {host!r}: {exc.strerror}") from None
        addrs = []
        results: list[ResolveResult] = []
        for fam, _type, proto, _canon, sockaddr in infos:
            ip = ipaddress.ip_address(str(sockaddr[0]).split("%")[0])
            addrs.append(ip)
            results.append(ResolveResult(hostname=host, host=str(sockaddr[0]), port=int(sockaddr[1]),
                                         family=fam, proto=proto, flags=socket.AI_NUMERICHOST))
        check_addresses(host, addrs, self.policy)
        return results

    async def close(self) -> None:
        return None


def backoff_s(attempt: int, base: float = 0.5, cap: float = 10.0, rand: Callable[[], float] = random.random) -> float:
    """Exponential backoff with full jitter (attempt 0 -> up to `base`)."""
    return float(rand() * min(cap, base * (2 ** attempt)))


class Downloader:
    def __init__(self, *, policy: Policy, max_bytes: int, concurrency: int = 8, per_host: int = 4,
                 connect_timeout_s: float = 10.0, read_timeout_s: float = 30.0, retries: int = 3) -> None:
        self.policy = policy
        self.max_bytes = max_bytes
        self.retries = retries
        self._global = asyncio.Semaphore(concurrency)
        self._per_host_limit = per_host
        self._per_host: dict[str, asyncio.Semaphore] = {}
        self._timeout = aiohttp.ClientTimeout(total=None, sock_connect=connect_timeout_s, sock_read=read_timeout_s)
        self._session: aiohttp.ClientSession | None = None
        self._concurrency = concurrency

    def _session_(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            connector = aiohttp.TCPConnector(resolver=GuardedResolver(self.policy), limit=self._concurrency,
                                             limit_per_host=self._per_host_limit, use_dns_cache=False)
            self._session = aiohttp.ClientSession(connector=connector, timeout=self._timeout, trust_env=False,
                                                  headers={"User-Agent": USER_AGENT}, auto_decompress=False)
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()

    async def fetch(self, url: str, dest: Path) -> Downloaded:
        """Download `url` to `dest` (removed again on any failure)."""
        host = parse_url(url).host
        sem = self._per_host.setdefault(host, asyncio.Semaphore(self._per_host_limit))
        async with self._global, sem:
            for attempt in range(self.retries + 1):
                try:
                    return await self._fetch_once(url, dest)
                except VttError as exc:
                    _unlink(dest)
                    if not exc.retryable or attempt == self.retries:
                        raise
                    delay = exc.retry_after if exc.retry_after is not None else backoff_s(attempt)
                except BaseException:
                    _unlink(dest)
                    raise
                await asyncio.sleep(delay)
        raise AssertionError("unreachable")

    async def _fetch_once(self, url: str, dest: Path) -> Downloaded:
        session = self._session_()
        current = url
        for _hop in range(MAX_REDIRECTS + 1):
            target = parse_url(current)
            check_target(target, self.policy)
            try:
                async with session.get(current, allow_redirects=False) as resp:
                    if resp.status in (301, 302, 303, 307, 308):
                        location = resp.headers.get("Location")
                        if not location:
                            raise SourceGone(f"redirect ({resp.status}) without a Location header")
                        current = urljoin(current, location)
                        continue
                    _check_status(resp)
                    return await self._stream(resp, dest, current)
            except VttError:
                raise
            except (TimeoutError, aiohttp.ClientConnectionError, aiohttp.ClientPayloadError, OSError) as exc:
                blocked = _blocked_cause(exc)
                if blocked is not None:
                    raise blocked from None
                raise DownloadFailed(f"network error fetching the video: {_describe(exc)}") from None
            except aiohttp.ClientError as exc:
                raise DownloadFailed(f"HTTP error fetching the video: {_describe(exc)}") from None
        raise SourceGone(f"more than {MAX_REDIRECTS} redirects")

    async def _stream(self, resp: aiohttp.ClientResponse, dest: Path, final_url: str) -> Downloaded:
        length = resp.content_length
        if length is not None and length > self.max_bytes:
            raise TooLarge(f"the video is {length / 1e6:.1f} MB; the limit is {self.max_bytes / 1e6:.0f} MB")
        dest.parent.mkdir(parents=True, exist_ok=True)
        digest = hashlib.sha256()
        head = b""
        container: str | None = None
        size = 0
        async with aiofiles.open(dest, "wb") as out:
            async for chunk in resp.content.iter_chunked(CHUNK):
                size += len(chunk)
                if size > self.max_bytes:
                    raise TooLarge(f"the video exceeds the {self.max_bytes / 1e6:.0f} MB limit")
                if container is None:
                    head += chunk[: SNIFF_BYTES - len(head)]
                    if len(head) >= SNIFF_BYTES:
                        container = sniff(head)
                digest.update(chunk)
                await out.write(chunk)
        if length is not None and size < length:
            raise DownloadFailed(f"the connection closed after {size} of {length} bytes")
        if container is None:
            container = sniff(head)
        return Downloaded(dest, size, digest.hexdigest(), container, final_url)


def _check_status(resp: aiohttp.ClientResponse) -> None:
    if resp.status < 300:
        return
    if resp.status == 429 or resp.status >= 500:
        retry_after = _retry_after(resp.headers.get("Retry-After"))
        raise DownloadFailed(f"the video server answered HTTP {resp.status}", retry_after=retry_after)
    raise SourceGone(f"the video server answered HTTP {resp.status}")


def _retry_after(value: str | None) -> float | None:
    try:
        return min(60.0, max(0.0, float(value))) if value else None
    except ValueError:
        return None


def _blocked_cause(exc: BaseException) -> BlockedAddress | None:
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, BlockedAddress):
            return seen
        seen = seen.__cause__ or seen.__context__
    for arg in getattr(exc, "args", ()):
        if isinstance(arg, BlockedAddress):
            return arg
    return None


def _describe(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return text[:200]


def _unlink(path: Path) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass

