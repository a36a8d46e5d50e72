"""The core's own DNS provider kinds, registered through the entry point like a plugin's."""

from __future__ import annotations

from ...plugin import impl
from . import DnsProviderType


@impl
def tlsgate_dns_providers() -> list[DnsProviderType]:
    from .rfc2136 import RFC2136

    return [RFC2136]
