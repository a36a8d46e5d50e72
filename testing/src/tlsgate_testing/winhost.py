"""A small simulated Windows host that runs tlsgate's PowerShell templates (there is no PowerShell
here). The WinRM loopback peer (:mod:`tlsgate_testing.winrm_peer`) and the ``powershell`` shim of
the ssh_windows sshd both hand it the command line they received.

What it checks, like a strict Windows would:

* the command line is at most 8,191 characters (cmd.exe), else ``The command line is too long.``;
* it is ``powershell ... -EncodedCommand <base64 UTF-16LE>``;
* the script is exactly tlsgate's parameter prelude followed by a template whose first line is
  ``# tlsgate:<name>``; the parameters are decoded from the prelude's base64 JSON (``$P``);
* the template is a registered one. An unknown template, a script that does not have this shape,
  or a template whose text differs from the registered text fails loudly (exit 1 + stderr).

Every call is recorded in :attr:`SimulatedWindowsHost.calls` (template name, decoded parameters,
script text), so tests can check what reached the host and that nothing was interpolated.

Extending it (other drivers' templates)::

    def restart_service(host, params):
        host.services[params["name"]] = "Running"
        host.state.setdefault("restarts", []).append(params["name"])
        return ""                                  # stdout; exit code 0

    host.register("tomcat-restart", restart_service, template=TOMCAT_RESTART)  # template: optional
    host.seed(r"C:\\Tomcat\\conf\\server.xml", b"<Server>...</Server>")

A handler gets ``(host, params)`` and returns stdout (``str``/``bytes``), a :class:`PSResult`, or
``None`` (empty output, exit 0); it raises :class:`PSError` to fail with a message and exit code.
Programs run through ``Connection.run`` are simulated with ``host.register_program(name, fn)``.
For ssh_windows, where the host runs in the shim's own process, name the registering functions in
the ``winhost_plugins`` list (``"package.module:function"``, called with the host).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import ntpath
import os
import re
import shlex
import sys
from collections.abc import Callable, Iterable
from typing import Any

import attrs
from tlsgate.quoting import PARAMS_PRELUDE
from tlsgate.transports import windows as win

from .winfs import MAX_LINK_HOPS, DirectoryFS, MemoryFS, PSError, WinFS, full_path, join_link_target, split_windows_path

__all__ = [
    "DirectoryFS", "Invocation", "LoopbackWindowsConnection", "MemoryFS", "PSError", "PSResult",
    "SimulatedWindowsHost", "WinFS", "register_sample_programs", "split_windows_path",
]

CMD_TOO_LONG = "The command line is too long.\r\n"


@attrs.frozen
class PSResult:
    """What a template produced. ``stderr`` is raw text (``[Console]::Error``); ``records`` are
    PowerShell error records and ``warnings`` warning records, which powershell.exe with
    redirected output serializes as CLIXML (see :func:`to_clixml`)."""

    stdout: str = ""
    stderr: str = ""
    exit_code: int = 0
    records: tuple[str, ...] = ()
    warnings: tuple[str, ...] = ()


@attrs.frozen
class Invocation:
    """One template run: what the host received."""

    template: str
    params: Any  # $P, from the script text
    script: str
    secret_params: Any = None  # $S, from standard input (None: the script did not read stdin)


Handler = Callable[["SimulatedWindowsHost", Any], "PSResult | str | bytes | None"]
Program = Callable[["SimulatedWindowsHost", list[str], "bytes | None", "dict[str, str]"], "PSResult | str | None"]


# -- the host ------------------------------------------------------------------------------------
_PRELUDE_RE = re.compile(
    "\\A" + re.escape(PARAMS_PRELUDE).replace(re.escape("{b64}"), "([A-Za-z0-9+/=]*)"), re.DOTALL
)


class SimulatedWindowsHost:
    """Runs tlsgate PowerShell templates against a :class:`WinFS` (in memory by default)."""

    def __init__(self, fs: WinFS | None = None, *, max_command_line: int = win.CMD_EXE_LIMIT,
                 admin: bool = True, user: str = "vagrant") -> None:
        self.fs = fs or MemoryFS()
        self.max_command_line = max_command_line
        self.admin = admin
        self.user = user
        #: PowerShell with redirected output writes its error stream as CLIXML, as on Windows.
        self.clixml = True
        #: 32 when the PowerShell that runs the templates is SysWOW64's (a 32-bit caller under WOW64).
        self.bitness = 64
        self.calls: list[Invocation] = []
        self.command_lines: list[str] = []
        self.services: dict[str, str] = {}
        self.state: dict[str, Any] = {}
        self._handlers: dict[str, tuple[Handler, str | None]] = {}
        self._programs: dict[str, Program] = {}
        for name, text in win.TEMPLATES.items():
            self.register(name, getattr(self, "_t_" + name.replace("-", "_")), template=text)

    # -- extension API ------------------------------------------------------------------------
    def register(self, name: str, handler: Handler, *, template: str | None = None) -> None:
        """Handle template ``name``. With ``template``, the script must carry exactly that text."""
        self._handlers[name] = (handler, template)

    def register_program(self, name: str, program: Program) -> None:
        """Simulate a program for ``Connection.run``: ``program(host, argv, stdin, env)``."""
        self._programs[name.casefold()] = program

    def seed(self, path: str, data: bytes | str = b"", *, private: bool = False) -> None:
        """Create ``path`` (and its parent directories) with ``data``."""
        self.fs.makedirs(ntpath.dirname(path))
        self.fs.write(path, data.encode() if isinstance(data, str) else data)
        if private:
            self.fs.set_private(path, True)

    def link(self, path: str, target: str, kind: str = "SymbolicLink") -> None:
        """Make ``path`` an NTFS link (``SymbolicLink`` or ``Junction``) to ``target``, as
        ``New-Item -ItemType SymbolicLink|Junction -Path path -Target target`` would."""
        self.fs.makedirs(ntpath.dirname(path))
        self.fs.symlink(path, target, kind)

    def read(self, path: str) -> bytes:
        return self.fs.read(path)

    def exists(self, path: str) -> bool:
        return self.fs.kind(path) is not None

    def templates_run(self) -> list[str]:
        return [c.template for c in self.calls]

    # -- entry points -------------------------------------------------------------------------
    def run_command_line(self, command_line: str, stdin: bytes | Callable[[], bytes] = b"") -> tuple[bytes, bytes, int]:
        """What cmd.exe + PowerShell would do with ``command_line``: (stdout, stderr, exit code).

        ``stdin`` (or a function that reads it) is consumed only by a script that reads ``$input``."""
        self.command_lines.append(command_line)
        if len(command_line) > self.max_command_line:
            return b"", CMD_TOO_LONG.encode(), 1
        try:
            argv = shlex.split(command_line, posix=False)
        except ValueError:
            argv = command_line.split()
        if not argv or ntpath.basename(argv[0]).casefold() not in ("powershell", "powershell.exe", "pwsh",
                                                                     "pwsh.exe"):
            prog = argv[0] if argv else ""
            msg = f"'{prog}' is not recognized as an internal or external command,\r\noperable program or batch file.\r\n"
            return b"", msg.encode(), 1
        encoded = None
        for i, arg in enumerate(argv[1:], 1):
            if arg.casefold() in ("-encodedcommand", "-enc", "-e", "-ec") and i + 1 < len(argv):
                encoded = argv[i + 1]
        if encoded is None:
            return b"", b"simulated host: only powershell -EncodedCommand is supported\r\n", 1
        try:
            script = base64.b64decode(encoded, validate=True).decode("utf-16-le")
        except (binascii.Error, UnicodeDecodeError):
            return b"", b"Cannot process the command because the value specified with -EncodedCommand is not properly encoded.\r\n", 1
        res = self.run_script(script, stdin)
        if self.clixml and (res.records or res.warnings or res.stderr):
            err = to_clixml(res.stderr, records=res.records, warnings=res.warnings)
        else:
            err = res.stderr
        return res.stdout.encode("utf-8"), err.encode("utf-8"), res.exit_code

    def run_script(self, script: str, stdin: bytes | Callable[[], bytes] = b"") -> PSResult:
        """Run a decoded script: prelude (``$P``), optionally the stdin prelude (``$S``), then a
        ``# tlsgate:<name>`` template. Handlers get ``$P`` and ``$S`` merged in one dict."""
        m = _PRELUDE_RE.match(script)
        if not m:
            return PSResult("", "simulated host: script does not start with the tlsgate parameter prelude\n", 1)
        try:
            params = json.loads(base64.b64decode(m.group(1)).decode("utf-8"))
        except (ValueError, UnicodeDecodeError) as exc:
            return PSResult("", f"simulated host: parameters are not base64 JSON: {exc}\n", 1)
        template = script[m.end():]
        secret: Any = None
        if template.startswith(win.STDIN_PRELUDE):
            template = template[len(win.STDIN_PRELUDE):]
            raw = stdin() if callable(stdin) else stdin
            try:
                secret = json.loads(base64.b64decode(b"".join(raw.split()), validate=True).decode("utf-8"))
            except (ValueError, UnicodeDecodeError) as exc:
                return PSResult("", f"simulated host: stdin is not base64 JSON: {exc}\n", 1)
        try:
            name = win.template_name(template)
        except ValueError:
            return PSResult("", "simulated host: template does not begin with '# tlsgate:<name>'\n", 1)
        self.calls.append(Invocation(name, params, script, secret))
        if name not in self._handlers:
            return PSResult("", f"simulated host: unknown template {name!r} (register a handler)\n", 1)
        handler, expected = self._handlers[name]
        if expected is not None and template != expected:
            return PSResult("", f"simulated host: template {name!r} differs from the registered text\n", 1)
        if isinstance(secret, dict) and isinstance(params, dict):
            params = {**params, **secret}
        try:
            out = handler(self, params)
        except PSError as exc:
            if exc.error_id is not None:
                return PSResult("", "", exc.exit_code, records=(error_record(exc),), warnings=exc.warnings)
            return PSResult("", str(exc) + "\n", exc.exit_code, warnings=exc.warnings)
        if isinstance(out, PSResult):
            return out
        if isinstance(out, bytes):
            out = out.decode("utf-8")
        return PSResult(out or "", "", 0)

    # -- built-in templates (tlsgate.transports.windows.TEMPLATES) ----------------------------
    @staticmethod
    def _json_b64(obj: Any) -> str:
        return base64.b64encode(json.dumps(obj).encode("utf-8")).decode()

    def _t_file_read(self, _h: Any, p: Any) -> str:
        if self.fs.kind(p["path"]) != "file":
            raise PSError("no such file", win.EXIT_NOT_FOUND)
        return base64.b64encode(self.fs.read(p["path"])).decode()

    def _t_file_stat(self, _h: Any, p: Any) -> str:
        path = p["path"]
        kind = self.fs.kind(path)
        if kind is None:
            return self._json_b64({"exists": False})
        return self._json_b64({
            "exists": True, "is_dir": kind == "dir", "size": self.fs.size(path) if kind == "file" else 0,
            "mtime": self.fs.mtime(path), "private": self.fs.is_private(path) if kind == "file" else False,
        })

    def _t_file_realpath(self, _h: Any, p: Any) -> str:
        # as the template: Get-Item's LinkType / Target, hop by hop (see winfs' NTFS links note)
        path = full_path(p["path"])
        for _ in range(MAX_LINK_HOPS):
            info = self.fs.link(path)
            if info is None:
                return self._json_b64({"path": path})
            path = join_link_target(path, info[1])
        raise PSError("too many levels of links", 1)

    def _t_file_remove(self, _h: Any, p: Any) -> None:
        kind = self.fs.kind(p["path"])
        if kind == "dir":
            raise PSError("is a directory", 1)
        if kind == "file":
            self.fs.remove(p["path"])

    def _t_file_rename(self, _h: Any, p: Any) -> None:
        if self.fs.kind(p["src"]) != "file":
            raise PSError("no such file", win.EXIT_NOT_FOUND)
        private = self.fs.is_private(p["src"])
        self.fs.rename(p["src"], p["dst"])
        self.fs.set_private(p["dst"], private)

    def _t_file_listdir(self, _h: Any, p: Any) -> str:
        if self.fs.kind(p["path"]) != "dir":
            raise PSError("no such directory", win.EXIT_NOT_FOUND)
        return self._json_b64(self.fs.listdir(p["path"]))

    def _t_file_makedirs(self, _h: Any, p: Any) -> None:
        self.fs.makedirs(p["path"])

    def _t_file_write_begin(self, _h: Any, p: Any) -> None:
        drive, parts = split_windows_path(p["tmp"])
        if self.fs.kind(drive + "\\" + "\\".join(parts[:-1])) != "dir":
            raise PSError("no such directory", win.EXIT_NOT_FOUND)
        self.fs.write(p["tmp"], b"")
        self.fs.set_private(p["tmp"], bool(p.get("private")))

    def _t_file_write_chunk(self, _h: Any, p: Any) -> None:
        if self.fs.size(p["tmp"]) != int(p["offset"]):
            raise PSError("chunk offset mismatch", win.EXIT_BAD_OFFSET)
        self.fs.write(p["tmp"], base64.b64decode(p["data"]), append=True)

    def _t_file_write_commit(self, _h: Any, p: Any) -> None:
        data = self.fs.read(p["tmp"])
        if hashlib.sha256(data).hexdigest().casefold() != str(p["sha256"]).casefold():
            self.fs.remove(p["tmp"])
            raise PSError("SHA-256 mismatch after transfer", win.EXIT_HASH_MISMATCH)
        private = bool(p.get("private")) or (self.fs.kind(p["path"]) == "file" and self.fs.is_private(p["path"]))
        self.fs.rename(p["tmp"], p["path"])
        self.fs.set_private(p["path"], private)

    def _t_run_program(self, _h: Any, p: Any) -> PSResult:
        argv = [str(a) for a in p["argv"]]
        stdin = base64.b64decode(p["stdin"]) if p.get("stdin") is not None else None
        prog = self._programs.get(ntpath.basename(argv[0]).casefold())
        if prog is None:
            return PSResult("", f"{argv[0]}: command not found\n", win.EXIT_NOT_RECOGNIZED)
        out = prog(self, argv, stdin, dict(p.get("env") or {}))
        if isinstance(out, PSResult):
            return out
        return PSResult(out or "", "", 0)

    def _t_is_admin(self, _h: Any, _p: Any) -> str:
        return "True" if self.admin else "False"

    def _t_which(self, _h: Any, p: Any) -> str:
        name = str(p["name"]).casefold()
        if name in self._programs:
            return f"C:\\Windows\\System32\\{p['name']}.exe"
        return ""


