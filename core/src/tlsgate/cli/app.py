"""Builds the typer application. ``tls add <type>`` and ``store add <kind>`` get one subcommand
per installed endpoint type / credential store kind, whose flags come from the declared options
(an ``inspect.Signature`` of ``Annotated[..., typer.Option("--seed_spelling")]`` parameters:
Typer 0.26+ vendors Click and no longer accepts Click objects, so this is the supported route)."""

from __future__ import annotations

import inspect
import shlex
from collections.abc import Callable
from typing import TYPE_CHECKING, Annotated, Any, Optional

import typer
import typer._click as click  # Typer 0.26+ vendors Click; its group API is what a lazy group extends
from typer.core import TyperGroup

from ..errors import ValidationError
from ..secret import Secret
from .common import CONTEXT, JsonOpt, gateway, read_secret

if TYPE_CHECKING:
    from ..declarations import Declarations, Spec


def declared() -> Declarations:
    # what the plugins declare, from the cache when nothing changed (``tlsgate.declarations``):
    # building ``tls add nginx --help`` imports no plugin, ``tlsgate --help`` not even the cache
    from ..declarations import declarations

    return declarations()

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

def _param(name: str, help_text: str, *, flag: str | None = None, metavar: str | None = None,
           multiple: bool = False) -> inspect.Parameter:
    """A ``--name VALUE`` option (``multiple``: the flag may be given several times)."""
    kind = Optional[list[str]] if multiple else Optional[str]  # noqa: UP045
    return inspect.Parameter(
        name,
        inspect.Parameter.KEYWORD_ONLY,
        default=None,
        annotation=Annotated[kind, typer.Option(
            flag or f"--{name}", help=help_text,
            metavar=metavar or METAVARS.get(name) or "<" + name.replace("_", "-") + ">")],
    )


#: The click context, for per-invocation state (see ``common.read_secret``).
_CTX_PARAM = inspect.Parameter("ctx", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=typer.Context)


def _spec_help(spec: Spec) -> str:
    text = spec.help
    if spec.choices:
        text += f" One of: {', '.join(spec.choices)}."
    # a plugin's own help may say these already ("Defaults to false", "'-' reads it from standard input")
    if spec.default is not None and spec.type is not Secret and "default" not in text.lower():
        text += f" Default: {str(spec.default).lower() if spec.type is bool else spec.default}."
    if spec.secret and "standard input" not in text:
        text += " ('-' reads it from standard input.)"
    if spec.repeat:
        text += f" Repeatable (the values are joined with {spec.repeat!r})."
    return text


def _with_signature(fn: Callable[..., Any], params: list[inspect.Parameter]) -> Callable[..., Any]:
    fn.__signature__ = inspect.Signature(params)  # type: ignore[attr-defined]
    return fn


class LazyGroup(TyperGroup):
    """A command group whose subcommands are built only when one is invoked (or its own help is
    asked for): ``lazy`` maps a name to (one-line help, builder). Typer converts every command's
    signature into Click parameters when it builds a group, and ``tls add`` has one command per
    endpoint type built from its plugin's declared options: building them all for every run was
    most of ``tlsgate --help``'s time. The group's help lists lazy names with their one-line help
    without building them (one whose help is empty is hidden)."""

    lazy: dict[str, tuple[str, Callable[[], click.Command]]]

    def list_commands(self, ctx: click.Context) -> list[str]:
        lazy = getattr(self, "lazy", {})
        return [*(n for n in self.commands if n not in lazy), *lazy]

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        lazy = getattr(self, "lazy", {})
        if cmd_name not in self.commands and cmd_name in lazy:
            self.commands[cmd_name] = lazy[cmd_name][1]()
        return self.commands.get(cmd_name)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        lazy = getattr(self, "lazy", {})
        names = self.list_commands(ctx)
        # a lazy name with no help is hidden (``tls add none`` when no endpoint type is installed)
        shown = [n for n in names if (n in lazy and n not in self.commands and lazy[n][0])
                 or (n in self.commands and not self.commands[n].hidden)]
        if not shown:
            return
        limit = formatter.width - 6 - max(len(n) for n in shown)
        rows = []
        for name in shown:
            if name in self.commands:
                rows.append((name, self.commands[name].get_short_help_str(limit)))
            else:
                rows.append((name, click.utils.make_default_short_help(lazy[name][0], limit)))
        with formatter.section("Commands"):
            formatter.write_dl(rows)

    def resolve_command(self, ctx: click.Context, args: list[str]) -> tuple[str | None, click.Command | None, list[str]]:
        # TyperGroup's typo suggestions ("Did you mean ...?") look at self.commands only
        try:
            return self._click_resolve_command(ctx, args)
        except click.exceptions.UsageError as e:
            names = self.list_commands(ctx)
            if self.suggest_commands and names and args:
                import difflib

                matches = difflib.get_close_matches(args[0], names)
                if matches:
                    e.message = e.message.rstrip(".") + ". Did you mean " + ", ".join(f"{m!r}" for m in matches) + "?"
            raise


