"""What every Windows transport shares: fixed PowerShell templates and a Connection built on them.

A Windows transport (``winrm_*``, ``ssh_windows``) only has to run one PowerShell command line
and say how long that line may be; :class:`WindowsConnection` turns the :class:`Connection`
interface (run, read/write/stat/remove/rename/listdir/makedirs) into calls of the fixed templates
in :data:`TEMPLATES`. A template is constant text whose first line is ``# tlsgate:<name>``; its
parameters arrive only as data: ``$P``, decoded from one base64 JSON document by the prelude of
:func:`tlsgate.quoting.ps_script`, and ``$S`` (secrets, below), so a path, alias or password is
never parsed as PowerShell.

Secrets and big payloads: stdin, not the command line
---------------------------------------------------
pywinrm runs every command through ``cmd.exe /c`` (``WINRS_SKIP_CMD_SHELL=FALSE``), and Win32-
OpenSSH's default shell is ``cmd.exe`` too, so a command line longer than 8,191 characters fails
with "The command line is too long.". A command line is also the wrong place for a secret: the
Windows host shows it in process listings and in process-creation audit events (4688).

So a template's *public* parameters (paths, names) travel in the script as ``$P`` and its
*secret* parameters (passwords, ``env`` and ``stdin`` of :meth:`WindowsConnection.run`, file
bytes) travel on the command's standard input as a second base64 JSON document, decoded by the
fixed line :data:`STDIN_PRELUDE` into ``$S`` (the route Ansible's Windows connections take, as
recalled, not verified on a Windows host here: ``powershell -EncodedCommand <bootstrap>`` reading
``$input``). WinRM delivers stdin with the Send operation (pywinrm ``send_command_input``, the
command started with ``console_mode_stdin=False``), SSH on the exec channel. We considered the
alternatives:

* chunks on the command line: works everywhere, but puts file bytes (private keys) in every
  powershell.exe command line and needs ~4.7 characters of command line per byte (about 1.4 KB
  per command); kept as the fallback for a transport without stdin (``supports_stdin = False``),
  with the chunk size *measured* by :meth:`WindowsConnection.chunk_capacity`;
* ``open_shell(env_vars=...)``: WinRM only (sshd filters the environment), fixed per shell, so
  one Create/Delete per chunk, and the values still show in the process environment.

Every command line is checked against :attr:`WindowsConnection.max_command_line` before it is
sent, so an over-long script fails here with a clear message instead of on the host.

A file is written as ``file-write-begin`` (create an empty temporary file in the target
directory, restrict its ACL first when the file is private), ``file-write-chunk`` commands
(append up to :data:`STDIN_CHUNK` bytes each, checking the offset so a lost or repeated chunk is
detected) and ``file-write-commit`` (flush, compare the SHA-256 with ours, then atomically
replace the target). Transports with a faster file channel (SFTP) override
:meth:`WindowsConnection._upload` and keep begin/commit, so the hash check and the atomic replace
are the same everywhere.
"""

from __future__ import annotations

import abc
import base64
import hashlib
import json
import ntpath
import os
import re
import time
from collections.abc import Mapping, Sequence
from typing import Any

from ..connection import Connection, temp_name
from ..errors import OperationError
from ..models import CommandResult, FileStat
from ..quoting import encode_params, encode_powershell, ps_script

#: cmd.exe's command-line limit, which every pywinrm command and Win32-OpenSSH's default shell hit.
CMD_EXE_LIMIT = 8191

#: The program and switches of every command; the encoded script follows.
POWERSHELL_PREFIX = "powershell -NoProfile -NonInteractive -EncodedCommand "

#: Decodes the secret parameters from standard input into ``$S`` (placed after ``$P``'s prelude).
STDIN_PRELUDE = (
    "$S = [Text.Encoding]::UTF8.GetString([Convert]::FromBase64String((@($input) -join ''))) | ConvertFrom-Json; "
)

#: Raw bytes per file-write-chunk command when the bytes travel on stdin.
STDIN_CHUNK = 256 * 1024

# Exit codes the templates use on purpose (anything else is PowerShell's own failure).
EXIT_NOT_FOUND = 2
EXIT_HASH_MISMATCH = 3
EXIT_BAD_OFFSET = 4
EXIT_NOT_RECOGNIZED = 127


