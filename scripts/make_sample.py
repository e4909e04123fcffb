#!/usr/bin/env python3
"""Make (and afterwards verify) the sample CSV that ``make demo`` masks.

Independent of the engine on purpose: the file is one block of CSV rows with e-mail
addresses, repeated until the wanted size, so it is written at disk speed and its masked
form is known exactly (the masked block, repeated), which is how ``verify`` checks every
byte of the result without holding the file in memory.

    python scripts/make_sample.py make   emails.csv --size 300MB --facts facts.json
    python scripts/make_sample.py verify emails.csv --facts facts.json [--log dag.log]
"""

from __future__ import annotations

import argparse
import ast
import json
import os
import re
import sys
import time

# The bigfile_mask_emails DAG's edit, as re.sub would apply it.
MASK_RE = rb"@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}"
MASK_TO = b"@masked.invalid"
DOMAINS = [b"old.com", b"mail.example.org", b"corp.co.uk", b"x-y.net", b"shop.example.de",
           b"uni.edu"]
HEADER = b"id,email,amount,note\n"
UNITS = {"": 1, "B": 1, "KB": 10**3, "MB": 10**6, "GB": 10**9, "KIB": 2**10, "MIB": 2**20,
         "GIB": 2**30}


def parse_size(text: str) -> int:
    found = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([A-Za-z]*)\s*", text)
    if not found or found.group(2).upper() not in UNITS:
        raise argparse.ArgumentTypeError(f"not a size: {text!r} (e.g. 300MB, 1GiB)")
    return int(float(found.group(1)) * UNITS[found.group(2).upper()])


def block(rows: int = 20000) -> bytes:
    lines = []
    for i in range(rows):
        domain = DOMAINS[(i * 7 + i // 13) % len(DOMAINS)]
        lines.append(b"%d,user%d.%s@%s,%d.%02d,n%d\n"
                     % (i, i, b"abcdefgh"[i % 8: i % 8 + 3], domain, i % 997, i % 100, i % 7))
    return b"".join(lines)


def mask(data: bytes) -> bytes:
    return re.sub(MASK_RE, MASK_TO, data)


def plan(size: int) -> tuple[bytes, int, bytes]:
    """Header + ``repeats`` copies of the block + a partial block cut at a line end."""
    body = block()
    repeats, rest = divmod(max(size - len(HEADER), 0), len(body))
    tail = body[:rest]
    tail = tail[:tail.rfind(b"\n") + 1]
    return body, repeats, tail


def cmd_make(args: argparse.Namespace) -> int:
    started = time.monotonic()
    body, repeats, tail = plan(args.size)
    os.makedirs(os.path.dirname(os.path.abspath(args.path)), exist_ok=True)
    with open(args.path, "wb") as f:
        f.write(HEADER)
        for _ in range(repeats):
            f.write(body)
        f.write(tail)
    size = os.path.getsize(args.path)
    masked_size = len(HEADER) + repeats * len(mask(body)) + len(mask(tail))
    facts = {
        "path": os.path.abspath(args.path), "size": size, "requested": args.size,
        "emails": repeats * len(re.findall(MASK_RE, body)) + len(re.findall(MASK_RE, tail)),
        "domains": {d.decode(): repeats * body.count(b"@" + d) + tail.count(b"@" + d)
                    for d in DOMAINS},
        "masked_size": masked_size,
    }
    with open(args.facts, "w") as f:
        json.dump(facts, f, indent=1)
    print(f"sample: {args.path}: {size / 1e6:.1f} MB, {facts['emails']:,} e-mail addresses "
          f"in {len(DOMAINS)} domains, written in {time.monotonic() - started:.1f} s")
    return 0


def committed(log_path: str) -> dict | None:
    """The commit task's result figures (its XCom), from its log line."""
    try:
        with open(log_path, encoding="utf-8", errors="replace") as f:
            text = f.read()
    except OSError:
        return None
    found = re.findall(r"Committed \S+: (\{.*\})", text)  # greedy: the dict nests
    return ast.literal_eval(found[-1]) if found else None


def cmd_verify(args: argparse.Namespace) -> int:
    with open(args.facts) as f:
        facts = json.load(f)
    body, repeats, tail = plan(facts["requested"])
    expected_body, expected_tail = mask(body), mask(tail)
    size = os.path.getsize(args.path)
    problems = []
    counts = {"masked.invalid": 0, **{d.decode(): 0 for d in DOMAINS}}
    with open(args.path, "rb") as f:
        if f.read(len(HEADER)) != HEADER:
            problems.append("the header changed")
        for i in range(repeats):
            chunk = f.read(len(expected_body))
            counts["masked.invalid"] += chunk.count(MASK_TO)
            for d in DOMAINS:
                counts[d.decode()] += chunk.count(b"@" + d)
            if chunk != expected_body and not problems:
                problems.append(f"block {i} (from byte {len(HEADER) + i * len(expected_body)})"
                                f" differs from re.sub's result")
        rest = f.read()
        counts["masked.invalid"] += rest.count(MASK_TO)
        if rest != expected_tail:
            problems.append("the last partial block differs from re.sub's result")

    print("\nwhat changed:")
    print(f"  {'domain':<18}{'before':>14}{'after':>14}")
    for d in DOMAINS:
        name = d.decode()
        print(f"  @{name:<17}{facts['domains'][name]:>14,}{counts[name]:>14,}")
    print(f"  @{'masked.invalid':<17}{0:>14,}{counts['masked.invalid']:>14,}")
    print(f"  {'file size':<18}{facts['size']:>14,}{size:>14,}")
    figures = committed(args.log) if args.log else None
    if figures:
        print("\ncommit task result (XCom):")
        for key in ("size_before", "size_after", "matches", "shards", "shards_changed",
                    "bytes_written", "commit_mode", "seconds"):
            print(f"  {key:<16}{figures.get(key)}")
        if figures.get("matches") != facts["emails"]:
            problems.append(f"the commit reports {figures.get('matches')} matches, "
                            f"the sample has {facts['emails']} addresses")
        if figures.get("size_after") != size:
            problems.append("the commit's size_after is not the file's size")
    elif args.log:
        problems.append(f"no commit result found in {args.log}")
    if size != facts["masked_size"]:
        problems.append(f"size {size} != expected {facts['masked_size']}")
    if counts["masked.invalid"] != facts["emails"]:
        problems.append(f"{counts['masked.invalid']} masked addresses, expected "
                        f"{facts['emails']}")
    if problems:
        print("\nverification FAILED:\n  " + "\n  ".join(problems))
        return 1
    print(f"\nverified: every byte of {args.path} equals re.sub({MASK_RE.decode()!r}, "
          f"{MASK_TO.decode()!r}) of the original")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    make = sub.add_parser("make", help="write the sample file and its facts")
    make.add_argument("path")
    make.add_argument("--size", type=parse_size, default=parse_size("300MB"))
    make.add_argument("--facts", required=True, help="JSON file for the expected figures")
    verify = sub.add_parser("verify", help="check the masked file against the facts")
    verify.add_argument("path")
    verify.add_argument("--facts", required=True)
    verify.add_argument("--log", help="the `airflow dags test` output, for the commit figures")
    args = parser.parse_args(argv)
    return cmd_make(args) if args.cmd == "make" else cmd_verify(args)


if __name__ == "__main__":
    sys.exit(main())
