"""Parse PowerShell with a real grammar (tree-sitter-powershell), so that a syntax error in a
template fails the build here instead of on a Windows host.

There is no PowerShell on the build machine; tree-sitter's PowerShell grammar is the closest
thing to its parser that installs from PyPI (``tree-sitter`` + ``tree-sitter-powershell``, in the
workspace's dev-dependencies). :func:`syntax_errors` lists every ERROR or MISSING node of the
tree; :func:`templates_of` collects the ``# tlsgate:<name>`` templates a module defines, and
:func:`full_scripts` turns each into every script a transport can send (``$P`` prelude, with and
without the ``$S`` stdin prelude), which is what must parse.
"""

from __future__ import annotations

import functools
from types import ModuleType
from typing import Any

from tlsgate.quoting import ps_script
from tlsgate.transports.windows import STDIN_PRELUDE

__all__ = ["full_scripts", "syntax_errors", "templates_of"]


@functools.cache
def _parser() -> Any:
    import tree_sitter_powershell
    from tree_sitter import Language, Parser

    return Parser(Language(tree_sitter_powershell.language()))


def syntax_errors(script: str) -> list[str]:
    """``line:column: ERROR|MISSING <text>`` for each node the grammar could not place."""
    tree = _parser().parse(script.encode("utf-8"))
    found: list[str] = []
    stack = [tree.root_node]
    while stack:
        node = stack.pop()
        if node.type == "ERROR" or node.is_missing:
            row, col = node.start_point
            kind = "MISSING" if node.is_missing else "ERROR"
            text = script.encode("utf-8")[node.start_byte:node.end_byte][:60].decode("utf-8", "replace")
            found.append(f"{row + 1}:{col + 1}: {kind} {node.type if node.is_missing else ''}{text!r}")
        stack.extend(node.children)
    return sorted(found)


def templates_of(*modules: ModuleType) -> dict[str, str]:
    """Every template a module holds (a ``str`` whose first line is ``# tlsgate:<name>``, at top
    level or as a value of a top-level dict), by template name."""
    out: dict[str, str] = {}
    for module in modules:
        for value in vars(module).values():
            for item in (value.values() if isinstance(value, dict) else (value,)):
                if isinstance(item, str) and item.startswith("# tlsgate:"):
                    out[item.split("\n", 1)[0][len("# tlsgate:"):]] = item
    return out


def full_scripts(template: str) -> dict[str, str]:
    """The scripts a transport sends for ``template``: parameters only (``$P``), and parameters
    plus secrets on standard input (``$S``)."""
    params = {"path": "C:\\x", "site": "S", "list": [1, 2]}
    return {"params": ps_script(template, params), "stdin": ps_script(STDIN_PRELUDE + template, params)}