def ps_template(name: str, body: str) -> str:
    """A fixed PowerShell template: the line ``# tlsgate:<name>`` (what the host and the simulated
    host dispatch on), then ``body``. Parameters never go into ``body``: they arrive as ``$P`` /
    ``$S`` (see the module docstring).

    What is sent is compact: comment lines, indentation and blank lines are dropped (every
    character costs 2.7 on the ``-EncodedCommand`` line, whose limit is cmd.exe's 8,191), so the
    comments in the source are for readers only. ``body`` must therefore hold no here-strings or
    multi-line string literals (the grammar test of the templates would show the damage)."""
    lines = [line.strip() for line in body.splitlines()]
    kept = [line for line in lines if line and not line.startswith("#")]
    return f"# tlsgate:{name}\n" + "\n".join(kept) + "\n"


_t = ps_template

#: ``Out-Json $o``: write ``$o`` as base64 of UTF-8 JSON. Output holding names goes out this way:
#: the console code page (437 over WinRM) would mangle anything outside ASCII.
OUT_JSON = (
    "function Out-Json($o) { [Console]::Out.Write([Convert]::ToBase64String("
    "[Text.Encoding]::UTF8.GetBytes((ConvertTo-Json -InputObject $o -Compress -Depth 6)))) }\n"
)
_OUT_JSON = OUT_JSON

_PRIVATE_ACL = """
function New-PrivateAcl {
  # SYSTEM, Administrators and the connecting user only; no inherited entries.
  $acl = New-Object Security.AccessControl.FileSecurity
  $acl.SetAccessRuleProtection($true, $false)
  $me = [Security.Principal.WindowsIdentity]::GetCurrent().User.Value
  foreach ($sid in @('S-1-5-18', 'S-1-5-32-544', $me)) {
    $id = New-Object Security.Principal.SecurityIdentifier($sid)
    $acl.AddAccessRule((New-Object Security.AccessControl.FileSystemAccessRule($id, 'FullControl', 'Allow')))
  }
  return $acl
}
"""

