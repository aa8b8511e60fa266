"""Where the streamer may connect: the outbound policy for `backend2_ws_url`. Pure, no I/O.

The streamer resolves a flow's Backend 2 URL once (`loop.getaddrinfo`), asks this module about
the URL and about every resolved address, and connects only to an address judged here, so a
hostile URL (any spelling of loopback, the cluster's own ports, cloud metadata…) or a DNS answer
that changes between check and connect cannot reach what the operator did not allow.

Contract:
- `parse_ws_url(url)` → `Destination` (scheme, lower-case host without brackets, port — the
  scheme's default when absent —, path with query for the handshake) or `DestinationError`:
  only `ws://` / `wss://`, a host, a port 1-65535, no credentials, no whitespace or control
  characters.
- `OutboundPolicy.from_settings(settings, extra_denied_ports)`:
  - `BACKEND2_ALLOWED_HOSTS` empty (the default): loopback addresses only (127.0.0.0/8, ::1),
    on any port that is not denied — a local Backend 2 works out of the box, nothing else does.
  - Otherwise a comma-separated list of `host:port` (`[v6]:port` for IPv6 literals). A bare
    `host` allows that host on its scheme's default port only (80 for ws, 443 for wss); it
    never means "every port". A name entry matches the URL's host name; an IP entry matches a
    resolved address (so `127.1` or `2130706433` in a URL match a `127.0.0.1:port` entry and
    nothing else). `*` allows any global (public) address on any port that is not denied,
    `*:443` on that port only; private, loopback and shared ranges must be named. Loopback is
    no longer implied once the list is set.
  - Always refused, allow-list or not: the denied ports (`BACKEND2_DENIED_PORTS`, the Ray and
    Serve ports by default, plus the ports the streamer's process knows) and addresses that
    are unspecified (0.0.0.0/8, ::), link-local (169.254.0.0/16, fe80::/10, including the
    cloud metadata addresses 169.254.169.254 and fd00:ec2::254), multicast, broadcast or
    reserved. IPv4-mapped IPv6 addresses are judged as their IPv4 address.
- `check_url(destination)` judges what the URL alone decides (port, allow-list by name);
  `check_address(destination, address)` one resolved address. Both return `None` when
  allowed, else a short reason for the operator's log (never for the caller).
- `safe_url(url)` reduces a URL to `scheme://host:port/path` (no credentials, query or
  fragment); `redact_text(text)` does that to every URL inside a text (error messages carry
  redirect `Location`s) and escapes control characters, for log lines.
"""

from __future__ import annotations

import functools
import ipaddress
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from engine.logging_setup import escape_controls

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

DEFAULT_PORTS = {"ws": 80, "wss": 443}
# Ray GCS 6379, Serve HTTP 8000, object manager 8076, metrics export 8080, dashboard 8265,
# Ray client 10001 and the worker ports 10002-19999, dashboard agent 52365.
DEFAULT_DENIED_PORTS = "6379,8000,8076,8080,8265,8404,8500,9101,10001-19999,30000-31000,52365"
METADATA_ADDRESSES = frozenset(ipaddress.ip_address(a) for a in ("169.254.169.254", "fd00:ec2::254"))
_ALWAYS_DENIED = (
    (ipaddress.ip_network("0.0.0.0/8"), "an unspecified address"),
    (ipaddress.ip_network("::/128"), "an unspecified address"),
    (ipaddress.ip_network("169.254.0.0/16"), "a link-local address"),
    (ipaddress.ip_network("fe80::/10"), "a link-local address"),
    (ipaddress.ip_network("255.255.255.255/32"), "the broadcast address"),
    (ipaddress.ip_network("224.0.0.0/4"), "a multicast address"),
    (ipaddress.ip_network("ff00::/8"), "a multicast address"),
    (ipaddress.ip_network("240.0.0.0/4"), "a reserved address"),
)
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
_URL_IN_TEXT = re.compile(r"\b[a-zA-Z][a-zA-Z0-9+.-]*://[^\s'\"<>]*")


class DestinationError(ValueError):
    """The URL is not an acceptable Backend 2 WebSocket URL."""


@dataclass(frozen=True)
class Destination:
    scheme: str  # ws or wss
    host: str  # lower case, IPv6 without brackets
    port: int
    resource: str  # path and query, as sent in the handshake

    @property
    def secure(self) -> bool:
        return self.scheme == "wss"

    @property
    def literal(self) -> IPAddress | None:
        """The host as an IP address when it is written as one (canonical forms only)."""
        return _ip(self.host)

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.scheme}://{host}:{self.port}{self.resource.split('?', 1)[0]}"


def parse_ws_url(url: str) -> Destination:
    if not isinstance(url, str) or not url or any(c.isspace() or _CONTROL.match(c) for c in url):
        raise DestinationError("is empty or contains whitespace or control characters")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise DestinationError(f"is not a valid URL ({exc})") from None
    scheme = parts.scheme.lower()
    if scheme not in DEFAULT_PORTS:
        raise DestinationError("is not a ws:// or wss:// URL")
    if parts.username is not None or parts.password is not None:
        raise DestinationError("carries credentials")
    host = (parts.hostname or "").lower()
    if not host:
        raise DestinationError("has no host")
    if port is None and parts.netloc.endswith(":"):
        raise DestinationError("has an empty port")
    if port == 0:
        raise DestinationError("has port 0")
    resource = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    return Destination(scheme, host, port or DEFAULT_PORTS[scheme], resource)


