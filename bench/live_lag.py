"""Benchmark: publish -> indexed lag against Debian's ffmpeg publishing HLS live (polled).

    .venv/bin/python bench/live_lag.py                    # TS and fMP4, 10 minutes
    .venv/bin/python bench/live_lag.py --minutes 30 --containers ts

One `ffmpeg -re` per container writes 2 s segments (the HLS muxer, PROGRAM-DATE-TIME on);
a static origin on 127.0.0.1 serves them without blocking reloads; a daemon in this
process records them. Publish time is when the playlist rewrite that first lists a
segment was written (its mtime); indexed time is the daemon's index row. Prints p50, p99
and max of publish -> indexed per container, after a warm-up of six segments.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.encoders.lag import measure, table


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--containers", default="ts,fmp4", help="comma-separated: ts, fmp4")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    containers = tuple(c.strip() for c in args.containers.split(",") if c.strip())
    with tempfile.TemporaryDirectory(prefix="livecut-lag-") as root:
        runs = asyncio.run(measure(containers, args.minutes * 60, Path(root)))
    print(f"load average: {' '.join(f'{v:.2f}' for v in os.getloadavg())}")
    print(table(runs))
    return 0


if __name__ == "__main__":
    sys.exit(main())
