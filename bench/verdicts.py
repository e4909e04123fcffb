"""The targets of issue 6 and the regex targets of issue 14, each judged PASS, FAIL, PARTIAL or
NOT MEASURED from a run."""

from __future__ import annotations

from typing import Any

from bench.azure import APPEND_SIZE
from bench.common import MB, human
from bench.results import Results
from bench.suite import DURABLE


def evaluate(res: Results, sizes: list[int], regex_sizes: list[int], s3: dict[str, Any],
             azure: dict[str, Any], payload_size: int = 512 << 20
             ) -> list[tuple[str, str, str]]:
    """(target, measured, verdict) for each target."""
    out: list[tuple[str, str, str]] = []
    big = max(sizes)
    label = human(big)

    def ratio(bench: str, ours: str, ref: str, size: int) -> float | None:
        o = res.get(bench, size, ours)
        f = res.get("dense" if bench in ("insert", "delete") else bench, size, ref)
        if not o or not f or not o.runs or not f.runs:
            return None
        return f.median / o.median

    def verdict(ok: bool) -> str:
        return "PASS" if ok else "FAIL"

    def durable(bench: str, size: int) -> str:
        r = ratio(bench, "bigfile", DURABLE, size)
        return "" if r is None else f" ({DURABLE}: {r:.2f}x)"

    two_gib = [s for s in sizes if s >= 2 << 30]
    for name, ref, need in (("sed -i", "sed -i", 3.0), ("cp", "cp", 0.35)):
        target = f"dense same-length replace on >= 2 GiB: >= {need}x {name}"
        if not two_gib:
            r = ratio("dense", "bigfile", ref, big)
            out.append((target, f"{r:.2f}x at {label} (no size >= 2 GiB in this run)",
                        "NOT MEASURED"))
        else:
            each = [(ratio("dense", "bigfile", ref, s), s) for s in two_gib]
            passed = [r >= need for r, _ in each]
            out.append((target, ", ".join(f"{r:.2f}x at {human(s)}"
                                          + (durable("dense", s) if ref == "cp" else "")
                                          for r, s in each),
                        verdict(all(passed)) if all(passed) or not any(passed) else
                        "PARTIAL"))
    r = ratio("sparse", "bigfile", "cp", big)
    out.append(("sparse length-changing replace: >= 0.8x cp",
                f"{r:.2f}x at {label}{durable('sparse', big)}", verdict(r >= 0.8)))
    r = ratio("patches", "bigfile", "python pwrite+fsync", big)
    out.append(("10,000 8-byte patches: within 3x of raw pwrite+fsync (ratio >= 0.33)",
                f"{r:.2f}x at {label} (ours {1 / r:.1f}x slower)", verdict(r >= 1 / 3)))
    r = ratio("patches", "bigfile", "bigfile --mode rewrite", big)
    bound = ratio("patches", "python pwrite+fsync", "bigfile --mode rewrite", big)
    out.append(("10,000 8-byte patches: > 100x faster than a rewrite",
                f"{r:.1f}x at {label}" + (f" (the raw pwrite loop itself: {bound:.1f}x)"
                                          if bound else ""), verdict(r > 100)))
    r = ratio("insert", "bigfile", "cp", big)
    out.append(("insert near the start: >= 0.8x cp", f"{r:.2f}x at {label}"
                f"{durable('insert', big)}", verdict(r >= 0.8)))
    r = ratio("delete", "bigfile", "cp", big)
    out.append(("delete near the start: >= 0.8x cp (same bar as insert)",
                f"{r:.2f}x at {label}{durable('delete', big)}", verdict(r >= 0.8)))
    # RSS: every one of ours run with default settings
    defaults = ("dense", "sparse", "patches", "insert", "delete")
    for size in sizes:
        peaks = [(res.get(b, size, "bigfile").peak_rss, b) for b in defaults
                 if res.get(b, size, "bigfile")]
        worst, which = max(peaks)
        out.append((f"peak RSS < 300 MB at {human(size)} (default settings)",
                    f"max {worst / MB:.0f} MB ({which})", verdict(worst < 300 * MB)))
    if not any(s >= 4 << 30 for s in sizes):
        out.append(("peak RSS < 300 MB at 4 GiB", "4 GiB not in --sizes", "NOT MEASURED"))
    payload = [(s.peak_rss, b) for b in ("payload-patch", "payload-insert")
               if (s := res.get(b, big, "bigfile")) and s.runs]
    if payload:
        worst, which = max(payload)
        out.append((f"peak RSS < 300 MB with a {human(payload_size)} --data-file",
                    f"max {worst / MB:.0f} MB ({which.split('-')[1]})",
                    verdict(worst < 300 * MB)))
    if len(sizes) > 1:
        lo, hi = min(sizes), max(sizes)
        grow = []
        for b in defaults:
            a, z = res.get(b, lo, "bigfile"), res.get(b, hi, "bigfile")
            if a and z:
                grow.append((z.peak_rss - a.peak_rss, b))
        d, which = max(grow)
        out.append((f"peak RSS does not grow with the file ({human(lo)} -> {human(hi)})",
                    f"largest growth {d / MB:+.0f} MB ({which})", verdict(d < 32 * MB)))
    rs = max(regex_sizes)
    for bench, name in (("regex", "e-mail"), ("regex-date", "date-reordering")):
        best = []
        for tool in ("bigfile workers=2 threads", "bigfile workers=2 processes"):
            scaling, perl = (ratio(bench, tool, ref, rs) for ref in ("bigfile workers=1",
                                                                      "perl -pi"))
            if scaling is not None and perl is not None:
                best.append((scaling, perl, tool.split()[-1]))
        if not best:
            continue
        detail = ", ".join(f"{k}: {s:.2f}x of 1 worker, {p:.2f}x perl" for s, p, k in best)
        scaling, perl, _ = max(best)
        rss = max(s.peak_rss for t in ("bigfile workers=1", "bigfile workers=2 threads",
                                       "bigfile workers=2 processes")
                  if (s := res.get(bench, rs, t)) and s.runs)
        out.append((f"{name} regex, 2 workers >= 1.7x of 1 worker and >= 1.0x perl -pi "
                    "(issue 14; goal 2x perl)", f"{detail} at {human(rs)}",
                    verdict(scaling >= 1.7 and perl >= 1.0)))
        out.append((f"{name} regex peak RSS < 300 MB", f"{rss / MB:.0f} MB",
                    verdict(rss < 300 * MB)))
    if s3:
        out.append(("S3 1-byte patch of a 64 MiB object sends < 12 MiB",
                    f"{s3['sent'] / (1 << 20):.2f} MiB sent for a {human(s3['object_size'])} "
                    "object", verdict(s3["sent"] < 12 << 20) if s3["object_size"] >= 64 << 20
                    else "NOT MEASURED (object < 64 MiB)"))
    if azure:
        patch, append = azure["patch"], azure["append"]
        out.append(("Azure 1-byte patch of a 64 MiB blob sends < 64 KiB (headers included)",
                    f"{patch['sent']:,} bytes sent for a {human(patch['object_size'])} blob",
                    verdict(patch["sent"] < 64 << 10) if patch["object_size"] >= 64 << 20
                    else "NOT MEASURED (blob < 64 MiB)"))
        out.append(("Azure append of 1 MiB sends < 1.1 MiB (headers included)",
                    f"{append['sent']:,} bytes sent",
                    verdict(append["sent"] < 1.1 * APPEND_SIZE)))
    all_same = all(all(s.identical) for s in res.series.values() if s.identical)
    out.append(("every output byte-identical to the reference", "cmp on every run",
                verdict(all_same and (not s3 or s3["identical"])
                        and all(a["identical"] for a in azure.values()))))
    return out
