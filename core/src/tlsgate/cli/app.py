"""Builds the typer application. ``tls add <type>`` and ``store add <kind>`` get one subcommand
per installed endpoint type / credential store kind, whose flags come from the declared options
(an ``inspect.Signature`` of ``Annotated[..., typer.Option("--seed_spelling")]`` parameters:
Typer 0.26+ vendors Click and no longer accepts Click objects, so this is the supported route)."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Annotated, Any, Optional

import typer

from ..errors import ValidationError
from ..options import OptionSpec, option_specs
from ..registry import get_registry
from ..secret import Secret
from .common import CONTEXT, JsonOpt, gateway, read_secret
from .output import emit_json, say, warn

#: The connection flags every ``tls add`` has, in the reference document's order.
#: The reference document's placeholders for the shared flags.
METAVARS = {"name": "<name>", "connection_type": "<connection_type>", "host": "<server_host>", "port": "<port>",
            "user": "<user>", "password": "<password>", "ssh_key_path": "<ssh-key-path>",
            "ssh_key_password": "<ssh-key-password>", "store": "<credential-store-name>",
            "store_cred_id": "<credential-store-id>"}

CONNECTION_FLAGS: list[tuple[str, str, bool]] = [
    ("connection_type", "The connection type.", False),
    ("host", "The remote hostname or address. Must be between 1 and 255 characters.", False),
    ("port", "The remote port. Must be an integer between 1 and 65535.", False),
    ("user", "The username for authentication.", False),
    ("password", "The password for authentication ('-' reads it from standard input).", True),
    ("ssh_key_path", "The path to the SSH key file.", False),
    ("ssh_key_password", "The password for the SSH key ('-' reads it from standard input).", True),
    ("store", "The credential store name.", False),
    ("store_cred_id", "The credential store ID.", False),
]

def _param(name: str, help_text: str, *, flag: str | None = None, metavar: str | None = None) -> inspect.Parameter:
    return inspect.Parameter(
        name,
        inspect.Parameter.KEYWORD_ONLY,
        default=None,
        annotation=Annotated[Optional[str], typer.Option(  # noqa: UP045
            flag or f"--{name}", help=help_text,
            metavar=metavar or METAVARS.get(name) or "<" + name.replace("_", "-") + ">")],
    )


def _spec_help(spec: OptionSpec) -> str:
    text = spec.help
    if spec.choices:
        text += f" One of: {', '.join(spec.choices)}."
    if spec.default is not None and spec.type is not Secret:
        text += f" Default: {str(spec.default).lower() if spec.type is bool else spec.default}."
    if spec.secret:
        text += " ('-' reads it from standard input.)"
    return text


def _with_signature(fn: Callable[..., Any], params: list[inspect.Parameter]) -> Callable[..., Any]:
    fn.__signature__ = inspect.Signature(params)  # type: ignore[attr-defined]
    return fn


def build_app(args: list[str] | None = None) -> typer.Typer:
    """The application; with ``args``, the per-type ``tls add X`` / ``store add X`` commands are
    built only when that group is invoked (Typer converts every command's signature on every run:
    for ``tls discover`` that was most of the start-up time)."""
    app = typer.Typer(
        # plain (non-rich) usage errors: one "Error: ..." line naming the option, as scripts expect
        context_settings=CONTEXT, no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False,
        rich_markup_mode=None,
        help="tlsgate: discover, install and verify TLS certificates on web servers and keystores.",
    )
    tls = typer.Typer(context_settings=CONTEXT, no_args_is_help=True, rich_markup_mode=None, help="Endpoints: add, discover, install, restart.")
    add = typer.Typer(context_settings=CONTEXT, no_args_is_help=True, rich_markup_mode=None, help="Add an endpoint of an installed type.")
    org = typer.Typer(context_settings=CONTEXT, no_args_is_help=True, rich_markup_mode=None, help="Organizations and departments.")
    cert = typer.Typer(context_settings=CONTEXT, no_args_is_help=True, rich_markup_mode=None, help="Certificates in the inventory.")
    store = typer.Typer(context_settings=CONTEXT, no_args_is_help=True, rich_markup_mode=None, help="Credential stores.")
    store_add = typer.Typer(context_settings=CONTEXT, no_args_is_help=True, rich_markup_mode=None, help="Add a credential store.")
    acme = typer.Typer(context_settings=CONTEXT, no_args_is_help=True, rich_markup_mode=None, help="ACME accounts (cert request / renew).")
    dns = typer.Typer(context_settings=CONTEXT, no_args_is_help=True, rich_markup_mode=None, help="DNS providers for ACME dns-01.")
    job = typer.Typer(context_settings=CONTEXT, no_args_is_help=True, rich_markup_mode=None, help="Fleet jobs: list, show, retry.")
    plugins = typer.Typer(context_settings=CONTEXT, no_args_is_help=True, rich_markup_mode=None, help="Installed plugins.")
    app.add_typer(tls, name="tls")
    tls.add_typer(add, name="add")
    app.add_typer(org, name="org")
    app.add_typer(cert, name="cert")
    app.add_typer(store, name="store")
    store.add_typer(store_add, name="add")
    app.add_typer(acme, name="acme")
    app.add_typer(dns, name="dns")
    app.add_typer(job, name="job")
    app.add_typer(plugins, name="plugins")
    db = typer.Typer(context_settings=CONTEXT, no_args_is_help=True, rich_markup_mode=None, help="The inventory database: status, migrate, copy.")
    app.add_typer(db, name="db")
    gateway_group = typer.Typer(context_settings=CONTEXT, no_args_is_help=True, rich_markup_mode=None, help="Gateways (workers) of a shared inventory.")
    app.add_typer(gateway_group, name="gateway")

    registry = get_registry()
    if not registry.endpoint_types:

        @add.command("none", hidden=True)
        def _none() -> None:
            raise ValidationError("no endpoint types are installed: install a plugin such as tlsgate-keystores")

        add.info.help = "Add an endpoint. No endpoint types are installed: install a plugin (e.g. tlsgate-keystores)."

    words = [a for a in (args or []) if not a.startswith("-")][:2]
    if args is None or words == ["tls", "add"] or words == ["tls"] or not words:
        for type_name in sorted(registry.endpoint_types):
            _add_type_command(add, type_name)
    if args is None or words == ["store", "add"] or words == ["store"] or not words:
        for kind in sorted(registry.credential_stores):
            _add_store_command(store_add, kind)

    from . import acme as acme_cmds
    from . import cert as cert_cmds
    from . import dns as dns_cmds
    from . import job as job_cmds
    from . import misc
    from . import org as org_cmds
    from . import store as store_cmds
    from . import tls as tls_cmds

    tls_cmds.register(tls)
    org_cmds.register(org)
    cert_cmds.register(cert)
    cert_cmds.register_fleet(cert)
    store_cmds.register(store)
    acme_cmds.register(acme)
    dns_cmds.register(dns)
    job_cmds.register(job)
    misc.register(app, plugins)
    from . import db as db_cmds

    db_cmds.register(db)
    from . import gateway as gateway_cmds

    gateway_cmds.register(app, gateway_group)
    return app


def _add_type_command(add: typer.Typer, type_name: str) -> None:
    registry = get_registry()
    etype = registry.endpoint_types[type_name]
    type_specs = list(option_specs(etype.options))
    gw_specs: list[OptionSpec] = []
    seen = {"name", *(n for n, _, _ in CONNECTION_FLAGS), "json"}
    for ctype in etype.connection_types:
        ct = registry.connection_types.get(ctype)
        for spec in option_specs(ct.options if ct else None):
            if spec.name not in seen and spec.name not in {s.name for s in type_specs}:
                gw_specs.append(spec)
                seen.add(spec.name)
    params = [_param("name", "The name of the endpoint. Must be between 1 and 32 characters.")]
    for name, help_text, _secret in CONNECTION_FLAGS:
        if name == "connection_type":
            help_text += f" One of: {', '.join(etype.connection_types)}."
        params.append(_param(name, help_text))
    for spec in type_specs + gw_specs:
        params.append(_param(spec.name, _spec_help(spec), metavar=spec.metavar))
    if "zone" not in seen and "zone" not in {s.name for s in type_specs}:
        params.append(_param("zone", "The network zone whose gateways reach this endpoint. Default: default.",
                             metavar="<zone>"))
    params.append(inspect.Parameter("json", inspect.Parameter.KEYWORD_ONLY, default=False, annotation=JsonOpt))

    def command(**kwargs: Any) -> None:
        as_json = kwargs.pop("json")
        gw = gateway()
        for name, _h, secret in CONNECTION_FLAGS:
            if secret:
                kwargs[name] = read_secret(kwargs[name], f"--{name}")
        options = {}
        for spec in type_specs:
            value = kwargs.pop(spec.name)
            options[spec.name] = read_secret(value, spec.flag) if spec.secret else value
        transport = {}
        for spec in gw_specs:
            value = kwargs.pop(spec.name)
            transport[spec.name] = read_secret(value, spec.flag) if spec.secret else value
        endpoint = gw.add_endpoint(type_name, transport_options=transport, options=options,
                                   zone=kwargs.pop("zone", None), **kwargs)
        if as_json:
            emit_json(gw.describe(gw.inventory.get_endpoint(endpoint.instance_id)))
        else:
            say(f"Endpoint {endpoint.name!r} added successfully. Instance ID: {endpoint.instance_id}")
            if registry.connection_types[endpoint.connection.type].insecure:
                warn(f"{endpoint.connection.type} does not verify the server's TLS certificate")

    command.__name__ = f"add_{type_name}"
    help_text = etype.description + (
        f" Connection types: {', '.join(etype.connection_types)}." if etype.connection_types else ""
    )
    add.command(type_name, help=help_text, context_settings=CONTEXT)(_with_signature(command, params))


def _add_store_command(store_add: typer.Typer, kind: str) -> None:
    stype = get_registry().credential_stores[kind]
    specs = list(option_specs(stype.options))
    params = [_param("name", "The credential store name.")]
    params += [_param(s.name, _spec_help(s), metavar=s.metavar) for s in specs]
    params.append(inspect.Parameter("json", inspect.Parameter.KEYWORD_ONLY, default=False, annotation=JsonOpt))

    def command(**kwargs: Any) -> None:
        as_json = kwargs.pop("json")
        name = kwargs.pop("name")
        if not name:
            raise ValidationError("is required", option="--name")
        options = {s.name: (read_secret(kwargs[s.name], s.flag) if s.secret else kwargs[s.name]) for s in specs}
        gw = gateway()
        gw.add_store(kind, name, options)
        if as_json:
            emit_json(next(s for s in gw.inventory.stores() if s["name"] == name))
        else:
            say(f"Credential store {name!r} ({kind}) added. Check it with: tlsgate store test {name}")

    command.__name__ = f"store_add_{kind}"
    store_add.command(kind, help=stype.description, context_settings=CONTEXT)(_with_signature(command, params))