#: Every template the Windows transports run, by name. Drivers add their own (e.g. IIS) and call
#: them with ``connection.run_powershell(TEXT, params)``; the first line must be ``# tlsgate:<name>``.
TEMPLATES: dict[str, str] = {
    "file-read": _t("file-read", """
if (-not [IO.File]::Exists($P.path)) { [Console]::Error.WriteLine('no such file'); exit 2 }
[Console]::Out.Write([Convert]::ToBase64String([IO.File]::ReadAllBytes($P.path)))
"""),
    "file-stat": _t("file-stat", _OUT_JSON + """
$i = Get-Item -LiteralPath $P.path -Force -ErrorAction SilentlyContinue
if ($null -eq $i) { Out-Json @{ exists = $false }; exit 0 }
$dir = [bool]($i.Attributes -band [IO.FileAttributes]::Directory)
$size = 0; if (-not $dir) { $size = $i.Length }
$private = (Get-Acl -LiteralPath $P.path).AreAccessRulesProtected
$mtime = ($i.LastWriteTimeUtc - [DateTime]'1970-01-01').TotalSeconds
Out-Json @{ exists = $true; is_dir = $dir; size = $size; mtime = $mtime; private = $private }
"""),
    # The file a path finally names through NTFS links, so that a write goes to the target and
    # the link stays a link ([IO.File]::Replace / Move on the link's path would replace the link
    # itself). Microsoft docs, about_FileSystem_Provider: Get-Item's FileInfo / DirectoryInfo
    # carry the extended properties LinkType (on NTFS: HardLink, SymbolicLink, Junction) and
    # Target (the link's target as stored: absolute, or relative to the link's directory; an
    # array in Windows PowerShell 5.1, hence @(...)[0]). A hard link is the file itself. A
    # Junction or symbolic-link *directory* on the way is followed by Windows itself.
    "file-realpath": _t("file-realpath", _OUT_JSON + """
$p = [IO.Path]::GetFullPath($P.path)
$hops = 0
while ($true) {
  $i = Get-Item -LiteralPath $p -Force -ErrorAction SilentlyContinue
  if ($null -eq $i -or ($i.LinkType -ne 'SymbolicLink' -and $i.LinkType -ne 'Junction')) { break }
  $t = @($i.Target)[0]
  if (-not $t) { break }
  if ($t.StartsWith('\\?\')) { $t = $t.Substring(4) }
  if (-not [IO.Path]::IsPathRooted($t)) { $t = [IO.Path]::Combine([IO.Path]::GetDirectoryName($p), $t) }
  $p = [IO.Path]::GetFullPath($t)
  $hops += 1
  if ($hops -ge 32) { [Console]::Error.WriteLine('too many levels of links'); exit 1 }
}
Out-Json @{ path = $p }
"""),
    "file-remove": _t("file-remove", """
if ([IO.Directory]::Exists($P.path)) { [Console]::Error.WriteLine('is a directory'); exit 1 }
if ([IO.File]::Exists($P.path)) { [IO.File]::Delete($P.path) }
"""),
    "file-rename": _t("file-rename", """
if (-not [IO.File]::Exists($P.src)) { [Console]::Error.WriteLine('no such file'); exit 2 }
# File.Replace is atomic on NTFS (ReplaceFile); Move-Item -Force on Windows PowerShell 5.1
# deletes the target first, which would leave a window with no file at all.
if ([IO.File]::Exists($P.dst)) { [IO.File]::Replace($P.src, $P.dst, [NullString]::Value, $true) } else {
  [IO.File]::Move($P.src, $P.dst)
}
"""),
    "file-listdir": _t("file-listdir", _OUT_JSON + """
if (-not [IO.Directory]::Exists($P.path)) { [Console]::Error.WriteLine('no such directory'); exit 2 }
$names = @(Get-ChildItem -LiteralPath $P.path -Force | ForEach-Object { $_.Name })
Out-Json $names
"""),
    "file-makedirs": _t("file-makedirs", """
[void][IO.Directory]::CreateDirectory($P.path)
"""),
    "file-write-begin": _t("file-write-begin", _PRIVATE_ACL + """
$d = [IO.Path]::GetDirectoryName($P.tmp)
if (-not [IO.Directory]::Exists($d)) { [Console]::Error.WriteLine('no such directory'); exit 2 }
$f = [IO.File]::Create($P.tmp); $f.Dispose()
# The ACL is restricted while the file is still empty, before any secret byte reaches it.
if ($P.private) { Set-Acl -LiteralPath $P.tmp -AclObject (New-PrivateAcl) }
"""),
    "file-write-chunk": _t("file-write-chunk", """
$d = $P.data; if ($null -ne $S) { $d = $S.data }
$b = [Convert]::FromBase64String($d)
$f = [IO.File]::Open($P.tmp, 'Append', 'Write')
try {
  if ($f.Position -ne [long]$P.offset) { [Console]::Error.WriteLine('chunk offset mismatch'); exit 4 }
  $f.Write($b, 0, $b.Length)
} finally { $f.Dispose() }
"""),
    "file-write-commit": _t("file-write-commit", _PRIVATE_ACL + """
$f = [IO.File]::Open($P.tmp, 'Open', 'ReadWrite')
try { $f.Flush($true) } finally { $f.Dispose() }
$h = (Get-FileHash -LiteralPath $P.tmp -Algorithm SHA256).Hash
if ($h -ne $P.sha256) {
  Remove-Item -LiteralPath $P.tmp -Force
  [Console]::Error.WriteLine('SHA-256 mismatch after transfer'); exit 3
}
if ([IO.File]::Exists($P.path)) {
  # ReplaceFile keeps the replaced file's ACL: restrict it first for a private file.
  if ($P.private) { Set-Acl -LiteralPath $P.path -AclObject (New-PrivateAcl) }
  [IO.File]::Replace($P.tmp, $P.path, [NullString]::Value, $true)
} else { [IO.File]::Move($P.tmp, $P.path) }
"""),
    # Arguments reach the program as an array splatted to the call operator. Windows PowerShell
    # 5.1 does not escape embedded double quotes for native programs; 7.3+ does with 'Standard'.
    "run-program": _t("run-program", """
$PSNativeCommandArgumentPassing = 'Standard'
# UTF-8 both ways; setting the console encoding fails where there is no console, which is fine.
try { [Console]::OutputEncoding = New-Object Text.UTF8Encoding($false) } catch { }
$OutputEncoding = New-Object Text.UTF8Encoding($false)
$X = $P; if ($null -ne $S) { $X = $S }  # env and stdin come on stdin when the transport has it
if ($null -ne $X.env) {
  foreach ($kv in $X.env.PSObject.Properties) { [Environment]::SetEnvironmentVariable($kv.Name, [string]$kv.Value, 'Process') }
}
$a = @($P.argv); $exe = $a[0]; $rest = @()
if ($a.Count -gt 1) { $rest = @($a[1..($a.Count - 1)]) }
if (-not (Get-Command -Name $exe -ErrorAction SilentlyContinue)) {
  [Console]::Error.WriteLine($exe + ': command not found'); exit 127
}
$ErrorActionPreference = 'Continue'
if ($null -ne $X.stdin) {
  [Text.Encoding]::UTF8.GetString([Convert]::FromBase64String($X.stdin)) | & $exe @rest
} else { & $exe @rest }
exit $LASTEXITCODE
"""),
    "is-admin": _t("is-admin", """
$p = New-Object Security.Principal.WindowsPrincipal([Security.Principal.WindowsIdentity]::GetCurrent())
[Console]::Out.Write($p.IsInRole([Security.Principal.WindowsBuiltInRole]::Administrator))
"""),
    "which": _t("which", """
$c = Get-Command -Name $P.name -CommandType Application -ErrorAction SilentlyContinue | Select-Object -First 1
if ($c) { [Console]::Out.Write($c.Source) }
"""),
}

