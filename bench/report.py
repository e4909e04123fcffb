"""The report: the machine, the table of ratios, docs/benchmarks.md, and the README's table
between its ``bench`` markers."""

from __future__ import annotations

import contextlib
import datetime as _dt
import os
import platform
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.azure import APPEND_SIZE, AZURE_CONTAINER
from bench.common import MB, human, log
from bench.data import HOLE_DATA, HOLE_EVERY
from bench.results import Results
from bench.s3 import S3_BUCKET
from bench.suite import (
    DELETE_LENGTH,
    DELETE_OFFSET,
    DENSE_REPLACE,
    DURABLE,
    DURABLE_COPY,
    FIND,
    INSERT_DATA,
    INSERT_OFFSET,
    PAYLOAD_OFFSET,
    REGEXES,
    SED_DENSE,
    SED_SPARSE,
    SPARSE_REPLACE,
)

NOTES = Path(__file__).with_name("notes.md")
README_START, README_END = "<!-- bench:start -->", "<!-- bench:end -->"
# bench/ltm.py writes its own section of the report between these markers
LTM_HEADING = "## Larger than memory (issue 15)"
LTM_START, LTM_END = "<!-- ltm:start -->", "<!-- ltm:end -->"


def machine_info(data_dir: Path) -> dict[str, str]:
    """Cores, CPU, memory, the data's filesystem, kernel, Python and the load average now."""
    cpu = ""
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    # df names ext4 as such; stat -f calls every ext* "ext2/ext3"
    df = subprocess.run(["df", "--output=fstype", str(data_dir)], capture_output=True,
                        text=True).stdout.split()
    fs = df[-1] if len(df) > 1 else subprocess.run(
        ["stat", "-f", "-c", "%T", str(data_dir)], capture_output=True, text=True).stdout.strip()
    mem = ""
    with contextlib.suppress(OSError), open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemTotal"):
                mem = f"{int(line.split()[1]) / (1 << 20):.1f} GiB"
    return {"cores": str(os.cpu_count()), "cpu": cpu or platform.processor(), "memory": mem,
            "filesystem": fs, "kernel": platform.release(),
            "python": platform.python_version(),
            "load average at start": " ".join(f"{x:.2f}" for x in os.getloadavg())}


@dataclass
class Row:
    """One line of the table: ours against a reference at one size."""

    bench: str
    size: int
    ours_tool: str
    ref_tool: str
    ours: float
    ref: float
    rss: int
    same: str

    @property
    def ratio(self) -> float:
        return self.ref / self.ours if self.ours else float("nan")


ROW_SPECS = [  # (bench, ours tool, reference tool, label)
    ("dense", "bigfile", "sed -i", "dense same-length replace"),
    ("dense", "bigfile", "cp", "dense same-length replace"),
    ("dense", "bigfile", DURABLE, "dense same-length replace"),
    ("sparse", "bigfile", "sed -i", "sparse length-changing replace"),
    ("sparse", "bigfile", "cp", "sparse length-changing replace"),
    ("sparse", "bigfile", DURABLE, "sparse length-changing replace"),
    ("patches", "bigfile", "python pwrite+fsync", "10,000 8-byte patches"),
    ("patches", "bigfile", "bigfile --mode rewrite", "10,000 8-byte patches"),
    ("patches", "python pwrite+fsync", "bigfile --mode rewrite",
     "bound: raw pwrite loop vs a rewrite"),
    ("insert", "bigfile", "cp", "insert at offset 100"),
    ("insert", "bigfile", DURABLE, "insert at offset 100"),
    ("delete", "bigfile", "cp", "delete 100 B at offset 100"),
    ("delete", "bigfile", DURABLE, "delete 100 B at offset 100"),
    ("holes", "bigfile", "cp", "insert into a sparse file (holes)"),
    ("payload-patch", "bigfile", "cp", "patch from a --data-file"),
    ("payload-insert", "bigfile", "cp", "insert from a --data-file"),
    ("regex", "bigfile workers=1", "perl -pi", "regex replace"),
    ("regex", "bigfile workers=2 threads", "perl -pi", "regex replace"),
    ("regex", "bigfile workers=2 processes", "perl -pi", "regex replace"),
    ("regex", "bigfile workers=2 threads", "bigfile workers=1", "regex scaling"),
    ("regex", "bigfile workers=2 processes", "bigfile workers=1", "regex scaling"),
    ("regex-date", "bigfile workers=1", "perl -pi", "date-reordering regex"),
    ("regex-date", "bigfile workers=2 threads", "perl -pi", "date-reordering regex"),
    ("regex-date", "bigfile workers=2 processes", "perl -pi", "date-reordering regex"),
    ("regex-date", "bigfile workers=2 threads", "bigfile workers=1", "date regex scaling"),
    ("regex-date", "bigfile workers=2 processes", "bigfile workers=1", "date regex scaling"),
]


