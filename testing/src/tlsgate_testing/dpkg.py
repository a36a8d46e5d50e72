"""The real dpkg database of installed packages, relocated with a throw-away copy of their /etc
trees, so that ``dpkg -S`` attributes the copy's files to the package as it does the originals.

The stock-layout tests copy ``/etc/apache2`` (or ``/etc/nginx``) into a private root; the copy's
``sites-available/default-ssl.conf`` is the package's conffile there only if dpkg says so. This
builds a private admin directory from the package's own records (``status`` stanza,
``info/<pkg>.list`` and ``.conffiles``, read from ``/var/lib/dpkg``) with every path under
``prefix`` rewritten into the copy; ``DPKG_ADMINDIR`` (dpkg 1.20+) makes dpkg and dpkg-query use
it. Set it in the environment of the process that runs ``dpkg -S``: the ``tlsgate`` subprocess
locally, the sshd session (``SetEnv``) over ssh.
"""

from __future__ import annotations

from pathlib import Path

REAL_ADMINDIR = Path("/var/lib/dpkg")


def relocated_admindir(dest: Path, packages: dict[str, tuple[str, Path]]) -> Path:
    """A dpkg admin directory at ``dest`` holding ``packages`` (name -> (prefix, copy)): each
    installed package's records with ``prefix`` (``/etc/apache2``) rewritten to ``copy``."""
    (dest / "info").mkdir(parents=True)
    (dest / "updates").mkdir()
    (dest / "available").touch()
    stanzas = (REAL_ADMINDIR / "status").read_text().split("\n\n")
    out = []
    for name, (prefix, copy) in packages.items():
        found = [s for s in stanzas if s.startswith(f"Package: {name}\n")]
        if not found:
            raise RuntimeError(f"dpkg does not list {name} as installed")
        out.append(found[0].replace(f"{prefix}/", f"{copy}/"))
        for suffix in ("list", "conffiles"):
            src = REAL_ADMINDIR / "info" / f"{name}.{suffix}"
            if src.exists():
                lines = src.read_text().splitlines()
                moved = [f"{copy}{line[len(prefix):]}" if line.startswith(prefix) else line for line in lines]
                (dest / "info" / f"{name}.{suffix}").write_text("\n".join(moved) + "\n")
    (dest / "status").write_text("\n\n".join(s.strip("\n") for s in out) + "\n")
    dest.chmod(0o755)
    return dest