_NAME_RE = re.compile(r"\A# tlsgate:([A-Za-z0-9][A-Za-z0-9._-]*)\n")


def template_name(template: str) -> str:
    """The ``<name>`` of a template's ``# tlsgate:<name>`` first line; ValueError without one."""
    m = _NAME_RE.match(template)
    if not m:
        raise ValueError("a tlsgate PowerShell template must begin with a line '# tlsgate:<name>'")
    return m.group(1)


def powershell_command_line(script: str) -> str:
    """The command line that runs ``script``: ``powershell ... -EncodedCommand <base64 UTF-16LE>``."""
    return POWERSHELL_PREFIX + encode_powershell(script)


_CLIXML_MARKER = "#< CLIXML"
#: One top-level element of a CLIXML stream (a serialized object or a stream string). PowerShell
#: writes ``<Objs ...>``, then each record as it happens, then ``</Objs>`` at exit; text a script
#: writes straight to ``[Console]::Error`` lands between records, even inside the open ``<Objs>``.
_CLIXML_ITEM = re.compile(r"<Obj\b[^>]*/>|<Obj\b.*?</Obj>|<S\b[^>]*/>|<S\b[^>]*>.*?</S>", re.DOTALL)
_CLIXML_FRAME = re.compile(r"<Objs\b[^>]*>|</Objs>")
_CLIXML_ESCAPE = re.compile(r"_x([0-9A-Fa-f]{4})_")
#: Stream names whose strings are text for the operator (progress and verbose records are not).
_CLIXML_TEXT_STREAMS = {"error": "", "warning": "WARNING: "}


def _clixml_unescape(text: str) -> str:
    """XmlConvert's ``_xHHHH_`` escapes (``_x000D__x000A_`` is CR LF) back to characters."""
    return _CLIXML_ESCAPE.sub(lambda m: chr(int(m.group(1), 16)), text).replace("\r\n", "\n")


def _clixml_strings(fragment: str) -> list[tuple[str, str]]:
    """The operator-facing text of one CLIXML element, parsed as XML, as (stream, text) pairs. A
    fragment that is not well-formed XML is returned as raw text (never dropped)."""
    import xml.etree.ElementTree as ET  # our own fragment; no DTD reaches the parser (below)

    if "<!" in fragment:  # no DOCTYPE / entity declarations reach the parser
        return [("raw", fragment)]
    wrapped = f'<Objs xmlns="http://schemas.microsoft.com/powershell/2004/04">{fragment}</Objs>'
    try:
        root = ET.fromstring(wrapped)  # noqa: S314
    except ET.ParseError:
        return [("raw", fragment)]
    out = []
    for el in root.iter():
        if el.tag.rsplit("}", 1)[-1] != "S":
            continue
        prefix = _CLIXML_TEXT_STREAMS.get(str(el.get("S", "")).lower())
        if prefix is None:
            continue
        text = _clixml_unescape(el.text or "")
        out.append((str(el.get("S")).lower(), prefix + text if prefix and text.strip() else text))
    return out


