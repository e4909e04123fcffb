"""Sample data shared by the Airflow tests (operators, DAG runs, the deployment): CSV rows
with e-mail addresses, the example DAGs' folder and mask pattern, and the model over JSON
edits."""

from __future__ import annotations

from pathlib import Path

from airflow_bigfile.edits import coerce_edits
from tests.model import apply_model

REPO = Path(__file__).resolve().parents[1]
EXAMPLES = REPO / "dags_examples"
MASK_RE = rb"@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}"
DOMAINS = [b"old.com", b"mail.example.org", b"corp.co.uk", b"x-y.net"]


def model(data: bytes, edits: list) -> bytes:
    """The in-memory model's bytes for ``edits`` given in their JSON form."""
    return apply_model(data, coerce_edits(edits))


def sample_csv(rows: int, seed: int = 0) -> bytes:
    """Deterministic CSV rows with e-mail addresses, semicolons and a few odd bytes."""
    out = [b"id,email,amount;note\n"]
    for i in range(rows):
        domain = DOMAINS[(i * 7 + seed) % len(DOMAINS)]
        out.append(b"%d,user%d@%s,%d;n%d\n" % (i, i, domain, (i * 37) % 1000, i % 13))
    return b"".join(out)
