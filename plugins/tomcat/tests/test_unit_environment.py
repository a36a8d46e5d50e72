"""The parser of a systemd unit's Environment= lines (how Debian's tomcat10 unit sets
CATALINA_HOME, CATALINA_BASE, CATALINA_TMPDIR and JAVA_OPTS), round-tripped."""

from __future__ import annotations

import shlex

from hypothesis import given, settings
from hypothesis import strategies as st
from tlsgate_tomcat.restart import unit_environment

ENV_VALUE = st.text(st.characters(codec="ascii", exclude_categories=("Cc",)), max_size=30)


@settings(max_examples=60, deadline=None)
@given(env=st.dictionaries(st.from_regex(r"[A-Z_][A-Z0-9_]{0,10}", fullmatch=True), ENV_VALUE, max_size=5))
def test_unit_environment_round_trip(env: dict[str, str]) -> None:
    lines = ["[Service]", *(f"Environment={shlex.quote(f'{k}={v}')}" for k, v in env.items()), "Type=simple"]
    assert unit_environment("\n".join(lines)) == env


def test_debian_unit_as_shipped() -> None:
    text = (
        '[Service]\nEnvironment="CATALINA_HOME=/usr/share/tomcat10"\nEnvironment="CATALINA_BASE=/var/lib/tomcat10"\n'
        'Environment="CATALINA_TMPDIR=/tmp"\nEnvironment="JAVA_OPTS=-Djava.awt.headless=true"\n'
        "ExecStart=/bin/sh /usr/libexec/tomcat10/tomcat-start.sh\n"
    )
    assert unit_environment(text) == {"CATALINA_HOME": "/usr/share/tomcat10", "CATALINA_BASE": "/var/lib/tomcat10",
                                      "CATALINA_TMPDIR": "/tmp", "JAVA_OPTS": "-Djava.awt.headless=true"}