def build_rows(res: Results, sizes: list[int], regex_sizes: list[int]) -> list[tuple[str, Row]]:
    """(label, row) for every row of :data:`ROW_SPECS` the run measured."""
    rows = []
    for bench, ours_tool, ref_tool, label in ROW_SPECS:
        for size in (regex_sizes if bench.startswith("regex") else sizes):
            ref_bench = "dense" if bench in ("insert", "delete") or bench.startswith(
                "payload") else bench
            o, f = res.get(bench, size, ours_tool), res.get(ref_bench, size, ref_tool)
            if not o or not f or not o.runs or not f.runs:
                continue
            same = "yes" if o.identical and all(o.identical) else (
                "NO" if o.identical else "n/a")
            rows.append((label, Row(bench, size, ours_tool, ref_tool, o.median, f.median,
                                    o.peak_rss, same)))
    return rows


def format_table(rows: list[tuple[str, Row]]) -> list[list[str]]:
    table = [["benchmark", "size", "ours", "ours s", "reference", "reference s", "ratio",
              "our peak RSS MB", "identical"]]
    for label, r in rows:
        table.append([label, human(r.size), r.ours_tool, f"{r.ours:.3f}", r.ref_tool,
                      f"{r.ref:.3f}", f"{r.ratio:.2f}x", f"{r.rss / MB:.0f}", r.same])
    return table


