"""ACME accounts: ``acme add|list|show|remove``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from .common import CONTEXT, JsonOpt, gateway, read_secret
from .output import emit_json, say, table

Name = Annotated[str, typer.Argument(help="The account's name in this gateway.", metavar="NAME")]


def register(acme: typer.Typer) -> None:
    @acme.command("add", context_settings=CONTEXT)
    def acme_add(
        ctx: typer.Context,
        name: Name,
        directory: Annotated[Optional[str], typer.Option("--directory", help="The CA's ACME directory URL.", metavar="URL")] = None,  # noqa: UP045
        email: Annotated[Optional[str], typer.Option("--email", help="Contact e-mail for the account.", metavar="E")] = None,  # noqa: UP045
        eab_kid: Annotated[Optional[str], typer.Option("--eab_kid", "--eab-kid", help="External Account Binding key ID (from the CA).", metavar="KID")] = None,  # noqa: UP045
        eab_hmac_key: Annotated[Optional[str], typer.Option("--eab_hmac_key", "--eab-hmac-key", help="External Account Binding HMAC key, base64url ('-' reads it from standard input).", metavar="K")] = None,  # noqa: UP045
        ca_bundle: Annotated[Optional[Path], typer.Option("--ca_bundle", "--ca-bundle", help="PEM file of CA certificates to trust for the ACME server (private or test CAs).", metavar="F")] = None,  # noqa: UP045
        agree_tos: Annotated[bool, typer.Option("--agree_tos", "--agree-tos", help="Agree to the CA's terms of service.")] = False,
        json: JsonOpt = False,
    ) -> None:
        """Register an ACME account (or find it); its key is generated here and sealed at rest."""
        from ..errors import ValidationError

        if not directory:
            raise ValidationError("is required", option="--directory")
        view = gateway().lifecycle.add_account(
            name, directory=directory, email=email, eab_kid=eab_kid,
            eab_hmac_key=read_secret(ctx, eab_hmac_key, "--eab_hmac_key"), ca_bundle=ca_bundle, agree_tos=agree_tos)
        if json:
            emit_json(view)
        else:
            verb = "found (already registered)" if view["found"] else "registered"
            say(f"ACME account {name!r} {verb}: {view['uri']}")

    @acme.command("list", context_settings=CONTEXT)
    def acme_list(json: JsonOpt = False) -> None:
        """List ACME accounts (keys never shown)."""
        accounts = gateway().lifecycle.accounts()
        if json:
            emit_json(accounts)
            return
        table(["Name", "Directory", "E-mail", "EAB key ID", "Account URI"],
              [[a["name"], a["directory"], a["email"], a["eab_kid"], a["uri"]] for a in accounts])

    @acme.command("show", context_settings=CONTEXT)
    def acme_show(name: Name, json: JsonOpt = False) -> None:
        """Show one ACME account and the certificates issued through it."""
        view = gateway().lifecycle.account(name)
        if json:
            emit_json(view)
            return
        for key in ("name", "directory", "email", "uri", "eab_kid", "ca_bundle", "terms_of_service", "created"):
            say(f"{key.replace('_', ' ').capitalize() + ':':<18} {'' if view[key] is None else view[key]}")
        say(f"{'Certificates:':<18} {', '.join(map(str, view['certificates'])) or 'none'}")

    @acme.command("remove", context_settings=CONTEXT)
    def acme_remove(name: Name, json: JsonOpt = False) -> None:
        """Forget an ACME account (its certificates stay; they no longer renew)."""
        view = gateway().lifecycle.remove_account(name)
        if json:
            emit_json({"removed": name, "certificates": view["certificates"]})
        else:
            # renewals of these still run (and fail, exit 1) until an account of this name exists
            # again: a certificate must not expire silently because its account was removed
            extra = (f" {len(view['certificates'])} certificate(s) issued through it cannot renew (cert renew "
                     f"reports them failed) until an ACME account named {name!r} is added again."
                     if view["certificates"] else "")
            say(f"ACME account {name!r} removed.{extra}")
