"""The conformance case table: each case's row is filled by tests/test_conformance.py and
attached to its test's report, and the session prints the rows it received at its end
(from the test processes too, under -n)."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(kw_only=True, slots=True)
class CaseRow:
    case: str
    clips: int = 0
    start_errors: int = 0  # clips whose first frame is not the one covering start_ms
    end_errors: int = 0
    decode_errors: int = 0  # outputs libav reported errors for
    other: int = 0  # clips failed, counts, sync, timing
    failures: list[str] = field(default_factory=list)


ROWS: dict[str, CaseRow] = {}  # "case [engine]": this process's rows
PROPERTY = "conformance_row"  # a report's user property holding a row's cells
SHOWN: dict[str, tuple[object, ...]] = {}  # the rows reported, for the table


def cells(row: CaseRow) -> tuple[object, ...]:
    return (row.case, row.clips, row.start_errors, row.end_errors, row.decode_errors, row.other)


def table() -> list[str]:
    header = (
        f"{'case':<34} {'clips':>5} {'start err':>9} {'end err':>8} {'decode err':>10} {'other':>6}"
    )
    lines = [header, "-" * len(header)]
    for case, clips, start, end, decode, other in SHOWN.values():
        lines.append(f"{case:<34} {clips:>5} {start:>9} {end:>8} {decode:>10} {other:>6}")
    return lines