#: annotations whose value of exactly this type Typer's coercion returns unchanged
_PLAIN: dict[Any, type] = {str: str, int: int, bool: bool, Optional[str]: str, Optional[int]: int,  # noqa: UP045
                           Optional[bool]: bool}  # noqa: UP045


class _LightCoercion:
    """Typer (0.29) coerces every parameter's value through a pydantic ``TypeAdapter`` it builds
    on first use, and builds it even for a value that is absent (``None``), so any command, even
    ``tls add nginx --help``, imported pydantic (~0.15 s, as much as Typer itself). This keeps
    Typer's semantics and skips that where they are trivial: an absent value is None (or () for a
    multi-value option) exactly as ``RuntimeParam.coerce`` returns; a ``str`` value of a ``str``
    parameter without a custom parser is itself; anything else goes to Typer's own coercion.
    The same for a ``bool`` or ``int`` value of a (possibly Optional) ``bool``/``int`` parameter
    without a range (a flag, a default such as ``--parallel``'s 8), decimal digits of such an
    ``int`` one, and a ``str`` value of an ``Optional[str]`` one (an endpoint name): otherwise
    ``tls discover NAME`` imported pydantic for them (~0.1 s of CPU on every call)."""

    def __init__(self, descriptor: Any) -> None:
        self.descriptor = descriptor
        plain = descriptor.parameter_info.parser is None and descriptor.file_annotation is None \
            and not descriptor.is_ranged
        self.plain: type | None = _PLAIN.get(descriptor.annotation) if plain else None
        self.full: Any = None

    def coerce(self, value: Any, param: Any, ctx: click.Context) -> Any:
        if value is None:
            return () if (param.multiple or param.nargs == -1) else None
        single = not param.multiple and param.nargs == 1
        if self.plain is not None and type(value) is self.plain and single:
            return value
        # an int option's default (``--days`` not given: 30), or plain decimal digits: the value
        # pydantic gives; anything else (" 7", "1e3", "x") goes to Typer for its answer and message
        if self.plain is int and single and (
                type(value) is str and 0 < len(value.removeprefix("-")) <= 18 and value.removeprefix("-").isdigit()
                and value.removeprefix("-").isascii()):
            return int(value)
        if self.full is None:
            from typer._coercion import build_runtime_param

            self.full = build_runtime_param(self.descriptor)
        return self.full.coerce(value, param=param, ctx=ctx)


def _light(command: click.Command) -> click.Command:
    """Install :class:`_LightCoercion` on the parameters of ``command`` (and of its built
    subcommands). Parameters of another Typer version than the one this knows stay as they are.
    The help option is made here (Click makes it once per command, from the context's
    ``help_option_names``: every tlsgate command has :data:`CONTEXT`'s)."""
    help_option = command.get_help_option(click.Context(command, **CONTEXT))  # type: ignore[arg-type]
    for param in [*command.params, *([help_option] if help_option is not None else [])]:
        if getattr(param, "_runtime_param", 0) is None and hasattr(param, "type_descriptor"):
            param._runtime_param = _LightCoercion(param.type_descriptor)  # type: ignore[attr-defined]
    for sub in getattr(command, "commands", {}).values():
        _light(sub)
    return command


def _group(help_text: str, register: Callable[[typer.Typer], None] | None = None,
           lazy: Callable[[], dict[str, tuple[str, Callable[[], click.Command]]]] | None = None,
           ) -> Callable[[], click.Command]:
    """A builder of one command group: its commands from ``register``, its lazy subgroups from
    ``lazy`` (called when the group is built)."""

    def build() -> click.Command:
        group = typer.Typer(cls=LazyGroup, context_settings=CONTEXT, no_args_is_help=True, rich_markup_mode=None,
                            add_completion=False, pretty_exceptions_enable=False, help=help_text)
        group.callback()(_no_options)
        if register is not None:
            register(group)
        commands = _lazy_commands(group)
        command = typer.main.get_command(group)
        assert isinstance(command, LazyGroup)
        command.lazy = {**commands, **(lazy() if lazy is not None else {})}
        return _light(command)

    return build


