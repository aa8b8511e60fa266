"""The outbound policy for Backend 2 URLs: hostile spellings, cluster ports, allow-list entries."""

import socket

import pytest

from engine.destinations import (
    DEFAULT_DENIED_PORTS,
    DestinationError,
    OutboundPolicy,
    parse_allow_list,
    parse_ports,
    parse_ws_url,
    redact_text,
    safe_url,
)
from engine.settings import Settings


def policy(allowed: str = "", **settings) -> OutboundPolicy:
    return OutboundPolicy.from_settings(Settings(_env_file=None, backend2_allowed_hosts=allowed, **settings))


def resolved(host: str, port: int) -> list[str]:
    """What Python's resolver makes of the host (as the streamer's loop.getaddrinfo does)."""
    return sorted({info[4][0] for info in socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)})


def judge(rules: OutboundPolicy, url: str) -> str | None:
    """The streamer's decision: the URL, then every resolved address; None when allowed."""
    destination = parse_ws_url(url)
    reason = rules.check_url(destination)
    if reason is not None:
        return reason
    for address in resolved(destination.host, destination.port):
        reason = rules.check_address(destination, address)
        if reason is not None:
            return reason
    return None


LOOPBACK_SPELLINGS = ["127.0.0.1", "2130706433", "0x7f000001", "0177.0.0.1", "127.1", "localhost", "[::1]"]


@pytest.mark.parametrize("host", LOOPBACK_SPELLINGS)
def test_every_spelling_of_loopback_is_judged_by_its_resolved_address(host):
    addresses = resolved(host.strip("[]"), 9000)
    assert addresses and all(a in ("127.0.0.1", "::1") for a in addresses)
    default = policy()
    assert judge(default, f"ws://{host}:9000/ws") is None  # default: loopback, any non-cluster port
    for port in (8265, 6379, 10001, 8000, 8080, 52365, 12345):
        assert judge(default, f"ws://{host}:{port}/ws") is not None  # the cluster's own ports, any spelling
    only_ip = policy("127.0.0.1:9000")  # an IP entry matches the resolved address
    assert (judge(only_ip, f"ws://{host}:9000/ws") is None) == (host != "[::1]")
    assert judge(only_ip, f"ws://{host}:9001/ws") is not None  # the allowed host on another port


@pytest.mark.parametrize(
    "url",
    [
        "ws://0.0.0.0:9000/",
        "ws://0:9000/",
        "ws://[::]:9000/",
        "ws://169.254.169.254/latest/meta-data",
        "ws://169.254.169.254:9000/",
        "ws://[fd00:ec2::254]:9000/",
        "ws://169.254.1.1:9000/",
        "ws://[fe80::1]:9000/",
        "ws://224.0.0.1:9000/",
        "ws://[ff02::1]:9000/",
        "ws://255.255.255.255:9000/",
        "ws://[::ffff:169.254.169.254]:9000/",
    ],
)
def test_never_reachable_whatever_the_allow_list(url):
    for rules in (
        policy(),
        policy("*"),
        policy("169.254.169.254:80,169.254.169.254:9000,0.0.0.0:9000,[fd00:ec2::254]:9000,*:9000"),
    ):
        assert judge(rules, url) is not None, url


@pytest.mark.parametrize(
    "url", ["ws://10.0.0.1:9000/", "ws://192.168.1.1:9000/", "ws://8.8.8.8:9000/", "ws://[2001:4860::1]:9000/"]
)
def test_the_default_allows_loopback_only(url):
    assert judge(policy(), url) is not None


