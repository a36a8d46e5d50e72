"""Credential stores (``store add <kind>`` is built in :mod:`.app`)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from ..errors import ValidationError
from .common import CONTEXT, JsonOpt, gateway, read_secret
from .output import emit_json, say, table


def register(store: typer.Typer) -> None:
    @store.command("list", context_settings=CONTEXT)
    def store_list(json: JsonOpt = False) -> None:
        """List credential stores (secrets redacted)."""
        stores = gateway().stores()
        if json:
            emit_json(stores)
        else:
            table(["Name", "Kind", "Options"],
                  [[s["name"], s["kind"], ", ".join(f"{k}={v}" for k, v in s["options"].items() if v is not None)]
                   for s in stores])

    @store.command("test", context_settings=CONTEXT)
    def store_test(name: Annotated[str, typer.Argument(help="Store name.")], json: JsonOpt = False) -> None:
        """Connect to a credential store and authenticate."""
        message = gateway().test_store(name)
        emit_json({"store": name, "ok": True, "message": message}) if json else say(message)

    @store.command("remove", context_settings=CONTEXT)
    def store_remove(name: Annotated[str, typer.Argument(help="Store name.")], json: JsonOpt = False) -> None:
        """Remove a credential store (and, for a local store, its secrets)."""
        gateway().remove_store(name)
        emit_json({"removed": name}) if json else say(f"Credential store {name!r} removed.")

    @store.command("put", context_settings=CONTEXT)
    def store_put(
        ctx: typer.Context,
        name: Annotated[str, typer.Argument(help="A local store's name.")],
        cred_id: Annotated[Optional[str], typer.Option("--store_cred_id", help="Entry ID.")] = None,  # noqa: UP045
        user: Annotated[Optional[str], typer.Option("--user", help="User name.")] = None,  # noqa: UP045
        password: Annotated[Optional[str], typer.Option("--password", help="Password ('-': stdin).")] = None,  # noqa: UP045
        ssh_key_path: Annotated[Optional[Path], typer.Option("--ssh_key_path", help="Private key file to store.")] = None,  # noqa: UP045
        ssh_key_password: Annotated[Optional[str], typer.Option("--ssh_key_password", help="Key passphrase ('-': stdin).")] = None,  # noqa: UP045
        json: JsonOpt = False,
    ) -> None:
        """Put credentials into a local credential store (encrypted with the master key)."""
        if not cred_id:
            raise ValidationError("is required", option="--store_cred_id")
        ssh_key = None
        if ssh_key_path is not None:
            from ..bundle import read_capped

            raw = read_capped(ssh_key_path, "--ssh_key_path", 64 * 1024, "an SSH private key")
            try:
                ssh_key = raw.decode("utf-8")
            except UnicodeDecodeError:
                raise ValidationError(f"{ssh_key_path}: not a text (OpenSSH or PEM) key file",
                                      option="--ssh_key_path") from None
        gateway().put_store_secret(name, cred_id, {
            "user": user, "password": read_secret(ctx, password, "--password"), "ssh_key": ssh_key,
            "ssh_key_password": read_secret(ctx, ssh_key_password, "--ssh_key_password")})
        emit_json({"store": name, "cred_id": cred_id}) if json else say(f"Stored credentials {cred_id!r} in {name!r}.")