def _lazy_commands(group: typer.Typer) -> dict[str, tuple[str, Callable[[], click.Command]]]:
    """The commands registered on ``group``, taken off it to be converted only when invoked
    (Typer converts every command's signature to Click parameters when it builds a group: the
    ``tls`` group's dozen commands cost more than the one that runs). The one-line help is the
    one Typer would give (``help=``, else the docstring); a hidden command has none."""
    infos, group.registered_commands = group.registered_commands, []
    out: dict[str, tuple[str, Callable[[], click.Command]]] = {}
    for info in infos:
        assert info.callback is not None
        name = info.name or typer.main.get_command_name(info.callback.__name__)
        text = info.short_help or (inspect.cleandoc(info.help) if info.help is not None
                                   else inspect.getdoc(info.callback)) or ""

        def build(info: Any = info) -> click.Command:
            return _light(typer.main.get_command_from_info(
                info, pretty_exceptions_short=group.pretty_exceptions_short, rich_markup_mode=group.rich_markup_mode))

        out[name] = ("" if info.hidden else text, build)
    return out


def _no_options() -> None:
    """A group's callback: groups take no options of their own."""


def _registers(module: str, *functions: str) -> Callable[[typer.Typer], None]:
    """``tlsgate.cli.<module>.<function>(group)`` for each function (default: ``register``), the
    module imported only when the group is built."""

    def register(group: typer.Typer) -> None:
        import importlib

        loaded = importlib.import_module(f"{__package__}.{module}")
        for function in functions or ("register",):
            getattr(loaded, function)(group)

    return register


def _endpoint_types() -> dict[str, tuple[str, Callable[[], click.Command]]]:
    """``tls add``'s subcommands: one per installed endpoint type, each built when invoked."""
    decl = declared()
    if not decl.endpoint_types:
        def none() -> click.Command:
            def _none() -> None:
                raise ValidationError("no endpoint types are installed: install a plugin such as tlsgate-keystores")

            return _single("none", "No endpoint types are installed.", _none, hidden=True)

        return {"none": ("", none)}
    return {name: (_type_help(name), lambda name=name: _add_type_command(name))  # type: ignore[misc]
            for name in sorted(decl.endpoint_types)}


def _store_kinds() -> dict[str, tuple[str, Callable[[], click.Command]]]:
    stores = declared().credential_stores
    return {kind: (stores[kind].description, lambda kind=kind: _add_store_command(kind))  # type: ignore[misc]
            for kind in sorted(stores)}


def _add_help() -> str:
    if not declared().endpoint_types:
        return "Add an endpoint. No endpoint types are installed: install a plugin (e.g. tlsgate-keystores)."
    return "Add an endpoint of an installed type."


def _tls_subgroups() -> dict[str, tuple[str, Callable[[], click.Command]]]:
    def build_add() -> click.Command:
        return _group(_add_help(), lazy=_endpoint_types)()  # its help says when no type is installed

    return {"add": ("Add an endpoint of an installed type.", build_add)}


def _store_subgroups() -> dict[str, tuple[str, Callable[[], click.Command]]]:
    return {"add": ("Add a credential store.", _group("Add a credential store.", lazy=_store_kinds))}


def _single(name: str, help_text: str, fn: Callable[..., Any], *, hidden: bool = False) -> click.Command:
    """One command as a Click command (Typer's conversion of its signature)."""
    holder = typer.Typer(context_settings=CONTEXT, add_completion=False, rich_markup_mode=None,
                         pretty_exceptions_enable=False)
    holder.command(name, help=help_text, context_settings=CONTEXT, hidden=hidden)(fn)
    command = typer.main.get_command(holder)
    command.name = name
    return _light(command)


#: The top-level groups: name -> (one-line help, builder). A new command group is one line here.
GROUPS: dict[str, tuple[str, Callable[[], click.Command]]] = {
    "tls": ("Endpoints: add, discover, install, restart.",
            _group("Endpoints: add, discover, install, restart.", _registers("tls"), _tls_subgroups)),
    "org": ("Organizations and departments.", _group("Organizations and departments.", _registers("org"))),
    "cert": ("Certificates in the inventory.",
             _group("Certificates in the inventory.", _registers("cert", "register", "register_fleet"))),
    "store": ("Credential stores.", _group("Credential stores.", _registers("store"), _store_subgroups)),
    "acme": ("ACME accounts (cert request / renew).",
             _group("ACME accounts (cert request / renew).", _registers("acme"))),
    "dns": ("DNS providers for ACME dns-01.", _group("DNS providers for ACME dns-01.", _registers("dns"))),
    "job": ("Fleet jobs: list, show, retry.", _group("Fleet jobs: list, show, retry.", _registers("job"))),
    "plugins": ("Installed plugins.", _group("Installed plugins.", _registers("misc", "register_plugins"))),
    "db": ("The inventory database: status, migrate, copy.",
           _group("The inventory database: status, migrate, copy.", _registers("db"))),
    "gateway": ("Gateways (workers) of a shared inventory.",
                _group("Gateways (workers) of a shared inventory.", _registers("gateway"))),
    "backup": ("Backup sets of installs: list, restore, dismiss.",
               _group("Backup sets of installs: list, restore, dismiss.", _registers("backup"))),
}


