"""Every PowerShell template of the Windows transports parses with a real PowerShell grammar
(tree-sitter-powershell), as every script a transport sends: parameter prelude, with and without
the stdin prelude. A syntax error fails here, not on a Windows host."""

from __future__ import annotations

import pytest
from tlsgate import connection
from tlsgate.quoting import PARAMS_PRELUDE
from tlsgate.transports import windows
from tlsgate_testing.powershell_grammar import full_scripts, syntax_errors, templates_of

TEMPLATES = templates_of(windows, connection)


def test_every_transport_template_is_collected() -> None:
    assert set(windows.TEMPLATES) <= set(TEMPLATES)
    assert len(TEMPLATES) >= 12


@pytest.mark.parametrize("name", sorted(TEMPLATES))
def test_template_parses(name: str) -> None:
    for kind, script in full_scripts(TEMPLATES[name]).items():
        assert syntax_errors(script) == [], (name, kind)


def test_the_grammar_catches_what_powershell_would_refuse() -> None:
    """The check is not vacuous: an unclosed block, a missing brace and a bad string fail."""
    assert syntax_errors(PARAMS_PRELUDE + "if ($P.x { exit 1 }\n")
    assert syntax_errors(PARAMS_PRELUDE + "foreach ($a in @(1)) { $a \n")
    assert syntax_errors(PARAMS_PRELUDE + "$x = 'unterminated\n")
    assert syntax_errors(PARAMS_PRELUDE + "$x = (1 + )\n")  # a MISSING node
    assert syntax_errors(PARAMS_PRELUDE + "$s.Bindings.Remove($old\n")


def test_compacting_keeps_templates_intact() -> None:
    """ps_template drops comment lines and indentation; what is left still parses and keeps the
    first line the host dispatches on."""
    text = windows.ps_template("x", """
        # a comment for readers
        if ($P.a) {
          [Console]::Out.Write('a # not a comment')
        }
    """)
    assert text == "# tlsgate:x\nif ($P.a) {\n[Console]::Out.Write('a # not a comment')\n}\n"
    assert syntax_errors(PARAMS_PRELUDE + text) == []
