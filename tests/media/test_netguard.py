import ipaddress

import pytest

from app.errors import BlockedAddress, InvalidUrl
from app.media.netguard import Policy, check_addresses, check_target, is_public, parse_url


@pytest.mark.parametrize("addr,public", [
    ("8.8.8.8", True), ("1.1.1.1", True), ("2001:4860:4860::8888", True),
    ("127.0.0.1", False), ("127.8.9.10", False), ("10.1.2.3", False), ("172.16.0.1", False),
    ("192.168.1.1", False), ("169.254.169.254", False), ("100.64.0.1", False), ("0.0.0.0", False),
    ("224.0.0.1", False), ("255.255.255.255", False), ("240.0.0.1", False),
    ("::1", False), ("::", False), ("fe80::1", False), ("fd12:3456::1", False), ("ff02::1", False),
    ("::ffff:127.0.0.1", False), ("::ffff:169.254.169.254", False), ("::ffff:8.8.8.8", True),
    ("::127.0.0.1", False), ("2002:7f00:1::1", False), ("64:ff9b::a9fe:a9fe", False),
])
def test_is_public(addr: str, public: bool) -> None:
    assert is_public(ipaddress.ip_address(addr)) is public


@pytest.mark.parametrize("url,code", [
    ("ftp://example.com/a.mp4", "invalid_url"), ("file:///etc/passwd", "invalid_url"),
    ("gopher://x", "invalid_url"), ("/relative.mp4", "invalid_url"), ("http://", "invalid_url"),
    ("http://user:pw@example.com/a.mp4", "invalid_url"), ("http://exa mple.com/", "invalid_url"),
    ("http://example.com:99999/", "invalid_url"),
])
def test_parse_url_refuses(url: str, code: str) -> None:
    with pytest.raises(InvalidUrl) as info:
        parse_url(url)
    assert info.value.code == code


@pytest.mark.parametrize("url", [
    "http://127.0.0.1/a.mp4", "http://169.254.169.254/latest/meta-data/", "http://[::1]:8080/",
    "http://[::ffff:7f00:1]/", "http://2130706433/", "http://0x7f.1/", "http://127.1/", "http://0.0.0.0/",
    "https://[fe80::1]/", "http://10.0.0.5/v.mp4",
])
def test_literal_private_hosts_are_blocked(url: str) -> None:
    with pytest.raises(BlockedAddress):
        check_target(parse_url(url), Policy())


def test_public_literal_passes_and_names_are_left_for_resolution() -> None:
    check_target(parse_url("http://8.8.8.8/v.mp4"), Policy())
    t = parse_url("HTTPS://Example.COM./v.mp4")
    assert (t.scheme, t.host, t.port, t.literal) == ("https", "example.com", 443, None)
    check_target(t, Policy())


def test_allow_list_by_name_and_cidr() -> None:
    loop = [ipaddress.ip_address("127.0.0.1")]
    with pytest.raises(BlockedAddress):
        check_addresses("media.internal", loop, Policy())
    check_addresses("media.internal", loop, Policy(allowed_hostnames=frozenset({"media.internal"})))
    check_addresses("x", loop, Policy(allowed_networks=(ipaddress.ip_network("127.0.0.0/8"),)))
    with pytest.raises(BlockedAddress):  # one bad address among good ones is enough to refuse
        check_addresses("x", [ipaddress.ip_address("8.8.8.8"), ipaddress.ip_address("10.0.0.1")], Policy())
    with pytest.raises(BlockedAddress):
        check_addresses("x", [], Policy())