def build_app() -> click.Command:
    """The ``tlsgate`` command: top-level commands built now, every group when it is invoked."""
    app = typer.Typer(
        cls=LazyGroup,
        # plain (non-rich) usage errors: one "Error: ..." line naming the option, as scripts expect
        context_settings=CONTEXT, no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False,
        rich_markup_mode=None,
        help="tlsgate: discover, install and verify TLS certificates on web servers and keystores.",
    )
    app.callback()(_no_options)
    _registers("misc", "register_top")(app)
    _registers("gateway", "register_top")(app)
    commands = _lazy_commands(app)
    command = typer.main.get_command(app)
    assert isinstance(command, LazyGroup)
    command.lazy = {**commands, **GROUPS}
    return _light(command)


def _type_help(type_name: str) -> str:
    etype = declared().endpoint_types[type_name]
    return etype.description + (
        f" Connection types: {', '.join(etype.connection_types)}." if etype.connection_types else ""
    )


def _add_type_command(type_name: str) -> click.Command:
    from .output import emit_json, say, warn

    decl = declared()
    etype = decl.endpoint_types[type_name]
    type_specs = list(etype.options)
    gw_specs: list[Spec] = []
    seen = {"name", *(n for n, _, _ in CONNECTION_FLAGS), "json"}
    for ctype in etype.connection_types:
        ct = decl.connection_types.get(ctype)
        for spec in (ct.options if ct else ()):
            if spec.name not in seen and spec.name not in {s.name for s in type_specs}:
                gw_specs.append(spec)
                seen.add(spec.name)
    params = [_param("name", "The name of the endpoint. Must be between 1 and 32 characters.")]
    for name, help_text, _secret in CONNECTION_FLAGS:
        if name == "connection_type":
            help_text += f" One of: {', '.join(etype.connection_types)}."
        params.append(_param(name, help_text))
    for spec in type_specs + gw_specs:
        params.append(_param(spec.name, _spec_help(spec), metavar=spec.metavar, multiple=spec.repeat is not None))
    if "zone" not in seen and "zone" not in {s.name for s in type_specs}:
        params.append(_param("zone", "The network zone whose gateways reach this endpoint. Default: default.",
                             metavar="<zone>"))
    params.append(inspect.Parameter("json", inspect.Parameter.KEYWORD_ONLY, default=False, annotation=JsonOpt))
    params.insert(0, _CTX_PARAM)

    def command(**kwargs: Any) -> None:
        ctx = kwargs.pop("ctx")
        as_json = kwargs.pop("json")
        gw = gateway()
        for name, _h, secret in CONNECTION_FLAGS:
            if secret:
                kwargs[name] = read_secret(ctx, kwargs[name], f"--{name}")
        options = {}
        for spec in type_specs:
            value = spec.joined(kwargs.pop(spec.name))
            options[spec.name] = read_secret(ctx, value, spec.flag) if spec.secret else value
        transport = {}
        for spec in gw_specs:
            value = spec.joined(kwargs.pop(spec.name))
            transport[spec.name] = read_secret(ctx, value, spec.flag) if spec.secret else value
        endpoint = gw.add_endpoint(type_name, transport_options=transport, options=options,
                                   zone=kwargs.pop("zone", None), **kwargs)
        if as_json:
            emit_json(gw.describe(endpoint))
        else:
            say(f"Endpoint {endpoint.name!r} added successfully. Instance ID: {endpoint.instance_id}")
            if gw.registry.connection_types[endpoint.connection.type].insecure:
                warn(f"{endpoint.connection.type} does not verify the server's TLS certificate")

    command.__name__ = f"add_{type_name}"
    return _single(type_name, _type_help(type_name), _with_signature(command, params))


def _add_store_command(kind: str) -> click.Command:
    from .output import emit_json, say

    stype = declared().credential_stores[kind]
    specs = list(stype.options)
    params = [_param("name", "The credential store name.")]
    params += [_param(s.name, _spec_help(s), metavar=s.metavar) for s in specs]
    params.append(inspect.Parameter("json", inspect.Parameter.KEYWORD_ONLY, default=False, annotation=JsonOpt))
    params.insert(0, _CTX_PARAM)

    def command(**kwargs: Any) -> None:
        ctx = kwargs.pop("ctx")
        as_json = kwargs.pop("json")
        name = kwargs.pop("name")
        if not name:
            raise ValidationError("is required", option="--name")
        options = {s.name: (read_secret(ctx, kwargs[s.name], s.flag) if s.secret else kwargs[s.name]) for s in specs}
        gw = gateway()
        gw.add_store(kind, name, options)
        if as_json:
            emit_json(gw.store(name))
        else:
            say(f"Credential store {name!r} ({kind}) added. Check it with: tlsgate store test {shlex.quote(name)}")

    command.__name__ = f"store_add_{kind}"
    return _single(kind, stype.description, _with_signature(command, params))