def clean_clixml(stderr: str) -> str:
    """Plain text from PowerShell's ``#< CLIXML`` error stream.

    powershell.exe with redirected output (WinRM, SSH) serializes its error, warning, verbose
    and progress streams as CLIXML. The text kept: every ``<S S="Error">`` string (an error record
    spans several, one per line, with ``_x000D__x000A_`` for CR LF), every ``<S S="Warning">``
    string (prefixed ``WARNING: ``), and raw text around or between the elements (what a script
    writes with ``[Console]::Error``), in the order written. Progress and other records are
    dropped. pywinrm's ``Session._clean_error_msg`` parses the whole block as one XML document,
    which fails (and returns everything) as soon as raw text sits inside it, and keeps errors only;
    here each element is cut out first and parsed as XML on its own."""
    if _CLIXML_MARKER not in stderr:
        return stderr
    parts: list[tuple[str, str]] = []
    rest = stderr
    while _CLIXML_MARKER in rest:
        head, _, rest = rest.partition(_CLIXML_MARKER)
        parts.append(("raw", head))
        rest = rest.lstrip("\r\n")
        pos = 0
        for m in _CLIXML_ITEM.finditer(rest):
            if _CLIXML_MARKER in rest[pos:m.start()]:
                break  # a second CLIXML stream begins: the outer loop takes it
            parts.append(("raw", _CLIXML_FRAME.sub("", rest[pos:m.start()])))
            parts.extend(_clixml_strings(m.group(0)))
            pos = m.end()
        tail = rest[pos:]
        nxt = tail.find(_CLIXML_MARKER)
        parts.append(("raw", _CLIXML_FRAME.sub("", tail if nxt < 0 else tail[:nxt])))
        rest = "" if nxt < 0 else tail[nxt:]
    parts.append(("raw", rest))
    # An error record begins on a line of its own, after a blank line when other text came first,
    # so that error_detail can tell the record's message from raw text before it.
    out: list[str] = []
    prev = ""
    for kind, piece in parts:
        if not piece:
            continue
        if kind == "error" and prev not in ("", "error"):
            joined = "".join(out)
            out.append("\n" if joined.endswith("\n") else "\n\n")
        out.append(piece)
        prev = kind if piece.strip() or kind == "error" else prev
    text = "".join(out).replace("\r\n", "\n")
    lines = [line.rstrip() for line in text.split("\n")]
    text = "\n".join(lines).strip("\n")
    return text + "\n" if text.strip() else ""


_RECORD_POSITION = re.compile(r"^(At line:\d+ char:\d+|At .+:\d+ char:\d+)$")
_RECORD_ID = re.compile(r"^\s*\+ FullyQualifiedErrorId\s*:\s*(.+?)\s*$")


def error_detail(stderr: str, exit_code: int | None = None) -> str:
    """One line that says why a PowerShell command failed, from its (CLIXML-cleaned) stderr.

    A PowerShell error record as powershell.exe prints it is the message (wrapped at the console
    width), ``At line:N char:M``, the offending line with ``+ ~~~`` markers, ``+ CategoryInfo`` and
    ``+ FullyQualifiedErrorId``; its last line says nothing useful. For the last record this
    returns ``<message> (<FullyQualifiedErrorId>)``; for plain text (``[Console]::Error``) its
    last line; for nothing at all, the exit status."""
    lines = [line for line in stderr.replace("\r\n", "\n").split("\n")]
    ids = [i for i, line in enumerate(lines) if _RECORD_ID.match(line)]
    if ids:
        end = ids[-1]
        error_id = _RECORD_ID.match(lines[end]).group(1)  # type: ignore[union-attr]
        start = end
        while start > 0 and (lines[start - 1].startswith((" ", "+")) or _RECORD_POSITION.match(lines[start - 1])):
            start -= 1
        # the message: the lines before the record's position, back to the previous record or warning
        msg_end = start
        msg_start = msg_end
        while msg_start > 0:
            prev = lines[msg_start - 1]
            if not prev.strip() or _RECORD_ID.match(prev) or prev.startswith("WARNING: "):
                break
            msg_start -= 1
        message = " ".join(part.strip() for part in lines[msg_start:msg_end] if part.strip())
        # a Write-Error record from a script prints "<script> : <message>"; keep the message
        return f"{message or 'PowerShell error'} ({error_id})"
    texts = [line.strip() for line in lines if line.strip() and not line.startswith("WARNING: ")]
    if texts:
        return texts[-1]
    warnings = [line.strip() for line in lines if line.strip()]
    if warnings:
        return warnings[-1]
    return f"exit status {exit_code}" if exit_code is not None else "no error output"


def is_absolute_windows_path(path: str) -> bool:
    """``C:\\x`` or ``C:/x`` (drive) or ``\\\\server\\share\\x`` (UNC)."""
    drive, rest = ntpath.splitdrive(path)
    return bool(drive) and (drive.startswith(("\\\\", "//")) or rest[:1] in ("\\", "/"))