#: Where powershell.exe wraps an error record's message: the console width of a redirected
#: host (pywinrm's sample below breaks "... or operable program. Check " / "the spelling ...").
CONSOLE_WIDTH = 120


def error_record(exc: PSError) -> str:
    """An uncaught error record as powershell.exe prints it (``$ErrorView = 'NormalView'``,
    Windows PowerShell 5.1): the message wrapped at the console width, the position, the line with
    ``~`` markers, CategoryInfo and FullyQualifiedErrorId, then a line with one space. Shape as in
    pywinrm's own sample of a real host (tests/test_session.py, ``test_decode_clixml_error``)."""
    import textwrap

    line = exc.line or "$sm.CommitChanges()"
    message = "\n".join(textwrap.wrap(str(exc), CONSOLE_WIDTH, break_long_words=False, break_on_hyphens=False,
                                       drop_whitespace=False)) or str(exc)
    return (f"{message}\nAt line:1 char:1\n+ {line}\n+ {'~' * max(1, len(line))}\n"
            f"    + CategoryInfo          : {exc.category}\n"
            f"    + FullyQualifiedErrorId : {exc.error_id}\n \n")


_CLIXML_HEAD = ('#< CLIXML\r\n<Objs Version="1.1.0.1" xmlns="http://schemas.microsoft.com/powershell/2004/04">'
                '<Obj S="progress" RefId="0"><TN RefId="0"><T>System.Management.Automation.PSCustomObject</T>'
                '<T>System.Object</T></TN><MS><I64 N="SourceId">1</I64><PR N="Record"><AV>Preparing modules for '
                'first use.</AV><AI>0</AI><Nil /><PI>-1</PI><PC>-1</PC><T>Completed</T><SR>-1</SR><SD> </SD>'
                "</PR></MS></Obj>")


