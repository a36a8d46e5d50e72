"""Helpers shared by the nginx plugin tests (imported by name: conftest puts this folder on
sys.path; the tests folder is not a package, so it cannot clash with another plugin's)."""

from __future__ import annotations

from pathlib import Path

from tlsgate import ConnectionSpec, Endpoint
from tlsgate_nginx.plugin import NginxOptions


def local_endpoint(config: Path | str, **options: object) -> Endpoint:
    return Endpoint(
        name="web",
        type="nginx",
        connection=ConnectionSpec(type="local"),
        options=NginxOptions(nginx_config_path=str(config), **options),  # type: ignore[arg-type]
    )
