"""Hook implementations of the ``apache`` endpoint type (Apache httpd 2.4).

Entry module: imports only tlsgate and attrs at import time (every CLI call loads every plugin);
the driver modules load when a hook runs.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

import attrs
from tlsgate.plugin import EndpointType, OperationError, Problem, RestartResult, delegate, impl, option

if TYPE_CHECKING:
    from tlsgate.plugin import Connection, Endpoint, Node

    from .config import ApacheConfig
    from .control import ApacheControl, RunConfig
    from .discovery import VHostNode
    from .speculate import ReadAhead

#: The plugin contract this plugin is written for (checked by the registry at load).
PLUGIN_API = "1.0"

TYPE = "apache"


@attrs.frozen
class ApacheOptions:
    """``tlsgate tls add apache`` options (the reference document's, plus where certificates go)."""

    apachectl_path: str | None = option(
        help=(
            "The path to apachectl (Debian: apache2ctl; a plain httpd binary works too). Must be between 1 "
            "and 4096 characters. Default: apachectl, apache2ctl or httpd found on the host."
        ),
        min_len=1, max_len=4096, metavar="<apachectl-path>",
    )
    certs_dir: str | None = option(
        help="Directory for new certificate, key and chain files (default: tlsgate/ in the ServerRoot, "
             "e.g. /etc/apache2/tlsgate/).",
        min_len=1, max_len=4096, metavar="DIR",
    )


@impl
def tlsgate_endpoint_types() -> list[EndpointType]:
    return [
        EndpointType(
            name=TYPE,
            description="Apache httpd 2.4 (virtual hosts, edited in place; graceful restart after install)",
            connection_types=("local", "ssh"),
            local_platforms=("linux",),
            options=ApacheOptions,
            needs_restart=False,  # the install itself ends with a graceful restart
            vendor="Apache",
        )
    ]


@impl
def validate(endpoint: Endpoint) -> list[Problem]:
    if endpoint.type != TYPE:
        return []
    options = endpoint.options
    problems = []
    ctl = getattr(options, "apachectl_path", None)
    if ctl is not None and endpoint.connection.type == "local" and "/" in ctl and not ctl.startswith("/"):
        problems.append(Problem("must be an absolute path or a program name on PATH", option="--apachectl_path"))
    elif ctl is not None and _local(endpoint) and ctl.startswith("/") and not os.path.isfile(ctl):
        what = "is a directory" if os.path.isdir(ctl) else "no such file"  # remote paths wait for the job
        problems.append(Problem(f"{ctl}: {what}", option="--apachectl_path"))
    certs_dir = getattr(options, "certs_dir", None) or "/"
    if not certs_dir.startswith("/"):
        problems.append(Problem("must be an absolute path", option="--certs_dir"))
    if any(ch in certs_dir for ch in "\"\n\r") or "${" in certs_dir:
        problems.append(Problem("must not contain '\"', '${' or a newline (httpd would read them)",
                                option="--certs_dir"))
    return problems


def _local(endpoint: Endpoint) -> bool:
    return endpoint.connection.type == "local"


@impl
def discover_nodes(endpoint: Endpoint, connection: Connection) -> list[Node]:
    import gc

    from tlsgate.plugin import offer_early_command, take_early_command

    from . import reuse
    from .control import DUMP_ARGS, ApacheControl, RunConfig

    local = _local(endpoint)
    control = ApacheControl.find(connection, endpoint.options.apachectl_path)
    dump_argv = control.argv(*DUMP_ARGS)
    # started by the CLI before tlsgate loaded (the command the last discovery ran), or now
    early = take_early_command(dump_argv) if local else None
    dumped = control.dump_started(spool=local, early=early)  # httpd reads its configuration meanwhile
    # the parse and the node model allocate hundreds of thousands of acyclic objects: CPython's
    # cyclic collector would rescan the growing heap again and again (a fifth of the time at
    # 10,000 vhosts); nothing here makes cycles that must be freed before the hook returns
    enabled = gc.isenabled()
    gc.disable()
    try:
        from .discovery import confirm_by_handshake, discover  # the lexer, cryptography, the probes
        from .speculate import Hint, load_dump_text, load_hint, read_ahead, save_dump_text, save_hint

        # while httpd runs: read and lex what the last discovery read (local only: over ssh the
        # connection is the dump's until it is back; the walk takes only what httpd's dump
        # names), then discover on what httpd printed last time; or, when the last discovery's
        # record says nothing it was made from changed, check that instead (reuse.py)
        hint = load_hint(endpoint) if local else None

        def note(path: str) -> None:
            """A file read ahead changed since the early dump started: that dump will not be
            taken; httpd is asked again at once, while the reading ahead goes on."""
            nonlocal early, dumped
            if early is not None and early.note(path):
                early.kill()
                early, dumped = None, control.dump_started(spool=local)

        recorder = reuse.Recorder(connection) if local else connection
        reused = reuse.load(endpoint) if local else None
        if reused is not None and not reused.unchanged(connection, note if early is not None else None):
            reused = None
        ahead = read_ahead(recorder, hint, lambda: dumped.done(), note if early is not None else None) \
            if local and reused is None else None
        last = load_dump_text(endpoint) if early is not None else None
        guess = speculated = confirmed = None
        if reused is not None:
            try:
                recorded = reused.vnodes()
            except (ValueError, TypeError, KeyError, IndexError):  # a damaged record: made from the files
                reused = None
        if reused is not None:
            if last is not None and reuse.dump_digest(last) == reused.dump:
                guess = RunConfig(text=last)  # taken (``run is guess``) only if httpd prints it again
            # the handshakes while httpd runs: what a vhost serves does not depend on the dump,
            # and the recorded nodes are the ones taken when httpd prints the same
            confirmed = confirm_by_handshake(recorded, endpoint, local)
            inputs = reused.inputs()  # for the early run's check, made before waiting
        elif last is not None and not dumped.done():
            # still waiting: the whole discovery on the last dump, taken if httpd prints the same
            guess = control.run_config(last)
            speculated = _speculate(recorder, control, guess, ahead)
        try:
            run = dumped(guess)
            if reused is not None and run is not guess and reuse.dump_digest(run.text) != reused.dump:
                reused = None  # httpd printed something else (``guess``, if any, holds the text only)
            # the early run started before this discovery held the endpoint's lease (an install
            # may have been under way): used only if nothing httpd read changed since (asked
            # first of the files it lists, before any work on its dump, then of all the walk read)
            listed = reused.listed if reused is not None else _listed(run)
            again = early is not None and early.changed_since_start(listed)
            if not again:
                if reused is not None:
                    config, vnodes = None, []
                    again = early is not None and early.changed_since_start(inputs)
                else:
                    config, vnodes = speculated if speculated is not None and run is guess else \
                        discover(recorder, control, run, ahead)
                    again = early is not None and early.changed_since_start(config.inputs())
        except OperationError:
            if early is None:
                raise
            again = True  # the early run failed: a fresh one says whether it still does
        if again:  # the files read ahead were read under the lease: still of use
            config, vnodes = discover(recorder, control, control.dump(spool=local), ahead)
        if local:
            made = config if config is not None else reused
            read = Hint(list(made.files), made.certificate_paths)  # type: ignore[union-attr]
            if read != hint:
                save_hint(endpoint, read)
            if config is not None:
                if config.run.text != last:
                    save_dump_text(endpoint, config.run.text)
                reuse.save(endpoint, config, vnodes, recorder, _listed(config.run))  # type: ignore[arg-type]
            offer_early_command(dump_argv)  # the dump is read-only: the next discovery starts it early
        del ahead
        nodes = confirmed if config is None and confirmed is not None else confirm_by_handshake(vnodes, endpoint, local)
        # the parsed files go now, by reference counting: re-enabled with them alive, the
        # collector's next pass would walk every directive of every file once more
        del config, vnodes
    finally:
        if enabled:
            gc.enable()
    return nodes


def _listed(run: RunConfig) -> set[str]:
    """The files httpd's dump lists and the directories holding them."""
    files = {*run.includes, run.main_file}
    return {*files, *(p.rsplit("/", 1)[0] or "/" for p in files)}


def _speculate(connection: Connection, control: ApacheControl, guess: RunConfig,
               ahead: ReadAhead | None) -> tuple[ApacheConfig, list[VHostNode]] | None:
    """:func:`~tlsgate_apache.discovery.discover` on the last dump's parse while httpd runs (its
    reads are those of the discovery, a moment earlier, under the endpoint's lease all the same);
    None when it fails (the discovery on what httpd prints says why, if it still does)."""
    from .discovery import discover

    try:
        return discover(connection, control, guess, ahead)
    except Exception:  # noqa: BLE001 - only a guess: the real discovery reports its own errors
        return None


#: ``alias`` (keystore entry names) is not taken: virtual hosts have none.
install = delegate("install", "tlsgate_apache.install:install_bundle")


@impl
def restart(endpoint: Endpoint, connection: Connection) -> RestartResult:
    from .install import restart_apache

    done = restart_apache(endpoint, connection)
    return RestartResult(restarted=True, message=f"apachectl -t passed; {done}")

#: A temporary exact-match AliasMatch in every vhost serving the domain over plain HTTP on the
#: CA's port; returns the cleanup that restores every file and restarts gracefully.
acme_http01 = delegate("acme_http01", "tlsgate_apache.http01:answer_http01")
