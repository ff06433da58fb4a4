"""``python -m benchmarks [--full | --smoke] [--out DIR] [--only NAME ...]``

Runs every measurement and writes ``DIR/RESULTS.md``, ``DIR/results/*.csv`` and
``DIR/results/overhead.png`` (DIR defaults to this folder). Quick mode (the default) takes about
5 minutes; ``--full`` repeats more and loads longer (about 10 minutes, plus about 30 for the crash
soak); ``--smoke`` only checks the harness (CI).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from benchmarks import accuracy, budget, datapath, endtoend, inprocess, machine, soak
from benchmarks.markdown import render
from benchmarks.report import Results, chart, write_csvs
from benchmarks.settings import MODES
from benchmarks.timing import progress

MEASUREMENTS = ("inprocess", "endtoend", "accuracy", "datapath", "budget", "soak")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    group = parser.add_mutually_exclusive_group()
    group.add_argument(
        "--full", action="store_true", help="the full mode (about 40 minutes with the soak)"
    )
    group.add_argument("--smoke", action="store_true", help="a tiny run checking the harness")
    parser.add_argument(
        "--out", type=Path, default=Path(__file__).resolve().parent, help="output folder"
    )
    parser.add_argument(
        "--only",
        nargs="+",
        choices=MEASUREMENTS,
        default=list(MEASUREMENTS),
        help="run only these measurements",
    )
    args = parser.parse_args(argv)
    mode = MODES["full" if args.full else "smoke" if args.smoke else "quick"]
    started = time.monotonic()
    results = Results(mode=mode.name, machine=machine.facts())
    progress(f"mode {mode.name}; writing to {args.out}")
    if "inprocess" in args.only:
        results.inprocess = inprocess.run(mode)
    if "endtoend" in args.only:
        note = endtoend.available()
        if note is None:
            results.endtoend = endtoend.run(mode)
        else:
            results.endtoend_note = note
            progress(f"end-to-end skipped: {note}")
    if "accuracy" in args.only:
        results.accuracy = accuracy.run(mode)
    if "datapath" in args.only:
        results.datapath = datapath.run(mode)
    if "budget" in args.only:
        results.budget = budget.run(mode)
    if "soak" in args.only:
        results.soak = soak.run(mode)
        if soak.BEFORE_FIX_CSV.exists():  # committed: the engine before the fix, same soak
            results.soak_before_fix = soak.read_csv(soak.BEFORE_FIX_CSV)
    results.seconds = time.monotonic() - started
    out = args.out
    csvs = write_csvs(results, out / "results")
    if results.inprocess:
        try:
            chart(results, out / "results" / "overhead.png")
        except ImportError as exc:  # matplotlib is in the `bench` dependency group
            progress(f"no chart: {exc}")
    text = render(results, [str(p.relative_to(out)) for p in csvs])
    (out / "RESULTS.md").write_text(text + "\n", encoding="utf-8")
    progress(f"done in {results.seconds:.0f} s: {out / 'RESULTS.md'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
