"""``rfc2136``: dynamic DNS updates (RFC 2136) signed with TSIG (RFC 8945), by dnspython.

The record is added to and removed from the zone on ``--server``; before the challenge is
answered, the same server is asked for the record (directly, not through a caching resolver)
until it answers it, so the CA never looks before the record exists. dnspython is imported only
when a provider is used.
"""

from __future__ import annotations

import time
from typing import Any

import attrs

from ...errors import OperationError, ValidationError
from ...options import option
from ...secret import Secret
from . import DnsProviderType

ALGORITHMS = ("hmac-sha256", "hmac-sha384", "hmac-sha512", "hmac-sha224", "hmac-sha1", "hmac-md5")
TTL = 60


@attrs.frozen
class Rfc2136Options:
    server: str = option(help="The primary (authoritative) DNS server's address.", required=True,
                         min_len=1, max_len=255, metavar="HOST")
    port: int = option(help="The DNS server's port.", default=53, min=1, max=65535, metavar="PORT")
    zone: str = option(help="The zone to update (e.g. example.org).", required=True, min_len=1, max_len=253,
                       metavar="ZONE")
    tsig_key_name: str | None = option(help="The TSIG key's name.", min_len=1, max_len=253, metavar="NAME")
    tsig_algorithm: str = option(help="The TSIG algorithm.", default="hmac-sha256", choices=ALGORITHMS,
                                 metavar="ALG")
    tsig_secret: Secret | None = option(help="The TSIG key's secret (base64).", secret=True, metavar="SECRET")
    timeout: int = option(help="Seconds to wait for the record to be visible.", default=60, min=1, max=3600,
                          metavar="SECONDS")


