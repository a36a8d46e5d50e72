"""PowerShell's CLIXML error stream, parsed as XML (tlsgate.transports.windows.clean_clixml) and
reduced to one line per failure (error_detail). The first samples are pywinrm's own, captured
from a real host: pywinrm's tests/test_session.py (``test_decode_clixml_error``,
``test_decode_clixml_no_errors``, ``test_decode_clixml_invalid_xml``), github.com/diyan/pywinrm."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st
from tlsgate.transports.windows import clean_clixml, error_detail
from tlsgate_testing.winhost import PSError, error_record, to_clixml

_PROGRESS = ('<Obj S="progress" RefId="0"><TN RefId="0"><T>System.Management.Automation.PSCustomObject</T>'
             '<T>System.Object</T></TN><MS><I64 N="SourceId">1</I64><PR N="Record"><AV>Preparing modules for first '
             'use.</AV><AI>0</AI><Nil /><PI>-1</PI><PC>-1</PC><T>Completed</T><SR>-1</SR><SD> </SD></PR></MS></Obj>'
             '<Obj S="progress" RefId="1"><TNRef RefId="0" /><MS><I64 N="SourceId">1</I64><PR N="Record"><AV>Preparing '
             'modules for first use.</AV><AI>0</AI><Nil /><PI>-1</PI><PC>-1</PC><T>Completed</T><SR>-1</SR><SD> </SD>'
             '</PR></MS></Obj>')
_OBJS = '#< CLIXML\r\n<Objs Version="1.1.0.1" xmlns="http://schemas.microsoft.com/powershell/2004/04">'

# pywinrm test_decode_clixml_error: "fake cmdlet" on a real host
PYWINRM_ERROR = (
    _OBJS + _PROGRESS
    + '<S S="Error">fake : The term \'fake\' is not recognized as the name of a cmdlet, function, script file, or '
      'operable program. Check _x000D__x000A_</S><S S="Error">the spelling of the name, or if a path was included, '
      'verify that the path is correct and try again._x000D__x000A_</S><S S="Error">At line:1 char:1_x000D__x000A_</S>'
      '<S S="Error">+ fake cmdlet_x000D__x000A_</S><S S="Error">+ ~~~~_x000D__x000A_</S><S S="Error">    + '
      'CategoryInfo          : ObjectNotFound: (fake:String) [], CommandNotFoundException_x000D__x000A_</S>'
      '<S S="Error">    + FullyQualifiedErrorId : CommandNotFoundException_x000D__x000A_</S><S S="Error"> '
      '_x000D__x000A_</S></Objs>')
# pywinrm test_decode_clixml_no_errors: progress records only
PYWINRM_NO_ERRORS = _OBJS + _PROGRESS + "</Objs>"
# pywinrm test_decode_clixml_invalid_xml
PYWINRM_INVALID = "#< CLIXML\r\n<in >dasf<?dsfij>"


def test_pywinrm_error_sample() -> None:
    text = clean_clixml(PYWINRM_ERROR)
    assert text == (
        "fake : The term 'fake' is not recognized as the name of a cmdlet, function, script file, or operable "
        "program. Check\nthe spelling of the name, or if a path was included, verify that the path is correct and "
        "try again.\nAt line:1 char:1\n+ fake cmdlet\n+ ~~~~\n    + CategoryInfo          : ObjectNotFound: "
        "(fake:String) [], CommandNotFoundException\n    + FullyQualifiedErrorId : CommandNotFoundException\n")
    # the record's message (console wrapping undone) and its id, not its last line
    assert error_detail(text) == (
        "fake : The term 'fake' is not recognized as the name of a cmdlet, function, script file, or operable "
        "program. Check the spelling of the name, or if a path was included, verify that the path is correct and "
        "try again. (CommandNotFoundException)")


def test_pywinrm_progress_only_and_invalid_samples() -> None:
    assert clean_clixml(PYWINRM_NO_ERRORS) == ""  # progress is no error text
    assert clean_clixml(PYWINRM_INVALID) == "<in >dasf<?dsfij>\n"  # not XML: kept raw, never dropped
    assert error_detail("", 3) == "exit status 3"


def test_warnings_and_raw_text_inside_the_open_block_are_kept() -> None:
    # [Console]::Error text bypasses the serializer and lands before </Objs>; a warning-only block
    stream = (_OBJS + _PROGRESS + '<S S="Warning">The module WebAdministration is old._x000D__x000A_</S>'
              "Cannot find a site named Shop.\r\n</Objs>")
    assert clean_clixml(stream) == "WARNING: The module WebAdministration is old.\nCannot find a site named Shop.\n"
    assert error_detail(clean_clixml(stream)) == "Cannot find a site named Shop."
    warning_only = _OBJS + '<S S="Warning">certificate expires soon_x000D__x000A_</S></Objs>'
    assert clean_clixml(warning_only) == "WARNING: certificate expires soon\n"
    assert error_detail(clean_clixml(warning_only)) == "WARNING: certificate expires soon"


def test_xml_escapes_and_two_streams() -> None:
    stream = (_OBJS + '<S S="Error">Cannot find path \'C:\\x &lt;y&gt; &amp; z_x0009_tab\'_x000D__x000A_</S></Objs>'
              + "between\r\n" + _OBJS + '<S S="Error">second_x000D__x000A_</S></Objs>')
    assert clean_clixml(stream) == "Cannot find path 'C:\\x <y> & z\ttab'\nbetween\n\nsecond\n"


def test_a_record_after_raw_text_is_reported_alone() -> None:
    exc = PSError('Exception calling "CommitChanges" with "0" argument(s): "A specified logon session does not exist. '
                  'It may already have been terminated. (Exception from HRESULT: 0x80070520)"', error_id="COMException",
                  category="NotSpecified: (:) [], MethodInvocationException")
    text = clean_clixml(to_clixml("a raw line first\n", records=[error_record(exc)], warnings=["careful\n"]))
    assert error_detail(text) == (
        'Exception calling "CommitChanges" with "0" argument(s): "A specified logon session does not exist. It may '
        'already have been terminated. (Exception from HRESULT: 0x80070520)" (COMException)')


lines = st.text(st.characters(blacklist_categories=("Cs", "Cc")), min_size=1, max_size=40).filter(
    lambda s: s.strip() == s and s and not s.startswith(("WARNING: ", "+", "At ")))


@settings(max_examples=60, deadline=None)
@given(raw=st.lists(lines, max_size=3), warnings=st.lists(lines, max_size=2), message=lines,
       error_id=st.from_regex(r"[A-Za-z][A-Za-z.,]{0,30}", fullmatch=True))
def test_round_trip_through_powershell_serialization(raw: list[str], warnings: list[str], message: str,
                                                     error_id: str) -> None:
    stream = to_clixml("".join(r + "\n" for r in raw), records=[error_record(PSError(message, error_id=error_id))],
                       warnings=[w + "\n" for w in warnings])
    text = clean_clixml(stream)
    for r in raw:
        assert r in text
    for w in warnings:
        assert "WARNING: " + w in text
    # the message comes back whole (console wrapping undone: compare without whitespace runs) with its id
    assert " ".join(error_detail(text).split()) == " ".join(f"{message} ({error_id})".split())