class WindowsConnection(Connection):
    """A :class:`Connection` to a Windows host, built on :meth:`run_powershell`.

    Subclasses implement :meth:`_execute` (run one command line, return exit code, stdout and
    stderr as text) and may lower :attr:`max_command_line` or override :meth:`_upload`.
    """

    platform = "windows"
    #: Longest command line the transport may send; None when there is no limit.
    max_command_line: int | None = CMD_EXE_LIMIT
    #: Whether :meth:`_execute` can feed standard input (then secrets and file bytes use it).
    supports_stdin: bool = True

    # -- what a transport provides ------------------------------------------------------------
    @abc.abstractmethod
    def _execute(self, command_line: str, *, timeout: float | None, what: str,
                 stdin: bytes | None = None) -> tuple[int, str, str]:
        """Run ``command_line`` on the host, feeding ``stdin`` (then end of input) when given;
        return (exit code, stdout, stderr)."""

    def command_line(self, script: str) -> str:
        return powershell_command_line(script)

    # -- PowerShell ---------------------------------------------------------------------------
    def run_powershell(
        self,
        template: str,
        params: Mapping[str, Any] | None = None,
        *,
        timeout: float | None = 120,
        secret_params: Mapping[str, Any] | None = None,
    ) -> CommandResult:
        """Run a fixed template (first line ``# tlsgate:<name>``) with ``params`` as ``$P``.

        ``secret_params`` (passwords, key material) reach the template as ``$S`` through standard
        input, never on the command line; a transport without stdin refuses them."""
        name = template_name(template)
        stdin = None
        script = ps_script(template, params)
        if secret_params is not None:
            if not self.supports_stdin:
                raise OperationError(f"{self.host}: this transport cannot pass secret parameters", host=self.host)
            script = ps_script(STDIN_PRELUDE + template, params)
            stdin = encode_params(secret_params).encode() + b"\r\n"
        line = self.command_line(script)
        if self.max_command_line is not None and len(line) > self.max_command_line:
            raise OperationError(
                f"{self.host}: PowerShell template {name!r} with these parameters needs a "
                f"{len(line)}-character command line; the limit is {self.max_command_line} (cmd.exe)",
                host=self.host,
            )
        code, out, err = self._execute(line, timeout=timeout, what=name, stdin=stdin)
        # argv names the template, never the parameters (they may hold secrets).
        return CommandResult(("powershell", name), code, out, clean_clixml(err))

    def call(self, name: str, params: Mapping[str, Any] | None = None, *, path: str = "",
             timeout: float | None = 120) -> CommandResult:
        """Run the built-in template ``name``; a failure raises OperationError naming ``path``."""
        res = self.run_powershell(TEMPLATES[name], params, timeout=timeout)
        if res.ok:
            return res
        detail = error_detail(res.stderr, res.exit_code)
        where = f"{path}: " if path else ""
        raise OperationError(f"{self.host}: {where}{name} failed: {detail}", host=self.host)

    # -- commands -----------------------------------------------------------------------------
    def run(
        self,
        argv: Sequence[str],
        *,
        stdin: bytes | None = None,
        timeout: float | None = 120,
        env: Mapping[str, str] | None = None,
        check: bool = False,
        privileged: bool = False,  # Windows: an Administrators login already has the rights
    ) -> CommandResult:
        argv = [str(a) for a in argv]
        if not argv:
            raise ValueError("empty command")
        params: dict[str, Any] = {"argv": argv}
        hidden: dict[str, Any] = {}
        if stdin is not None:
            hidden["stdin"] = base64.b64encode(stdin).decode()
        if env:
            hidden["env"] = dict(env)
        if hidden and self.supports_stdin:
            res = self.run_powershell(TEMPLATES["run-program"], params, timeout=timeout, secret_params=hidden)
        else:  # fallback: on the command line (a transport without stdin)
            res = self.run_powershell(TEMPLATES["run-program"], {**params, **hidden}, timeout=timeout)
        result = CommandResult(tuple(argv), res.exit_code, res.stdout, res.stderr)
        return self.check(result) if check else result

    def which(self, program: str) -> str | None:
        res = self.run_powershell(TEMPLATES["which"], {"name": program})
        out = res.stdout.strip()
        return out.splitlines()[0] if res.ok and out else None

    def is_admin(self) -> bool:
        res = self.run_powershell(TEMPLATES["is-admin"])
        return res.ok and res.stdout.strip().lower() == "true"

    # -- files --------------------------------------------------------------------------------
    def _abs(self, path: str) -> str:
        if not is_absolute_windows_path(path):
            raise OperationError(f"{self.host}: {path!r} is not an absolute Windows path", host=self.host)
        return path

    def read_file(self, path: str) -> bytes:
        res = self.run_powershell(TEMPLATES["file-read"], {"path": self._abs(path)})
        if res.exit_code == EXIT_NOT_FOUND:
            raise OperationError(f"{self.host}: {path}: no such file", host=self.host)
        if not res.ok:
            self.call("file-read", {"path": path}, path=path)  # raises with the reason
        return base64.b64decode(res.stdout.strip())

    def stat(self, path: str) -> FileStat | None:
        res = self.call("file-stat", {"path": self._abs(path)}, path=path)
        info = json.loads(base64.b64decode(res.stdout.strip()).decode("utf-8"))
        if not info.get("exists"):
            return None
        is_dir = bool(info.get("is_dir"))
        mode = 0o755 if is_dir else (0o600 if info.get("private") else 0o644)
        return FileStat(size=int(info.get("size") or 0), mode=mode, mtime=float(info.get("mtime") or 0),
                        is_dir=is_dir)

    def realpath(self, path: str) -> str:
        """The file ``path`` finally names through NTFS symbolic links and junctions (the
        ``file-realpath`` template): writes and restores go there, so a link stays a link."""
        res = self.call("file-realpath", {"path": self._abs(path)}, path=path)
        info = json.loads(base64.b64decode(res.stdout.strip()).decode("utf-8"))
        found = info.get("path") if isinstance(info, dict) else None
        return found if isinstance(found, str) and is_absolute_windows_path(found) else path

    def remove(self, path: str) -> None:
        self.call("file-remove", {"path": self._abs(path)}, path=path)

    def rename(self, src: str, dst: str) -> None:
        res = self.run_powershell(TEMPLATES["file-rename"], {"src": self._abs(src), "dst": self._abs(dst)})
        if res.exit_code == EXIT_NOT_FOUND:
            raise OperationError(f"{self.host}: {src}: no such file", host=self.host)
        if not res.ok:
            self.call("file-rename", {"src": src, "dst": dst}, path=src)

    def listdir(self, path: str) -> list[str]:
        res = self.run_powershell(TEMPLATES["file-listdir"], {"path": self._abs(path)})
        if res.exit_code == EXIT_NOT_FOUND:
            raise FileNotFoundError(f"{self.host}: {path}: no such directory")
        if not res.ok:
            self.call("file-listdir", {"path": path}, path=path)
        names = json.loads(base64.b64decode(res.stdout.strip()).decode("utf-8")) if res.stdout.strip() else []
        if isinstance(names, str):  # a one-element array may come back as a scalar
            names = [names]
        return sorted(names or [])

    def makedirs(self, path: str, *, mode: int = 0o755) -> None:
        self.call("file-makedirs", {"path": self._abs(path)}, path=path)

    def write_file(self, path: str, data: bytes, *, mode: int = 0o644) -> None:
        """Atomic write: temp file in the same directory, hash check, then File.Replace/Move.

        ``mode`` without group/other bits (0600, 0400) makes the file private: its ACL is
        restricted to SYSTEM, Administrators and the connecting user before any byte is written.
        """
        self._abs(path)
        private = not (mode & 0o077)
        tmp = ntpath.join(ntpath.dirname(path), temp_name())
        res = self.run_powershell(TEMPLATES["file-write-begin"], {"tmp": tmp, "private": private})
        if res.exit_code == EXIT_NOT_FOUND:
            raise OperationError(f"{self.host}: {ntpath.dirname(path)}: no such directory", host=self.host)
        if not res.ok:
            self.call("file-write-begin", {"tmp": tmp, "private": private}, path=path)
        try:
            self._upload(tmp, data)
            self.call(
                "file-write-commit",
                {"tmp": tmp, "path": path, "sha256": hashlib.sha256(data).hexdigest(), "private": private},
                path=path,
            )
        except BaseException:
            try:
                self.run_powershell(TEMPLATES["file-remove"], {"path": tmp})
            except Exception:  # noqa: BLE001, S110 - the original error matters more
                pass
            raise

    def _upload(self, tmp: str, data: bytes) -> None:
        """Append ``data`` to the (empty) temporary file ``tmp``: chunks on stdin, or (without
        stdin) chunks sized to fit the command line."""
        size = STDIN_CHUNK if self.supports_stdin else self.chunk_capacity(tmp)
        for offset in range(0, len(data), size):
            chunk = base64.b64encode(data[offset:offset + size]).decode()
            if self.supports_stdin:
                res = self.run_powershell(TEMPLATES["file-write-chunk"], {"tmp": tmp, "offset": offset},
                                          secret_params={"data": chunk})
            else:
                res = self.run_powershell(TEMPLATES["file-write-chunk"], {"tmp": tmp, "offset": offset, "data": chunk})
            if not res.ok:
                detail = error_detail(res.stderr, res.exit_code)
                raise OperationError(f"{self.host}: {tmp}: file-write-chunk failed: {detail}", host=self.host)

    def chunk_capacity(self, tmp: str) -> int:
        """The largest number of raw bytes one ``file-write-chunk`` command can carry for ``tmp``."""
        if self.max_command_line is None:
            return 1 << 20

        def fits(n: int) -> bool:
            params = {"tmp": tmp, "offset": 1 << 40, "data": base64.b64encode(bytes(n)).decode()}
            line = self.command_line(ps_script(TEMPLATES["file-write-chunk"], params))
            return len(line) <= self.max_command_line  # type: ignore[operator]

        lo, hi = 0, self.max_command_line
        while lo < hi:  # largest n with fits(n)
            mid = (lo + hi + 1) // 2
            if fits(mid):
                lo = mid
            else:
                hi = mid - 1
        if lo < 64:
            raise OperationError(f"{self.host}: path too long to transfer within the command-line limit: {tmp}")
        return lo


