"""``python bench/run.py``: measure (or re-read saved results), print the table and the
verdicts, write docs/benchmarks.md and its chart, and update the README's table."""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path

from bench import REPO
from bench.charts import chart
from bench.common import human, size_arg
from bench.report import (
    azure_sentence,
    build_rows,
    format_table,
    machine_info,
    print_table,
    update_readme,
    write_markdown,
)
from bench.results import Results
from bench.suite import default_data_dir, measure
from bench.verdicts import evaluate

DEFAULT_OUT = REPO / "docs" / "benchmarks.md"


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="bench/run.py",
        description="airflow-bigfile benchmark suite: ratios against sed, cp, perl and the "
                    "raw syscalls. Sizes take the units of bigfile --shard-size (MiB = 2**20, "
                    "MB = 10**6).")
    p.add_argument("--sizes", default="1GiB,2GiB",
                   help="comma-separated file sizes (default: 1GiB,2GiB)")
    p.add_argument("--repeat", type=int, default=3, help="runs per figure; medians (default 3)")
    p.add_argument("--regex-size", default="256MiB",
                   help="file size for the regex benchmarks (default 256MiB, as issue 14 asks: "
                        "enough that starting worker processes does not dominate)")
    p.add_argument("--s3-size", default="64MiB",
                   help="S3 object and Azure blob size (default 64MiB)")
    p.add_argument("--no-s3", action="store_true", help="leave out the S3 benchmark")
    p.add_argument("--no-azure", action="store_true", help="leave out the Azure benchmark")
    p.add_argument("--payload-size", default="512MiB",
                   help="--data-file size for the patch/insert payload rows (default 512MiB)")
    p.add_argument("--data-dir", type=Path,
                   help="scratch folder for data (kept and reused); default: a temp dir "
                        "beside the repo, removed at the end")
    p.add_argument("--out", type=Path, default=DEFAULT_OUT,
                   help="markdown report (the chart goes beside it as throughput.png)")
    p.add_argument("--readme", type=Path,
                   help="README whose benchmark table to update (default: the repo's "
                        "README.md when --out is the default report)")
    p.add_argument("--report-from", type=Path, metavar="RESULTS.json",
                   help="measure nothing: rewrite the report from a saved results file")
    p.add_argument("--quick", action="store_true",
                   help="tiny smoke run: 8MiB, 1 repeat, 2MiB regex, 8MiB S3 object")
    return p


def main(argv: list[str] | None = None) -> int:
    p = parser()
    args = p.parse_args(argv)
    if args.quick:
        args.sizes, args.repeat, args.regex_size, args.s3_size = "8MiB", 1, "2MiB", "8MiB"
        args.payload_size = "4MiB"
    try:
        sizes = sorted({size_arg(s) for s in args.sizes.split(",") if s.strip()})
        regex_sizes = [size_arg(args.regex_size)]
        s3_size, payload_size = size_arg(args.s3_size), size_arg(args.payload_size)
    except ValueError as exc:
        p.error(str(exc))
    if args.repeat < 1:
        p.error("--repeat must be >= 1")
    command = " ".join(["python bench/run.py", *(shlex.quote(a) for a in (
        argv if argv is not None else sys.argv[1:]))])
    if args.report_from:
        saved = json.loads(args.report_from.read_text())
        sizes, regex_sizes = saved["sizes"], saved["regex_sizes"]
    else:
        if args.data_dir:
            data_dir, cleanup = args.data_dir.resolve(), False
            data_dir.mkdir(parents=True, exist_ok=True)
        else:
            data_dir, cleanup = default_data_dir(REPO), True
        saved = measure(args, data_dir, cleanup, sizes=sizes, regex_sizes=regex_sizes,
                        s3_size=s3_size, payload_size=payload_size, command=command,
                        info=machine_info(data_dir))
    res = Results.from_json(saved["results"])
    s3, azure, holes = saved["s3"], saved.get("azure", {}), saved.get("holes", {})
    rows = build_rows(res, sizes, regex_sizes)
    table = format_table(rows)
    targets = evaluate(res, sizes, regex_sizes, s3, azure, payload_size)
    print()
    print_table(table)
    if s3:
        print(f"\nS3: 1-byte patch of a {human(s3['object_size'])} object sent {s3['sent']:,} "
              f"bytes ({s3['sent'] / s3['object_size']:.1%}); identical: {s3['identical']}")
    if azure:
        print(azure_sentence(azure))
    print("\nTargets (issue 6):")
    for t, m, v in targets:
        print(f"  {v:<13} {t}: {m}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    png = args.out.parent / "throughput.png"
    drawn = chart(res, sizes, png)
    write_markdown(args.out, command=saved["command"], info=saved["info"], table=table,
                   targets=targets, res=res, s3=s3, azure=azure, holes=holes,
                   chart_name=png.name if drawn else None, repeat=saved["repeat"],
                   elapsed=saved["elapsed"], regex_sizes=regex_sizes, saved_date=saved["date"])
    print(f"\nwrote {args.out}" + (f" and {png}" if drawn else ""))
    readme = args.readme or (REPO / "README.md" if args.out == DEFAULT_OUT else None)
    if readme is not None and update_readme(readme, rows, s3, azure, holes, saved["command"],
                                            saved["date"].split()[0]):
        print(f"updated the benchmark table in {readme}")
    return 0