def print_table(table: list[list[str]]) -> None:
    widths = [max(len(row[i]) for row in table) for i in range(len(table[0]))]
    for n, row in enumerate(table):
        print("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)))
        if n == 0:
            print("  ".join("-" * w for w in widths))


def markdown_table(table: list[list[str]]) -> str:
    lines = ["| " + " | ".join(table[0]) + " |",
             "|" + "|".join("---" for _ in table[0]) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in table[1:]]
    return "\n".join(lines)


def azure_sentence(azure: dict[str, Any]) -> str:
    patch, append = azure["patch"], azure["append"]
    return (f"Azure Blob (Azurite): a 1-byte patch of a {human(patch['object_size'])} blob sent "
            f"{patch['sent']:,} bytes to the store, a {human(APPEND_SIZE)} append "
            f"{append['sent']:,} bytes ({append['sent'] / APPEND_SIZE:.3f}x the appended "
            "bytes), request headers included.")


def holes_sentence(holes: dict[str, int]) -> str:
    return (f"Sparse file ({human(holes['size'])}, {holes['source'] / MB:.0f} MB allocated): "
            f"after the insert ours has {holes['ours'] / MB:.0f} MB allocated, cp's copy "
            f"{holes['cp'] / MB:.0f} MB (the holes stay holes).")


def regex_speed(res: Results, regex_sizes: list[int]) -> str:
    """The speed of one regex worker in this run, against perl, for the Method section."""
    size = max(regex_sizes)
    one, perl = res.get("regex", size, "bigfile workers=1"), res.get("regex", size, "perl -pi")
    if not (one and one.runs and perl and perl.runs):
        return ""
    return (f" (in this run {one.median / (size / (1 << 30)):.0f} s/GiB on one worker, "
            f"{one.median / perl.median:.1f}x perl's time)")


def update_readme(path: Path, rows: list[tuple[str, Row]], s3: dict[str, Any],
                  azure: dict[str, Any], holes: dict[str, int], command: str, date: str
                  ) -> bool:
    """Put the figures at the largest size (and regex, S3) between the README's markers."""
    text = path.read_text()
    if README_START not in text or README_END not in text:
        log(f"{path} has no {README_START} ... {README_END} markers: not updated")
        return False
    big = max(r.size for label, r in rows if not r.bench.startswith("regex"))
    table = [["benchmark", "size", "ours (s)", "reference", "ref (s)", "ratio", "peak RSS"]]
    for label, r in rows:
        if r.size == big or r.bench.startswith("regex"):
            name = label if r.ours_tool == "bigfile" else \
                f"{label}, {r.ours_tool.removeprefix('bigfile ')}"
            table.append([name, human(r.size), f"{r.ours:.2f}", r.ref_tool, f"{r.ref:.2f}",
                          f"{r.ratio:.2f}x", f"{r.rss / MB:.0f} MB"])
    lines = [f"`{command}`, {date}; ratio = reference time / ours (> 1: we are faster).",
             "", markdown_table(table)]
    if s3:
        lines += ["", f"S3 (moto server): a 1-byte patch of a {human(s3['object_size'])} "
                  f"object sent {s3['sent'] / (1 << 20):.2f} MiB to the store."]
    if azure:
        lines += ["", azure_sentence(azure)]
    if holes:
        lines += ["", holes_sentence(holes)]
    head, rest = text.split(README_START, 1)
    tail = rest.split(README_END, 1)[1]
    path.write_text(head + README_START + "\n" + "\n".join(lines) + "\n" + README_END + tail)
    return True


def write_markdown(path: Path, *, command: str, info: dict[str, str], table: list[list[str]],
                   targets: list[tuple[str, str, str]], res: Results, s3: dict[str, Any],
                   azure: dict[str, Any], holes: dict[str, int], chart_name: str | None,
                   repeat: int, elapsed: float, regex_sizes: list[int],
                   saved_date: str | None = None) -> None:
    """docs/benchmarks.md: the command, machine, method, results, targets and every run."""
    day = saved_date or _dt.datetime.now().strftime("%Y-%m-%d %H:%M")
    parts = [
        "# Benchmarks",
        "",
        f"Produced by `{command}` on {day} (whole run: {elapsed / 60:.1f} min). "
        f"Every time is the median of {repeat} run(s); every ratio compares two tools "
        "measured side by side in the same run. `make bench` runs `bench/run.py` with its "
        "defaults.",
        "",
        "## Machine",
        "",
        *[f"- {k}: {v}" for k, v in info.items()],
        "",
        "## Method",
        "",
        "- Data: generated by the script. A CSV of 100-byte lines, each with an e-mail "
        "`userNNNNNNNNNN@old.com` (dense: a match on every line), and a sparse variant with "
        "`@old.com` on one line per 10 MB. Written as repeated blocks.",
        "- Each command is a separate process (`bigfile` CLI, `sed`, `perl`, `cp`, `python -c`):"
        " start-up and imports count (the package is byte-compiled first, as pip does when it"
        " installs it). Each runs on a fresh copy of the data, flushed with "
        "`sync` and read once (`cat > /dev/null`) so every tool starts with a warm page cache; "
        "then a scratch file as large as the data is written and deleted, so every tool finds "
        "as much recently used free memory as its output needs (on a virtual machine, memory "
        "the guest has not used lately faults in slowly: see the notes below). None of that "
        "is timed.",
        "- Ours always fsyncs what it commits (and rewrites go through a new file and a rename);"
        " `sed -i`, `perl -pi` and `cp` do not fsync. The figures are as measured, not adjusted."
        f" `{DURABLE}` (`sh -c '{DURABLE_COPY}' F F2`) is the floor of any tool that"
        " replaces the file and makes the result durable before it returns; the `bound` row"
        " is the raw pwrite loop against a rewrite, the most any patch can gain over one.",
        "- ratio = reference time / our time, so > 1 means we are faster. For the regex scaling"
        " rows the reference is our own 1-worker run.",
        "- Peak RSS: `ru_maxrss` of the child from `os.wait4` in a small launcher process that "
        "forks it (the largest over the repeats); spawned straight from the benchmark "
        "process, a child is charged with that process's size.",
        "- identical: `cmp` of our output against the reference tool's output on every run "
        "(insert/delete: against the source with the expected offsets).",
        "- `--data-file` rows: `bigfile patch` and `bigfile insert` of a file of random "
        "bytes (`--payload-size`, default 512 MiB) at offset 4096 of the largest data file; "
        "the peak RSS is the figure that matters (the target: under 300 MB whatever the "
        "payload size, as the CLI streams the file in chunks and stages it once for the "
        "workers). The reference output is made with `dd conv=notrunc` (patch) or "
        "`head`/`cat`/`tail` (insert) and compared with `cmp`.",
        "- The regex benchmark runs on a separate, smaller file "
        f"({', '.join(human(s) for s in regex_sizes)}; `--regex-size`): the regex engine is "
        f"the slowest path{regex_speed(res, regex_sizes)}, and a GiB-sized regex run would "
        "take longer than the rest of the suite together.",
        "",
        "Commands measured (F is the fresh copy):",
        "",
        "```",
        f"bigfile replace F --find '{FIND}' --replace '{DENSE_REPLACE}'        "
        f"# vs sed -i '{SED_DENSE}' F; cp F F2; cp F F2 && sync F2 && mv F2 F",
        f"bigfile replace F --find '{FIND}' --replace '{SPARSE_REPLACE}'  "
        f"# sparse file; vs sed -i '{SED_SPARSE}' F",
        "bigfile apply F --edits patches.json  # 10,000 8-byte patches; vs python -c "
        "'pwrite loop + fsync' and --mode rewrite",
        *(f"bigfile replace F --regex --find '{find}' --replace '{replace}' "
          f"[--workers 1|2] [--executor process]  # vs perl -pi -e '{perl}' F"
          for find, replace, perl in REGEXES.values()),
        f"bigfile insert F --offset {INSERT_OFFSET} --data '{INSERT_DATA}'    # vs cp",
        f"bigfile delete F --offset {DELETE_OFFSET} --length {DELETE_LENGTH}                "
        "# vs cp",
        f"bigfile patch|insert F --offset {PAYLOAD_OFFSET} --data-file P  # P: --payload-size "
        "random bytes (default 512MiB) on the largest F; vs cp, output cmp'd with dd/cat",
        "(all with --json --no-progress)",
        "```",
        "",
        "## Results",
        "",
        markdown_table(table),
        "",
    ]
    if s3:
        parts += [
            "### S3 (moto server)",
            "",
            f"`bigfile patch s3://{S3_BUCKET}/object.csv --offset N --hex 5a` on a "
            f"{human(s3['object_size'])} object, through an HTTP proxy counting every byte of "
            "the requests (request lines, headers and bodies) and the response bodies:",
            "",
            f"- bytes sent: {s3['sent']:,} ({s3['sent'] / (1 << 20):.2f} MiB, "
            f"{s3['sent'] / s3['object_size']:.1%} of the object)",
            f"- bytes received: {s3['received']:,}; requests: {s3['requests']}",
            f"- commit mode: {s3['commit_mode']}; engine-reported bytes_written: "
            f"{s3['bytes_written']}",
            f"- wall time {s3['seconds']:.2f} s, peak RSS {s3['rss'] / MB:.0f} MB, "
            f"object identical to the expected bytes: {'yes' if s3['identical'] else 'NO'}",
            "",
        ]
        if s3.get("moved"):
            parts += [
                "Workers elsewhere (`plan_edit`, `patch_batch` per batch, `commit_edit`, "
                "staging on the same store), a dense same-length replace of a "
                f"{human(s3['object_size'])} object: bytes moved per byte of the object, "
                "from the keys each exchange names (response bodies fetched, request bodies "
                "sent):",
                "",
                "| verify | object fetched | new object uploaded | staged written | "
                "staged read at commit | identical |",
                "|---|---|---|---|---|---|",
                *(f"| {m['verify']} | {m['per_byte']['fetched']:.2f} | "
                  f"{m['per_byte']['uploaded']:.2f} | {m['per_byte']['staged_written']:.2f} | "
                  f"{m['per_byte']['staged_read']:.2f} | "
                  f"{'yes' if m['identical'] else 'NO'} |" for m in s3["moved"]),
                "",
            ]
    if azure:
        parts += ["### Azure Blob (Azurite)", "",
                  f"`bigfile patch az://{AZURE_CONTAINER}/object.csv --offset N --hex 5a`, then "
                  f"`bigfile append az://{AZURE_CONTAINER}/object.csv --data-file F` "
                  f"({human(APPEND_SIZE)}), through the same proxy (headers included):", ""]
        for edit, a in azure.items():
            parts.append(
                f"- {edit}: {a['sent']:,} bytes sent, {a['received']:,} received, "
                f"{a['requests']} requests; commit mode {a['commit_mode']}, "
                f"bytes_written {a['bytes_written']}; wall time {a['seconds']:.2f} s, peak RSS "
                f"{a['rss'] / MB:.0f} MB; blob identical to the expected bytes: "
                f"{'yes' if a['identical'] else 'NO'}")
        parts += [""]
    if holes:
        parts += ["### Sparse files", "", f"`bigfile insert F --offset {INSERT_OFFSET}` on a "
                  f"file with {human(HOLE_DATA)} of data every {human(HOLE_EVERY)} and holes "
                  "between, against `cp` (which keeps holes as well). "
                  + holes_sentence(holes), ""]
    parts += ["## Targets (issue 6)", "", "| target | measured | verdict |", "|---|---|---|"]
    parts += [f"| {t} | {m} | **{v}** |" for t, m, v in targets]
    parts += [""]
    if chart_name:
        parts += ["## Throughput", "", f"![throughput against file size]({chart_name})", "",
                  "File size / median wall time (start-up included), log scale.", ""]
    if NOTES.exists():
        parts += ["## Notes (hand-written in bench/notes.md, not measured by this run)", "",
                  NOTES.read_text().strip(), ""]
    parts += ["## All runs", "", "Wall seconds of every run; for ours also the time the engine "
              "reports for itself (the rest is interpreter start-up and imports) and the "
              "commit mode.", "", "| benchmark | size | tool | runs (s) | engine s | commit |",
              "|---|---|---|---|---|---|"]
    for (bench, size, tool), s in sorted(res.series.items(), key=lambda kv: (kv[0][0],
                                                                               kv[0][1])):
        runs = ", ".join(f"{r.seconds:.3f}" for r in s.runs)
        eng = ", ".join(f"{e:.3f}" for e in s.engine_seconds)
        parts.append(f"| {bench} | {human(size)} | {tool} | {runs} | {eng} | {s.commit_mode} |")
    parts.append("")
    old = path.read_text() if path.exists() else ""
    if LTM_START in old and LTM_END in old:  # bench/ltm.py's section, measured apart: kept
        kept = old.split(LTM_START, 1)[1].split(LTM_END, 1)[0]
        parts += [LTM_HEADING, "", LTM_START + kept + LTM_END, ""]
    path.write_text("\n".join(parts))