def deadline_passed(start: float, timeout: float | None) -> bool:
    return timeout is not None and time.monotonic() - start > timeout


# -- PowerShell on the gateway itself ---------------------------------------------------------------
#: CreateProcess' command-line limit (the local runner starts powershell.exe without cmd.exe).
CREATE_PROCESS_LIMIT = 32767


def local_powershell_program(environ: Mapping[str, str] | None = None) -> str:
    """The Windows PowerShell a Windows gateway runs templates with.

    A 32-bit Python on 64-bit Windows runs under WOW64, where ``powershell`` resolves to
    ``%windir%\\SysWOW64\\WindowsPowerShell\\v1.0\\powershell.exe``; 32-bit PowerShell cannot load
    IIS' 64-bit WebAdministration / Microsoft.Web.Administration COM classes ("80040154 Class not
    registered"). A WOW64 process sees ``PROCESSOR_ARCHITEW6432`` (the native architecture) in its
    environment and reaches the native System32 through the ``Sysnative`` alias (Microsoft docs:
    "WOW64 Implementation Details" and "File System Redirector")."""
    env = os.environ if environ is None else environ
    if env.get("PROCESSOR_ARCHITEW6432"):
        windir = env.get("windir") or env.get("WINDIR") or env.get("SystemRoot") or "C:\\Windows"
        return os.path.join(windir, "Sysnative", "WindowsPowerShell", "v1.0", "powershell.exe")
    return "powershell"


