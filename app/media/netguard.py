"""Which URLs and addresses a download may reach (SSRF policy). Pure functions.

A user URL may only be http(s) to a public unicast address. Loopback, private,
link-local (cloud metadata at 169.254.169.254), unique-local, multicast, reserved,
unspecified, and IPv4-mapped/compatible/6to4/Teredo IPv6 forms that embed such an
address are refused, unless the host name or the address is listed in
DOWNLOAD_ALLOWED_HOSTS (a name, or a CIDR).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass
from urllib.parse import urlsplit

from app.errors import BlockedAddress, InvalidUrl

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True)
class Policy:
    allowed_hostnames: frozenset[str] = frozenset()
    allowed_networks: tuple[Network, ...] = ()

    def host_allowed(self, host: str) -> bool:
        return host.lower().rstrip(".") in self.allowed_hostnames

    def address_allowed(self, addr: IPAddress) -> bool:
        if any(addr in net for net in self.allowed_networks if net.version == addr.version):
            return True
        return str(addr) in self.allowed_hostnames


@dataclass(frozen=True)
class Target:
    scheme: str
    host: str  # lower-case, IPv6 without brackets
    port: int
    literal: IPAddress | None


def parse_url(url: str) -> Target:
    """Split a user URL, refusing anything but absolute http(s) with a host."""
    if len(url) > 4096:
        raise InvalidUrl("url is longer than 4096 characters")
    if any(ord(c) < 0x21 for c in url):
        raise InvalidUrl("url contains spaces or control characters")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise InvalidUrl(f"url is malformed: {exc}") from None
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https"):
        raise InvalidUrl(f"only http and https URLs are accepted, not {scheme or 'a relative URL'!r}")
    host = (parts.hostname or "").lower().rstrip(".")
    if not host:
        raise InvalidUrl("url has no host")
    if parts.username or parts.password:
        raise InvalidUrl("url must not carry credentials")
    literal = _literal(host)
    return Target(scheme, host, port or (443 if scheme == "https" else 80), literal)


def _literal(host: str) -> IPAddress | None:
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        pass
    # inet_aton forms browsers and libc accept: 2130706433, 0x7f.1, 127.1, 0177.0.0.1
    if all(part and (part.isdigit() or part.startswith("0x")) for part in host.split(".")):
        import socket

        try:
            return ipaddress.IPv4Address(socket.inet_aton(host))
        except OSError:
            raise InvalidUrl(f"host {host!r} is not a valid address") from None
    return None


def _embedded_v4(addr: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    if addr.ipv4_mapped is not None:
        return addr.ipv4_mapped
    if addr.sixtofour is not None:
        return addr.sixtofour
    if addr.teredo is not None:
        return addr.teredo[1]
    if addr in ipaddress.IPv6Network("::/96"):  # deprecated IPv4-compatible ::a.b.c.d
        return ipaddress.IPv4Address(int(addr) & 0xFFFFFFFF)
    if addr in ipaddress.IPv6Network("64:ff9b::/96"):  # NAT64 well-known prefix
        return ipaddress.IPv4Address(int(addr) & 0xFFFFFFFF)
    return None


def is_public(addr: IPAddress) -> bool:
    """True only for global unicast addresses (and IPv6 forms that embed one)."""
    if isinstance(addr, ipaddress.IPv6Address):
        inner = _embedded_v4(addr)
        if inner is not None:
            return is_public(inner)
        if addr.scope_id:
            return False
    if (addr.is_loopback or addr.is_private or addr.is_link_local or addr.is_multicast
            or addr.is_unspecified or addr.is_reserved):
        return False
    if isinstance(addr, ipaddress.IPv6Address) and addr.is_site_local:
        return False
    if isinstance(addr, ipaddress.IPv4Address) and addr in ipaddress.IPv4Network("100.64.0.0/10"):
        return False  # carrier-grade NAT: internal in practice
    return addr.is_global


def check_addresses(host: str, addrs: Iterable[IPAddress], policy: Policy) -> None:
    """Refuse the host unless every address it resolved to may be reached."""
    addrs = list(addrs)
    if not addrs:
        raise BlockedAddress(f"host {host!r} did not resolve to any address")
    if policy.host_allowed(host):
        return
    for addr in addrs:
        if not (is_public(addr) or policy.address_allowed(addr)):
            raise BlockedAddress(f"host {host!r} resolves to a non-public address ({addr}); refused")


def check_target(target: Target, policy: Policy) -> None:
    """Early check for IP-literal hosts (names are checked after resolution)."""
    if target.literal is not None:
        check_addresses(target.host, [target.literal], policy)
