"""Privilege escalation for the ssh transport (``--sudo``, ``--sudo_password``).

A command a driver marks ``privileged=True`` runs as ``sudo -n -- argv...``: ``-n`` never asks
for a password, so a rule that wants one fails at once with a clear error instead of hanging.
With a password configured, the same ``sudo -n`` is tried first (it never reads standard input);
only when sudo answers that a password is required does the command run again as
``sudo -S -p '' -- argv...`` with the password as the first line of its standard input (never on
argv, no prompt text on stderr). Trying ``-n`` first matters: for a NOPASSWD rule ``sudo -S``
would not read the password, and it would reach the command's own standard input.

``LC_ALL=C`` is set for sudo so its messages can be recognised (sudo passes it on to the
command, whose output then is in the C locale too).
"""

from __future__ import annotations

from collections.abc import Sequence

from ..quoting import sh_join

#: Exit status sudo itself uses for its refusals (the command's own status otherwise).
SUDO_FAILED = 1

_PASSWORD_REQUIRED = ("a password is required", "a terminal is required")
_REFUSED_PASSWORD = ("incorrect password", "no password was provided", "sorry, try again")
_NOT_ALLOWED = ("is not allowed to execute", "is not in the sudoers file", "may not run sudo")


def sudo_argv(argv: Sequence[str], *, with_password: bool = False) -> list[str]:
    """The argv that runs ``argv`` as root through sudo (``--`` ends sudo's own options)."""
    args = [str(a) for a in argv]
    if not args:
        raise ValueError("empty command")
    mode = ["-S", "-p", ""] if with_password else ["-n"]
    return ["sudo", *mode, "--", *args]


def sudo_command_line(argv: Sequence[str], *, with_password: bool = False) -> str:
    """The remote shell text for :func:`sudo_argv` (every word single-quoted)."""
    return "LC_ALL=C " + sh_join(sudo_argv(argv, with_password=with_password))


def list_argv(argv: Sequence[str]) -> list[str]:
    """``sudo -n -l -- argv``: exit 0 (and the full path on stdout) when the rule allows it."""
    return ["sudo", "-n", "-l", "--", *[str(a) for a in argv]]


def _sudo_lines(stderr: str) -> list[str]:
    return [ln.strip().lower() for ln in stderr.splitlines() if ln.strip()]


def classify(exit_code: int, stderr: str) -> str | None:
    """Why sudo itself refused (``"password"``, ``"refused"``, ``"denied"``), or None when the
    command ran (its own exit status and output stand)."""
    if exit_code != SUDO_FAILED:
        return None
    lines = _sudo_lines(stderr)
    sudo_said = [ln for ln in lines if ln.startswith("sudo:") or ln.startswith("sorry, ")]
    if not sudo_said:
        return None
    text = " ".join(sudo_said)
    if any(s in text for s in _NOT_ALLOWED):
        return "denied"
    if any(s in text for s in _REFUSED_PASSWORD):
        return "refused"
    if any(s in text for s in _PASSWORD_REQUIRED):
        return "password"
    return None


def describe(kind: str, argv: Sequence[str], host: str, user: str) -> str:
    """The one-line error for a sudo refusal, naming the command and the fix."""
    shown = " ".join(argv)
    if kind == "password":
        return (f"sudo: a password is required for `{shown}` on {host} "
                "(give --sudo_password or a NOPASSWD rule)")
    if kind == "refused":
        return f"sudo: the password was refused for `{shown}` on {host} (check --sudo_password)"
    return (f"sudo: {user or 'the account'} may not run `{shown}` as root on {host} "
            "(add it to the sudoers rule; `tlsgate tls test` lists what is needed)")
