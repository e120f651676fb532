"""The receivers' firewall (SSRF guard): addresses a receiver's requests may not reach.

It checks the address each connection is actually opened to, after DNS resolution, through aiohttp's
``socket_factory``: a name that resolves to a blocked address, an IP literal and every redirect hop
are all caught at the same place, and a DNS answer that changes between a check and the connection
cannot slip through. Off by default (as Mimir's ``alertmanager_receivers_firewall_block_*``).
"""

from __future__ import annotations

import errno
import ipaddress
import socket
from typing import Any

import aiohttp

from pipeline.domain.config import FirewallSettings

Address = ipaddress.IPv4Address | ipaddress.IPv6Address

BLOCKED = "blocked by the receivers firewall"


class BlockedAddress(OSError):
    """A connection the firewall refused; never retried."""


class Firewall:
    def __init__(self, settings: FirewallSettings):
        self.block_private = settings.block_private_addresses
        self.blocked = [ipaddress.ip_network(n, strict=False) for n in settings.block_cidr_networks]
        self.allowed = [ipaddress.ip_network(n, strict=False) for n in settings.allow_cidr_networks]

    @property
    def active(self) -> bool:
        return self.block_private or bool(self.blocked)

    def refuses(self, address: Address) -> bool:
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            address = address.ipv4_mapped
        if any(address in network for network in self.allowed):
            return False
        if any(address in network for network in self.blocked):
            return True
        return self.block_private and (address.is_private or address.is_loopback or address.is_link_local
                                       or address.is_unspecified or address.is_multicast or address.is_reserved)

    def open_socket(self, addr_info: Any) -> socket.socket:
        """aiohttp's socket factory: refuses a blocked destination before connecting to it."""
        family, kind, proto, _, sockaddr = addr_info
        address = ipaddress.ip_address(sockaddr[0].split("%", 1)[0])
        if self.refuses(address):
            raise BlockedAddress(errno.EACCES, f"{BLOCKED}: {address}")
        return socket.socket(family, kind, proto)


def http_session(settings: FirewallSettings) -> aiohttp.ClientSession:
    """The senders' HTTP session, with the firewall on every connection when it is active.

    Its pool keeps connections alive across notifications, without a limit, total or per host: every tenant's
    integrations share the session, and a limit would let one tenant's receivers that never answer hold every
    connection (of the pool, or to a chat API all tenants use) while the others' notifications wait for one.
    What bounds the connections is the lanes: each holds one request at a time (``delivery.concurrency`` per
    integration), as Alertmanager's per-integration requests are bounded by its groups, not by a pool.

    It keeps no cookies: aiohttp's default jar would send a cookie one receiver set (a session of tenant A at
    a shared relay or chat API) with every later request to that host, whoever's notification it carries.
    Alertmanager's HTTP client keeps none either."""
    firewall = Firewall(settings)
    connector = aiohttp.TCPConnector(limit=0, limit_per_host=0,
                                     socket_factory=firewall.open_socket if firewall.active else None)
    return aiohttp.ClientSession(connector=connector, cookie_jar=aiohttp.DummyCookieJar())
