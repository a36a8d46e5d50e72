"""The pending-change check over ssh sees sub-second modification times (issue 14 item 1).

SFTP (protocol 3) carries whole seconds, so an edit 1.3 s after a reload (the check's slack is
1 s) read as 0.3 s after it and went unnoticed over ssh while the same edit was refused locally
(found by the stock nginx test over sshd, one run in a few). The check now reads mtimes with
GNU stat's nanoseconds in one run per batch of files."""

from __future__ import annotations

import os
from pathlib import Path

from tlsgate.policy import START_SLACK, file_mtimes, pending_files


def test_an_edit_a_fraction_past_the_slack_is_pending_over_ssh(root_conn, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    since = 1_700_000_000.2
    edited, loaded, folder = tmp_path / "edited.conf", tmp_path / "loaded.conf", tmp_path / "conf.d"
    for path in (edited, loaded):
        path.write_text("x\n")
    folder.mkdir()
    os.utime(edited, (since + START_SLACK + 0.3,) * 2)  # whole seconds: since + 1.0, not after the slack
    os.utime(loaded, (since + 0.5,) * 2)  # written before the (re)load finished: loaded
    paths = [str(edited), str(loaded), str(folder), str(tmp_path / "missing.conf")]
    assert pending_files(root_conn, paths, since) == [str(edited)]
    times = file_mtimes(root_conn, paths)
    assert abs(times[str(edited)] - (since + START_SLACK + 0.3)) < 1e-6
    assert times[str(folder)] is None and times[str(tmp_path / "missing.conf")] is None
