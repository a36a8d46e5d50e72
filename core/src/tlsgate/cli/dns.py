"""DNS providers for dns-01: ``dns add NAME KIND ...``, ``dns list``, ``dns test NAME``,
``dns remove NAME``. ``dns add`` takes the options of every installed kind (each refused with a
kind it does not belong to), built from the kinds' declared options like ``store add``."""

from __future__ import annotations

import inspect
import shlex
from typing import Annotated, Any

import typer

from ..declarations import declarations
from ..errors import ValidationError
from .common import CONTEXT, JsonOpt, gateway, read_secret
from .output import emit_json, say, table

Name = Annotated[str, typer.Argument(help="The provider's name in this gateway.", metavar="NAME")]


def register(dns: typer.Typer) -> None:
    from .app import _param, _spec_help, _with_signature

    kinds = declarations().dns_providers
    specs: dict[str, Any] = {}
    owners: dict[str, list[str]] = {}
    for kind in sorted(kinds):
        for spec in kinds[kind].options:
            specs.setdefault(spec.name, spec)
            owners.setdefault(spec.name, []).append(kind)
    params = [
        inspect.Parameter("ctx", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=typer.Context),
        inspect.Parameter("name", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=Name),
        inspect.Parameter("kind", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=Annotated[str, typer.Argument(
            help=f"The provider kind: {', '.join(sorted(kinds)) or 'none installed'}.", metavar="KIND")]),
    ]
    for name, spec in specs.items():
        params.append(_param(name, _spec_help(spec) + f" ({', '.join(owners[name])})", metavar=spec.metavar))
    params.append(inspect.Parameter("json", inspect.Parameter.KEYWORD_ONLY, default=False, annotation=JsonOpt))

    def dns_add(**kwargs: Any) -> None:
        as_json = kwargs.pop("json")
        ctx = kwargs.pop("ctx")
        name, kind = kwargs.pop("name"), kwargs.pop("kind")
        if kind not in kinds:
            raise ValidationError(f"unknown DNS provider kind {kind!r} (installed: {', '.join(sorted(kinds)) or 'none'})",
                                  option="KIND")
        own = {s.name for s in kinds[kind].options}
        options: dict[str, Any] = {}
        for key, value in kwargs.items():
            if value is None:
                continue
            if key not in own:
                raise ValidationError(f"is not an option of the {kind} kind", option=f"--{key}")
            options[key] = read_secret(ctx, value, f"--{key}") if specs[key].secret else value
        view = gateway().lifecycle.add_dns(name, kind, options)
        if as_json:
            emit_json(view)
        else:
            say(f"DNS provider {name!r} ({kind}) added. Check it with: tlsgate dns test {shlex.quote(name)}")

    dns.command("add", help="Add a DNS provider (for cert request --challenge dns-01 --dns NAME).",
                context_settings=CONTEXT)(_with_signature(dns_add, params))

    @dns.command("list", context_settings=CONTEXT)
    def dns_list(json: JsonOpt = False) -> None:
        """List DNS providers (secrets redacted)."""
        providers = gateway().lifecycle.dns_providers()
        if json:
            emit_json(providers)
            return
        table(["Name", "Kind", "Options"],
              [[p["name"], p["kind"], ", ".join(f"{k}={v}" for k, v in p["options"].items() if v is not None)]
               for p in providers])

    @dns.command("test", context_settings=CONTEXT)
    def dns_test(name: Name, json: JsonOpt = False) -> None:
        """Check a provider: the server answers for the zone and accepts (and removes) a record."""
        message = gateway().lifecycle.test_dns(name)
        emit_json({"dns": name, "ok": True, "message": message}) if json else say(message)

    @dns.command("remove", context_settings=CONTEXT)
    def dns_remove(name: Name, json: JsonOpt = False) -> None:
        """Remove a DNS provider."""
        gateway().lifecycle.remove_dns(name)
        emit_json({"removed": name}) if json else say(f"DNS provider {name!r} removed.")
