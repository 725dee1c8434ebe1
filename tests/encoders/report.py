"""The conformance case table: filled by tests/test_conformance.py, printed at the session's end."""

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


ROWS: dict[str, CaseRow] = {}


def table() -> list[str]:
    header = (
        f"{'case':<24} {'clips':>5} {'start err':>9} {'end err':>8} {'decode err':>10} {'other':>6}"
    )
    lines = [header, "-" * len(header)]
    for row in ROWS.values():
        lines.append(
            f"{row.case:<24} {row.clips:>5} {row.start_errors:>9} {row.end_errors:>8} "
            f"{row.decode_errors:>10} {row.other:>6}"
        )
    return lines