@functools.lru_cache(maxsize=16)
def parse_ports(text: str) -> frozenset[int]:
    """`"6379,8000,10001-19999"` → the set of ports; raises `ValueError` on a bad item.
    Remembered per text: a settings value is parsed once, not on every request."""
    ports: set[int] = set()
    for item in (i.strip() for i in text.split(",")):
        if not item:
            continue
        low, _, high = item.partition("-")
        first, last = int(low), int(high or low)
        if not 1 <= first <= last <= 65535:
            raise ValueError(f"bad port or range {item!r}")
        ports.update(range(first, last + 1))
    return frozenset(ports)


@dataclass(frozen=True)
class AllowEntry:
    host: str  # lower-case name, IP literal, or "*"
    port: int | None  # None: the scheme's default port

    def matches_port(self, destination: Destination) -> bool:
        wanted = DEFAULT_PORTS[destination.scheme] if self.port is None else self.port
        return destination.port == wanted


def parse_allow_list(text: str) -> tuple[AllowEntry, ...]:
    """`BACKEND2_ALLOWED_HOSTS` → entries; raises `ValueError` on a bad item."""
    entries = []
    for item in (i.strip().lower() for i in text.split(",")):
        if not item:
            continue
        if item.startswith("["):
            host, sep, rest = item[1:].partition("]")
            if not sep or (rest and not rest.startswith(":")) or _ip(host) is None:
                raise ValueError(f"bad allow-list entry {item!r}")
            port_text = rest[1:] if rest else None
        elif item.count(":") > 1:  # a bare IPv6 literal
            if _ip(item) is None:
                raise ValueError(f"bad allow-list entry {item!r}")
            host, port_text = item, None
        else:
            host, sep, port_text_or_empty = item.partition(":")
            port_text = port_text_or_empty if sep else None
        port = None
        if port_text is not None:
            if not port_text.isdigit() or not 1 <= int(port_text) <= 65535:
                raise ValueError(f"bad port in allow-list entry {item!r}")
            port = int(port_text)
        if not host or any(c.isspace() or c in "/?#@" for c in host):
            raise ValueError(f"bad allow-list entry {item!r}")
        entries.append(AllowEntry(str(_ip(host) or host), port))
    return tuple(entries)


@dataclass(frozen=True)
class OutboundPolicy:
    allowed: tuple[AllowEntry, ...] = ()
    denied_ports: frozenset[int] = frozenset()

    @classmethod
    def from_settings(cls, settings: Any, extra_denied_ports: Iterable[int] = ()) -> OutboundPolicy:
        return _policy(
            settings.backend2_allowed_hosts,
            getattr(settings, "backend2_denied_ports", DEFAULT_DENIED_PORTS),
            frozenset(extra_denied_ports),
        )

    def check_url(self, destination: Destination) -> str | None:
        if destination.port in self.denied_ports:
            return f"port {destination.port} is one of the cluster's own (denied) ports"
        if self.allowed and not any(self._entry_may_match(e, destination) for e in self.allowed):
            return f"{destination.host}:{destination.port} is not in BACKEND2_ALLOWED_HOSTS"
        return None

    def check_address(self, destination: Destination, address: str | IPAddress) -> str | None:
        reason = self.check_url(destination)
        if reason is not None:
            return reason
        ip = _ip(str(address))
        if ip is None:
            return f"{address!r} is not an IP address"
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
        if ip in METADATA_ADDRESSES:
            return "a cloud metadata address"
        for network, what in _ALWAYS_DENIED:
            if ip.version == network.version and ip in network:
                return what
        if not self.allowed:
            return None if ip.is_loopback else f"{ip} is not loopback and BACKEND2_ALLOWED_HOSTS is empty"
        for entry in self.allowed:
            if not entry.matches_port(destination):
                continue
            if entry.host == "*" and ip.is_global:
                return None
            if entry.host == str(ip) or (_ip(entry.host) is None and entry.host == destination.host):
                return None
        return f"{ip} on port {destination.port} is not allowed by BACKEND2_ALLOWED_HOSTS"

    @staticmethod
    def _entry_may_match(entry: AllowEntry, destination: Destination) -> bool:
        """Name entries decide now; IP entries and `*` need the resolved address."""
        if not entry.matches_port(destination):
            return False
        return entry.host == "*" or _ip(entry.host) is not None or entry.host == destination.host


@functools.lru_cache(maxsize=16)
def _policy(allowed_hosts: str, denied_ports: str, extra_denied: frozenset[int]) -> OutboundPolicy:
    """The policy of these settings values, built once (the denied set holds ~10,000 ports)."""
    return OutboundPolicy(parse_allow_list(allowed_hosts), parse_ports(denied_ports) | extra_denied)


def _ip(text: str) -> IPAddress | None:
    try:
        return ipaddress.ip_address(text.split("%", 1)[0])
    except ValueError:
        return None


def safe_url(url: str) -> str:
    """`scheme://host:port/path`: no credentials, query or fragment; control characters escaped."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        return "<invalid URL>"
    host = f"[{host}]" if ":" in host else host
    return escape_controls(f"{parts.scheme}://{host}{port}{parts.path}")


def redact_text(text: str, limit: int = 300) -> str:
    """A text for a log line: every URL in it reduced by `safe_url`, control characters escaped."""
    return escape_controls(_URL_IN_TEXT.sub(lambda m: safe_url(m.group()), text))[:limit]