def to_clixml(stderr: str = "", *, records: Iterable[str] = (), warnings: Iterable[str] = ()) -> str:
    """The error stream of powershell.exe with redirected output (WinRM, SSH), as real PowerShell
    writes it: ``#< CLIXML``, ``<Objs>`` opened at the first record (the progress record of module
    loading), each warning and error record as it happens with one ``<S S="Warning">`` /
    ``<S S="Error">`` per line (CR LF as ``_x000D__x000A_``, XmlConvert escapes), and ``</Objs>`` at
    exit. ``stderr`` is raw text a script writes with ``[Console]::Error``: it bypasses the
    serializer and lands inside the open block (before ``</Objs>``)."""
    from xml.sax.saxutils import escape

    def strings(kind: str, text: str) -> str:
        lines = text.split("\n")
        if text.endswith("\n"):
            lines.pop()
        return "".join(f'<S S="{kind}">{escape(line)}_x000D__x000A_</S>' for line in lines)

    body = "".join(strings("Warning", w) for w in warnings)
    raw = stderr.replace("\r\n", "\n").replace("\n", "\r\n")
    body += raw
    body += "".join(strings("Error", r) for r in records)
    return _CLIXML_HEAD + body + "</Objs>"


def register_sample_programs(host: SimulatedWindowsHost) -> None:
    """A few Windows programs for tests: ``hostname``, ``whoami`` and ``findstr "^"`` (echoes its
    standard input, as the real one does). Usable as a ``winhost_plugins`` entry:
    ``"tlsgate_testing.winhost:register_sample_programs"``."""
    host.register_program("hostname", lambda h, argv, stdin, env: "WIN-TLSGATE\r\n")
    host.register_program("whoami", lambda h, argv, stdin, env: f"win-tlsgate\\{h.user}\r\n")

    def findstr(h: SimulatedWindowsHost, argv: list[str], stdin: bytes | None, env: dict[str, str]) -> PSResult:
        if argv[1:] != ["^"]:
            return PSResult("", "FINDSTR: only the pattern ^ is simulated\r\n", 2)
        return PSResult((stdin or b"").decode("utf-8", "replace"), "", 0)

    host.register_program("findstr", findstr)


