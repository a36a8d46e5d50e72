"""DNS providers for ACME dns-01 challenges, declared by plugins through the
``tlsgate_dns_providers`` hook (the core's own ``rfc2136`` registers the same way).

A provider kind is a :class:`DnsProviderType` whose ``factory(name, options)`` returns an object
with:

* ``add_txt(fqdn: str, value: str) -> None``: publish a TXT record (``fqdn`` ends with a dot);
* ``wait_visible(fqdn: str, value: str, timeout: float) -> None``: return once the record's
  authoritative servers answer it, raise :class:`tlsgate.OperationError` after ``timeout``;
* ``remove_txt(fqdn: str, value: str) -> None``: remove exactly that record again (other TXT
  values of the same name stay);
* ``test() -> str``: check the server and the credentials; a one-line description.

Secret options (TSIG secrets, API tokens) are sealed in the inventory like every other secret and
handed to the factory as :class:`tlsgate.Secret`.
"""

from __future__ import annotations

from typing import Any, Protocol

import attrs


@attrs.frozen
class DnsProviderType:
    """A kind of DNS provider (``tlsgate dns add NAME <kind>``)."""

    name: str
    description: str
    options: type | None
    factory: Any


class DnsProvider(Protocol):
    def add_txt(self, fqdn: str, value: str) -> None: ...

    def wait_visible(self, fqdn: str, value: str, timeout: float) -> None: ...

    def remove_txt(self, fqdn: str, value: str) -> None: ...

    def test(self) -> str: ...
