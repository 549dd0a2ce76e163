"""Rebuild a dataset's report: `python -m pipeline.report OUTPUT`.

Every build writes report.html and samples.png itself; this remakes them for
an existing dataset (local or gs://), e.g. one built before reports existed or
after changing the number of sample rows.
"""

from __future__ import annotations

import argparse
import sys
from typing import Optional, Sequence, Tuple

from fgbg import layout
from fgbg.report import write_report
from fgbg.report.dataset import DEFAULT_ROWS, ReportError


def parser() -> argparse.ArgumentParser:
    result = argparse.ArgumentParser(
        prog="python -m pipeline.report",
        description="(Re)build report.html and samples.png at the root of a dataset built "
        "by `python -m pipeline.build`. The same dataset and options give the "
        "same files.",
    )
    result.add_argument(
        "output",
        metavar="OUTPUT",
        help="The dataset root, as given to the build's --output "
        "(a local folder or gs://bucket/path).",
    )
    result.add_argument(
        "--rows",
        type=int,
        default=DEFAULT_ROWS,
        help="Samples in the grid, chosen by the run seed. Default: %(default)s.",
    )
    result.add_argument(
        "--compare",
        metavar="OTHER",
        default=None,
        help="Another build of the same inputs and seed (e.g. --placement random beside "
        "--placement depth): the page shows the same samples of both side by side, with "
        "their depth labels.",
    )
    return result


def run(argv: Optional[Sequence[str]] = None) -> Tuple[str, str]:
    """Write the report; returns the paths of report.html and samples.png.

    Raises ReportError when OUTPUT is not a finished build.
    """
    args = parser().parse_args(argv)
    if args.rows < 1:
        raise ReportError("--rows must be at least 1")
    write_report(args.output, rows=args.rows, compare=args.compare)
    root = args.output.rstrip("/")
    return layout.resolve(root, layout.REPORT_HTML), layout.resolve(root, layout.SAMPLES_PNG)


def main(argv: Optional[Sequence[str]] = None) -> int:
    try:
        report, samples = run(argv)
    except ReportError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(f"wrote {report} and {samples}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