class LocalPowerShell(WindowsConnection):
    """Runs each template with the gateway's own ``powershell.exe`` (a Windows gateway).

    The command line is started directly (CreateProcess, no cmd.exe, hence
    :data:`CREATE_PROCESS_LIMIT`); secrets travel on standard input like over WinRM. Only
    :meth:`run_powershell` is meant to be used: a ``local`` connection does files with the OS."""

    max_command_line = CREATE_PROCESS_LIMIT

    def __init__(self, *, program: str | None = None, host: str = "localhost") -> None:
        self.program = program or local_powershell_program()
        self.host = host

    def _execute(self, command_line: str, *, timeout: float | None, what: str,
                 stdin: bytes | None = None) -> tuple[int, str, str]:
        import subprocess

        if not command_line.startswith(POWERSHELL_PREFIX):
            raise OperationError(f"{self.host}: unexpected PowerShell command line for {what}", host=self.host)
        argv = [self.program, *POWERSHELL_PREFIX.split()[1:], command_line[len(POWERSHELL_PREFIX):]]
        try:
            proc = subprocess.run(argv, input=stdin or b"", capture_output=True, timeout=timeout, check=False)
        except FileNotFoundError:
            raise OperationError(f"{self.host}: {self.program} not found on the gateway", host=self.host) from None
        except subprocess.TimeoutExpired:
            raise OperationError(f"{self.host}: {what} did not finish within {timeout:g} s", host=self.host) from None
        return proc.returncode, proc.stdout.decode("utf-8", "replace"), proc.stderr.decode("utf-8", "replace")

    def close(self) -> None:
        """Nothing to release: each template is its own process."""
