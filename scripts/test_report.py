"""The end of scripts/test.sh: per pass (one JUnit XML file each), the counts and the reason of
every skip, so that a skip is seen in CI, not only a green run.

    python scripts/test_report.py .test-reports/*.xml

Exit status 1 when a file is missing or unreadable, or when a pass has failures or errors or
passed no test at all (everything skipped is not a pass); 0 otherwise. Standard library only
(xml.etree reads what pytest's --junitxml writes), so any Python runs it.
"""

from __future__ import annotations

import sys
import xml.etree.ElementTree as ET  # our own pytest's output, not untrusted input
from collections import Counter
from pathlib import Path


def tally(path: Path) -> tuple[Counter[str], Counter[str], float]:
    """(outcome -> count, skip reason -> count, seconds) of one JUnit XML file."""
    root = ET.parse(path).getroot()  # noqa: S314
    suites = [root] if root.tag == "testsuite" else list(root.iter("testsuite"))
    counts: Counter[str] = Counter()
    reasons: Counter[str] = Counter()
    seconds = 0.0
    for suite in suites:
        seconds += float(suite.get("time", 0) or 0)
        for case in suite.iter("testcase"):
            skipped = case.find("skipped")
            if case.find("failure") is not None:
                counts["failed"] += 1
            elif case.find("error") is not None:
                counts["error"] += 1
            elif skipped is not None:
                kind = "xfailed" if skipped.get("type") == "pytest.xfail" else "skipped"
                counts[kind] += 1
                reasons[f"{kind}: {one_line(skipped.get('message', ''))}"] += 1
            else:
                counts["passed"] += 1
    return counts, reasons, seconds


def one_line(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= 160 else text[:157] + "..."


def main(argv: list[str]) -> int:
    if not argv:
        print("test_report.py: no report files given", file=sys.stderr)
        return 1
    bad: list[str] = []
    total: Counter[str] = Counter()
    print("== test report (one line a pass; every skip and xfail with its reason)")
    for name in argv:
        path = Path(name)
        label = path.stem
        try:
            counts, reasons, seconds = tally(path)
        except (OSError, ET.ParseError) as exc:
            print(f"{label}: no report ({exc})")
            bad.append(label)
            continue
        total.update(counts)
        shown = ", ".join(f"{counts[k]} {k}" for k in ("passed", "failed", "error", "skipped", "xfailed") if counts[k])
        print(f"{label}: {shown or 'nothing ran'} in {seconds:.0f} s")
        for reason, n in sorted(reasons.items()):
            print(f"    {n:4d} x {reason}")
        if counts["failed"] or counts["error"] or not counts["passed"]:
            bad.append(label)
    print("all passes: " + ", ".join(f"{total[k]} {k}" for k in ("passed", "failed", "error", "skipped", "xfailed")))
    if bad:
        print(f"test_report.py: failed or passed nothing: {', '.join(bad)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
