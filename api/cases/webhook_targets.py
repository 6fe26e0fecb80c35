"""Where a webhook may be sent: to public addresses only, unless an admin allows the host.

A webhook URL is chosen by whoever registers it, and the service then POSTs from inside the
district's network; without a check, a webhook could reach this server's own ports, the cloud
metadata service (169.254.169.254) or any machine on the private network behind it. So a target is
refused when its host is, or resolves to, a loopback, link-local, unspecified, multicast, private
(10/8, 172.16/12, 192.168/16, fc00::/7), shared (100.64/10) or otherwise non-public address,
unless the host is in `Settings.webhook_allow_hosts` (GRIDPATROL_WEBHOOK_ALLOW_HOSTS): a host name
allows that name whatever it resolves to; an IP address or network (CIDR) allows those addresses
whatever name led to them.

The host is checked when the webhook is registered and again, after resolving it, at every
delivery, which then connects to the very address that was checked (`TargetPolicy.pin`): a name
that resolved to a public address at registration and resolves to 127.0.0.1 now (DNS rebinding)
is refused, not sent. Host names are resolved with getaddrinfo, which also reads the numeric forms
a URL may carry (2130706433, 0x7f000001, 127.1 are all 127.0.0.1).
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from urllib.parse import urlsplit

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
Resolver = Callable[[str], list[IPAddress]]

ALLOW_SETTING = "GRIDPATROL_WEBHOOK_ALLOW_HOSTS"
PRIVATE_NETWORKS: tuple[IPNetwork, ...] = tuple(
    ipaddress.ip_network(n) for n in ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "fc00::/7")
)
SHARED_SPACE = ipaddress.IPv4Network("100.64.0.0/10")  # carrier-grade NAT; not is_private
NAT64 = ipaddress.IPv6Network("64:ff9b::/96")  # reaches the IPv4 address in its last 32 bits


class TargetUnresolved(Exception):
    """The host does not resolve now (a delivery tries again later)."""


class TargetRefused(Exception):
    """The host is, or resolves to, an address webhooks may not reach; the message says why."""


def system_resolver(host: str) -> list[IPAddress]:
    """The addresses getaddrinfo gives for a host name or IP literal (any numeric form it reads)."""
    try:
        infos = socket.getaddrinfo(host, None, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError) as exc:  # UnicodeError: a label IDNA cannot encode
        raise TargetUnresolved(f"cannot resolve {host}: {exc}") from None
    addresses: list[IPAddress] = []
    for info in infos:
        address = ipaddress.ip_address(str(info[4][0]).split("%")[0])
        if address not in addresses:
            addresses.append(address)
    if not addresses:
        raise TargetUnresolved(f"cannot resolve {host}: no address")
    return addresses


def address_refusal(address: IPAddress) -> str | None:
    """What kind of non-public address this is ("a loopback address", ...), or None when public."""
    if isinstance(address, ipaddress.IPv6Address):
        embedded = address.ipv4_mapped
        if embedded is None and address in NAT64:
            embedded = ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
        if embedded is not None:
            return address_refusal(embedded)
    if address.is_unspecified:
        return "an unspecified address"
    if address.is_loopback:
        return "a loopback address (this server)"
    if address.is_link_local:
        return "a link-local address (where cloud metadata services answer)"
    if address.is_multicast:
        return "a multicast address"
    if any(address.version == net.version and address in net for net in PRIVATE_NETWORKS):
        return "a private-network address"
    if address in SHARED_SPACE:
        return "a shared (carrier-grade NAT) address"
    if address.is_reserved:
        return "a reserved address"
    if address.is_private or not address.is_global:  # documentation, benchmarking, broadcast, ...
        return "a special-purpose address, not a public one"
    return None


def url_host(url: str) -> str:
    """The URL's host as compared with the allow-list: lower case, without brackets, an IPv6 zone
    or a trailing dot."""
    return (urlsplit(url).hostname or "").split("%")[0].rstrip(".")


@dataclass(frozen=True, slots=True)
class Pinned:
    """The address a delivery connects to, checked, and the host it stands for."""

    host: str
    address: IPAddress


class TargetPolicy:
    """Which webhook targets are refused: every non-public address except those `allow` lists.

    `allow` holds host names, IP addresses and networks (CIDR), as Settings.webhook_allow_hosts
    validated them; `resolver` turns a host into addresses (tests give a fake one)."""

    def __init__(self, allow: Iterable[str] = (), *, resolver: Resolver = system_resolver) -> None:
        names: set[str] = set()
        networks: list[IPNetwork] = []
        for entry in allow:
            entry = entry.strip().strip("[]").lower().rstrip(".")
            if not entry:
                continue
            try:
                networks.append(ipaddress.ip_network(entry, strict=False))
            except ValueError:  # not an address: a host name
                names.add(entry)
        self.names = frozenset(names)
        self.networks = tuple(networks)
        self.resolver = resolver

    def _allowed(self, address: IPAddress) -> bool:
        return any(address.version == net.version and address in net for net in self.networks)

    def refusal(self, host: str, addresses: Iterable[IPAddress]) -> str | None:
        """Why a host resolving to these addresses may not be sent to, or None when it may (every
        address must be acceptable: the connection may use any of them)."""
        if host in self.names:
            return None
        try:
            literal: IPAddress | None = ipaddress.ip_address(host)
        except ValueError:  # a name, or a numeric form only getaddrinfo reads (2130706433)
            literal = None
        for address in addresses:
            if self._allowed(address):
                continue
            kind = address_refusal(address)
            if kind is not None:
                where = f"{host} is {kind}" if address == literal else f"{host} resolves to {address}, {kind}"
                return f"{where}; webhooks go to public addresses unless {ALLOW_SETTING} allows the host"
        return None

    def check_url(self, url: str) -> str | None:
        """Why a webhook URL is refused now, or None. A host that does not resolve now passes: it is
        checked again at every delivery."""
        host = url_host(url)
        if host in self.names:
            return None
        try:
            addresses = self.resolver(host)
        except TargetUnresolved:
            return None
        return self.refusal(host, addresses)

    def pin(self, url: str) -> Pinned:
        """The checked address to deliver to: TargetRefused when the host may not be sent to now,
        TargetUnresolved when it does not resolve."""
        host = url_host(url)
        addresses = self.resolver(host)
        reason = self.refusal(host, addresses)
        if reason is not None:
            raise TargetRefused(reason)
        return Pinned(host, addresses[0])