def load_plugins(host: SimulatedWindowsHost, specs: Iterable[str]) -> None:
    """Call each ``"package.module:function"`` with ``host`` (how the ssh shim gets handlers)."""
    import importlib

    for spec in specs:
        if not spec.strip():
            continue
        module, _, func = spec.strip().partition(":")
        getattr(importlib.import_module(module), func)(host)


def shim_main(argv: list[str] | None = None) -> int:
    """The ``powershell`` executable of the ssh_windows test host.

    sshd runs the client's command through the user's shell, which finds this shim first on
    PATH. The simulated host works on the real directory named by ``TLSGATE_WINHOST_ROOT``; each
    call is appended to ``<root>/.calls.jsonl``. ``TLSGATE_WINHOST_PLUGINS`` lists registering
    functions (comma-separated ``module:function``).
    """
    argv = sys.argv[1:] if argv is None else argv
    root = os.environ["TLSGATE_WINHOST_ROOT"]
    host = SimulatedWindowsHost(DirectoryFS(root))
    # a stand-in for SysWOW64's powershell.exe says so (see tlsgate.transports.windows.local_powershell_program)
    host.bitness = int(os.environ.get("TLSGATE_WINHOST_BITNESS", "64"))
    load_plugins(host, os.environ.get("TLSGATE_WINHOST_PLUGINS", "").split(","))
    # sshd hands the command to the shell as one string; cmd.exe would see the same line.
    line = "powershell " + " ".join(argv)
    out, err, code = host.run_command_line(line, sys.stdin.buffer.read)
    with open(os.path.join(root, ".calls.jsonl"), "a", encoding="utf-8") as fh:
        for call in host.calls:
            fh.write(json.dumps({"template": call.template, "params": call.params,
                                 "secret_params": call.secret_params, "command_line": line}) + "\n")
    sys.stdout.buffer.write(out)
    sys.stderr.buffer.write(err)
    sys.stdout.flush()
    sys.stderr.flush()
    return code


class LoopbackWindowsConnection(win.WindowsConnection):
    """A :class:`WindowsConnection` that hands each command line straight to a simulated host
    (no network): fast unit tests for drivers' PowerShell templates."""

    def __init__(self, host: SimulatedWindowsHost, *, name: str = "winhost", stdin: bool = True) -> None:
        self.winhost = host
        self.host = name
        self.supports_stdin = stdin  # False: the command-line-only fallback

    def _execute(self, command_line: str, *, timeout: float | None, what: str,
                 stdin: bytes | None = None) -> tuple[int, str, str]:
        out, err, code = self.winhost.run_command_line(command_line, stdin or b"")
        return code, out.decode("utf-8", "replace"), err.decode("utf-8", "replace")