def test_allow_list_entries_name_host_and_port():
    rules = policy("backend2.internal:9443,127.0.0.1:9000,[::1]:9001,plain.example")
    allowed = parse_ws_url("wss://backend2.internal:9443/ws")
    assert rules.check_url(allowed) is None and rules.check_address(allowed, "10.1.2.3") is None
    assert rules.check_url(parse_ws_url("wss://backend2.internal:443/ws")) is not None  # other port
    assert rules.check_url(parse_ws_url("wss://other.internal:9443/ws")) is not None
    assert rules.check_address(allowed, "169.254.169.254") is not None  # a name never reaches metadata
    assert judge(rules, "ws://127.0.0.1:9000/") is None and judge(rules, "ws://[::1]:9001/") is None
    assert judge(rules, "ws://localhost:9002/") is not None  # loopback is no longer implied
    bare = parse_ws_url("ws://plain.example/x")  # a bare host: the scheme's default port only
    assert rules.check_address(bare, "203.0.113.9") is None
    assert rules.check_url(parse_ws_url("ws://plain.example:8081/x")) is not None
    assert rules.check_url(parse_ws_url("wss://plain.example/x")) is None  # wss: its own default, 443
    assert rules.check_url(parse_ws_url("ws://plain.example:443/x")) is not None  # not ws's default


def test_star_allows_public_addresses_only_and_never_cluster_ports():
    rules = policy("*")
    public = parse_ws_url("wss://b2.example.com/ws")
    assert rules.check_address(public, "93.184.216.34") is None
    for address in ("10.0.0.1", "192.168.0.5", "172.16.0.1", "127.0.0.1", "::1", "100.64.0.1"):
        assert rules.check_address(public, address) is not None
    assert rules.check_url(parse_ws_url("wss://b2.example.com:8265/ws")) is not None
    assert policy("*:443").check_url(parse_ws_url("ws://b2.example.com:80/")) is not None


@pytest.mark.parametrize("port", [8000, 8265, 8404, 8500, 9101, 30000, 30517, 31000])
def test_serves_own_listeners_are_denied_by_default_haproxy_mode_and_direct_ingress_included(port):
    assert judge(policy(backend2_denied_ports=DEFAULT_DENIED_PORTS), f"ws://127.0.0.1:{port}/") is not None


def test_denied_ports_are_configurable_and_extended_by_known_ports():
    assert 8265 in parse_ports("8265,10001-10003") and 10002 in parse_ports("10001-10003")
    rules = policy(backend2_denied_ports="7000")
    assert judge(rules, "ws://127.0.0.1:8265/") is None and judge(rules, "ws://127.0.0.1:7000/") is not None
    known = OutboundPolicy.from_settings(Settings(_env_file=None), extra_denied_ports={45678})
    assert known.check_url(parse_ws_url("ws://127.0.0.1:45678/")) is not None
    with pytest.raises(ValueError):
        parse_ports("0-5")


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:9000/",
        "ws://:9000/",
        "ws://user:pw@127.0.0.1:9000/",
        "ws://127.0.0.1:0/",
        "ws://127.0.0.1:99999/",
        "ws://127.0.0.1:9000/a b",
        "ws://127.0.0.1:9000/\r\nHost: evil",
        "ws://127.0.0.1:/",
    ],
)
def test_unacceptable_urls_are_refused_by_syntax(url):
    with pytest.raises(DestinationError):
        parse_ws_url(url)


def test_allow_list_syntax():
    entries = parse_allow_list(" B2.Internal:443 , [::1]:9000, ::1, 127.0.0.1 ,*")
    assert [(e.host, e.port) for e in entries] == [
        ("b2.internal", 443),
        ("::1", 9000),
        ("::1", None),
        ("127.0.0.1", None),
        ("*", None),
    ]
    for bad in ("host:0", "host:x", "[::1", "a/b:80", "[nothost]:80"):
        with pytest.raises(ValueError):
            parse_allow_list(bad)


def test_urls_in_log_text_lose_query_credentials_and_control_characters():
    assert safe_url("wss://u:p@b2.example:8443/ws/f?token=secret#x") == "wss://b2.example:8443/ws/f"
    text = "InvalidStatus: 302 Location: http://10.0.0.7:8265/api/jobs?token=secret\r\nX-Injected: 1"
    cleaned = redact_text(text)
    assert "secret" not in cleaned and "\r" not in cleaned and "\n" not in cleaned
    assert "http://10.0.0.7:8265/api/jobs" in cleaned
