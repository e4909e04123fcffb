"""The benchmark suite behind ``make bench``: ours against sed, cp, perl and the raw syscalls.

One module per job: ``data`` (generated files and fresh copies), ``launcher`` (a measured
process: wall time and peak RSS), ``suite`` (the benchmarks and the run over every size),
``s3`` and ``azure`` (moto and Azurite behind the tests' counting proxy, ``tests/proxy.py``),
``results`` (the figures, saved as JSON),
``verdicts`` (the targets of issue 6), ``report`` (docs/benchmarks.md and the README's
table), ``charts`` and ``cli``. ``bench/run.py`` is the entry point; ``bench/ltm.py`` (``make
bench-ltm``) measures files larger than memory with the same parts.
"""

from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