class Rfc2136Provider:
    def __init__(self, name: str, options: Rfc2136Options) -> None:
        import dns.name

        self.name = name
        self.options = options
        self._address: str | None = None
        _check_server(options.server)
        if (options.tsig_key_name is None) != (options.tsig_secret is None):
            raise ValidationError("--tsig_key_name and --tsig_secret go together",
                                  option="--tsig_secret" if options.tsig_secret is None else "--tsig_key_name")
        _check_dns_name(options.zone, "--zone")
        if options.tsig_key_name is not None:
            _check_dns_name(options.tsig_key_name, "--tsig_key_name")
        try:
            self.zone = dns.name.from_text(options.zone)
        except Exception:  # noqa: BLE001 - dnspython raises several kinds for a bad name
            raise ValidationError(f"{options.zone!r} is not a DNS name", option="--zone") from None
        self.keyring: Any = None
        if options.tsig_key_name and options.tsig_secret:
            import dns.tsigkeyring

            try:
                self.keyring = dns.tsigkeyring.from_text({options.tsig_key_name: options.tsig_secret.reveal()})
            except Exception:  # noqa: BLE001 - a bad base64 secret
                raise ValidationError("is not a base64 TSIG secret", option="--tsig_secret") from None

    @property
    def address(self) -> str:
        """The server's IP address (dnspython takes no host name): a ``--server`` host name is
        resolved once, at the first use."""
        if self._address is None:
            import ipaddress
            import socket

            try:
                self._address = str(ipaddress.ip_address(self.options.server.strip("[]")))
            except ValueError:
                try:
                    infos = socket.getaddrinfo(self.options.server, self.options.port, proto=socket.IPPROTO_TCP)
                except OSError as exc:
                    raise OperationError(f"dns {self.name}: cannot resolve --server {self.options.server}: "
                                         f"{exc.strerror or exc}") from None
                self._address = str(infos[0][4][0])
        return self._address

    # -- updates -----------------------------------------------------------------------------
    def _relative(self, fqdn: str) -> Any:
        import dns.name

        name = dns.name.from_text(fqdn)
        if not name.is_subdomain(self.zone):
            raise OperationError(f"dns {self.name}: {fqdn} is not in zone {self.zone.to_text()}")
        return name.relativize(self.zone)

    def _update(self, fqdn: str, value: str, *, add: bool) -> None:
        import dns.exception
        import dns.query
        import dns.rcode
        import dns.tsig
        import dns.update

        upd = dns.update.UpdateMessage(self.zone, keyring=self.keyring,
                                       keyalgorithm=self.options.tsig_algorithm + ".")
        rel = self._relative(fqdn)
        if add:
            upd.add(rel, TTL, "TXT", _txt(value))
        else:
            upd.delete(rel, "TXT", _txt(value))
        what = "adding" if add else "removing"
        try:
            resp = dns.query.tcp(upd, self.address, port=self.options.port, timeout=15)
        except (dns.tsig.PeerBadKey, dns.tsig.PeerBadSignature, dns.tsig.PeerBadTime) as exc:
            raise OperationError(f"dns {self.name}: {what} TXT {fqdn}: {self.options.server}:{self.options.port} "
                                 f"refused the TSIG key ({type(exc).__name__}: check --tsig_key_name, "
                                 "--tsig_algorithm and --tsig_secret)") from None
        except (dns.exception.DNSException, OSError) as exc:
            raise OperationError(f"dns {self.name}: {what} TXT {fqdn} at {self.options.server}:{self.options.port} "
                                 f"failed: {type(exc).__name__}: {exc}") from None
        if resp.rcode() != dns.rcode.NOERROR:
            raise OperationError(f"dns {self.name}: {what} TXT {fqdn}: the server answered "
                                 f"{dns.rcode.to_text(resp.rcode())}" + _rcode_hint(resp.rcode()))

    def add_txt(self, fqdn: str, value: str) -> None:
        self._update(fqdn, value, add=True)

    def remove_txt(self, fqdn: str, value: str) -> None:
        self._update(fqdn, value, add=False)

    def visible(self, fqdn: str, value: str) -> bool:
        import dns.exception
        import dns.message
        import dns.query
        import dns.rdatatype

        query = dns.message.make_query(fqdn, dns.rdatatype.TXT)
        try:
            resp = dns.query.udp(query, self.address, port=self.options.port, timeout=3)
        except (dns.exception.DNSException, OSError):
            return False
        for rrset in resp.answer:
            if rrset.rdtype == dns.rdatatype.TXT:
                for rdata in rrset:
                    if b"".join(rdata.strings).decode(errors="replace") == value:
                        return True
        return False

    def wait_visible(self, fqdn: str, value: str, timeout: float | None = None) -> None:
        limit = self.options.timeout if timeout is None else timeout
        end = time.monotonic() + limit
        delay = 0.05
        while not self.visible(fqdn, value):
            if time.monotonic() > end:
                raise OperationError(f"dns {self.name}: TXT {fqdn} is not visible on "
                                     f"{self.options.server}:{self.options.port} after {limit} s")
            time.sleep(delay)
            delay = min(delay * 2, 1.0)

    def test(self) -> str:
        """Ask for the zone's SOA, then add, see and remove a test record (proves the key)."""
        import dns.exception
        import dns.message
        import dns.query
        import dns.rdatatype

        zone = self.zone.to_text()
        try:
            resp = dns.query.udp(dns.message.make_query(self.zone, dns.rdatatype.SOA), self.address,
                                 port=self.options.port, timeout=5)
        except (dns.exception.DNSException, OSError) as exc:
            raise OperationError(f"dns {self.name}: {self.options.server}:{self.options.port} did not answer: "
                                 f"{type(exc).__name__}: {exc}") from None
        import dns.flags

        if not resp.flags & dns.flags.AA or not resp.answer:
            raise OperationError(f"dns {self.name}: {self.options.server}:{self.options.port} is not "
                                 f"authoritative for {zone}")
        fqdn = f"_tlsgate-test.{zone}"
        value = f"tlsgate-test-{int(time.time())}"
        self.add_txt(fqdn, value)
        try:
            self.wait_visible(fqdn, value)
        finally:
            self.remove_txt(fqdn, value)
        return (f"{self.options.server}:{self.options.port} is authoritative for {zone}; "
                f"a {'TSIG-signed ' if self.keyring else ''}update was accepted and removed")


def _check_dns_name(name: str, option: str) -> None:
    """Letters, digits, '-' and '_' in dot-separated labels of 1 to 63 (dnspython takes a
    blank or a backslash as part of a label, so 'bad zone' named a zone no server has)."""
    import re

    labels = (name[:-1] if name.endswith(".") else name).split(".")
    if not all(re.fullmatch(r"[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?", label) for label in labels):
        raise ValidationError(f"{name!r} is not a DNS name", option=option)


def _check_server(server: str) -> None:
    from ...validate import check_host

    head, sep, tail = server.rpartition(":")
    if sep and tail.isdigit() and head and ":" not in head:  # host:port, the form dig and nsupdate take
        raise ValidationError(f"{server!r} is not a host name or an IP address (give the port with --port)",
                              option="--server")
    check_host(server, "--server")


def _txt(value: str) -> str:
    # dnspython parses rdata text: quote it so the value is one character-string
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _rcode_hint(rcode: int) -> str:
    import dns.rcode

    if rcode == dns.rcode.NOTAUTH:
        return " (TSIG key refused or server not authoritative for the zone)"
    if rcode == dns.rcode.REFUSED:
        return " (updates refused: check the zone's update-policy/allow-update for this key)"
    return ""


def _factory(name: str, options: Rfc2136Options) -> Rfc2136Provider:
    return Rfc2136Provider(name, options)


RFC2136 = DnsProviderType(
    name="rfc2136",
    description="RFC 2136 dynamic updates with TSIG (BIND, Knot, PowerDNS, ...), by dnspython",
    options=Rfc2136Options,
    factory=_factory,
)
