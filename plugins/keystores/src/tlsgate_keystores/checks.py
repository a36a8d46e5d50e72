"""``validate``: what ``tls add`` can check without connecting anywhere.

Every endpoint: paths are absolute for the endpoint's platform. Local endpoints (the file is on
the gateway): the file exists, p12/jks open with the store password, a PEM file parses (and its
encrypted key opens with ``--key_password``), scripts exist and are executable.
"""

from __future__ import annotations

import ntpath
import os
import posixpath

from tlsgate.plugin import Endpoint, Problem, reveal

from .errors import KeystoreError

WINDOWS_CONNECTIONS = ("ssh_windows", "winrm_http", "winrm_https", "winrm_https_insecure")


def validate_endpoint(endpoint: Endpoint) -> list[Problem]:
    opts = endpoint.options
    ctype = endpoint.connection.type
    if ctype == "local":
        isabs = os.path.isabs
    else:
        isabs = ntpath.isabs if ctype in WINDOWS_CONNECTIONS else posixpath.isabs
    problems = [
        Problem("must be an absolute path", option=f"--{name}")
        for name in ("path", "key_path", "install_script", "restart_script")
        if getattr(opts, name, None) and not isabs(getattr(opts, name))
    ]
    if problems or ctype != "local":
        return problems
    return _local_problems(endpoint)


def _local_problems(endpoint: Endpoint) -> list[Problem]:
    opts = endpoint.options
    problems = []
    for name in ("install_script", "restart_script"):
        script = getattr(opts, name, None)
        if script and not os.path.isfile(script):
            problems.append(Problem(f"{script}: no such file (add the script to the host first)", option=f"--{name}"))
        elif script and os.name != "nt" and not os.access(script, os.X_OK):
            problems.append(Problem(f"{script}: is not executable", option=f"--{name}"))
    key_path = getattr(opts, "key_path", None)
    if key_path and not os.path.isfile(key_path) and not os.path.isdir(os.path.dirname(key_path)):
        problems.append(Problem(f"{key_path}: neither the file nor its directory exists", option="--key_path"))
    if not os.path.isfile(opts.path):
        what = "is a directory" if os.path.isdir(opts.path) else "no such file (the file must already exist)"
        return [Problem(f"{opts.path}: {what}", option="--path"), *problems]
    try:
        with open(opts.path, "rb") as fh:
            data = fh.read()
    except OSError as exc:
        return [Problem(f"{opts.path}: cannot read: {exc.strerror}", option="--path"), *problems]
    try:
        _open(endpoint, data)
    except KeystoreError as exc:
        problems.append(Problem(f"{opts.path}: {exc}", option=exc.option))
    return problems


def _open(endpoint: Endpoint, data: bytes) -> None:
    opts = endpoint.options
    if endpoint.type == "p12":
        from . import p12_codec

        p12_codec.load(data, reveal(opts.store_password) or "")
    elif endpoint.type == "jks":
        from . import jks_codec

        jks_codec.load(data, reveal(opts.store_password) or "")
    else:
        from . import pem_codec

        key_data = None
        if opts.key_path and os.path.isfile(opts.key_path):
            with open(opts.key_path, "rb") as fh:
                key_data = fh.read()
        content = pem_codec.parse(data, key_data)
        if content.key_encrypted:
            pem_codec.load_key(content, reveal(opts.key_password))
