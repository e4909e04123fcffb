"""Azurite, the Azure Blob emulator (``make azurite`` installs it), as the tests
(``tests/conftest.py``) and the benchmarks (``bench/azure.py``) start it: in memory, on
127.0.0.1 and an ephemeral port, with its well-known development account."""

from __future__ import annotations

import re
import subprocess
import threading
from pathlib import Path

AZURITE = Path(__file__).resolve().parents[1] / ".azurite" / "node_modules" / ".bin" / \
    "azurite-blob"
AZURE_ACCOUNT = "devstoreaccount1"      # Azurite's well-known development account and key
AZURE_KEY = ("Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/"
             "KBHBeksoGMGw==")


def azure_connection_string(endpoint: str) -> str:
    """The connection string of Azurite's development account at ``endpoint``."""
    return (f"DefaultEndpointsProtocol=http;AccountName={AZURE_ACCOUNT};"
            f"AccountKey={AZURE_KEY};BlobEndpoint={endpoint}/{AZURE_ACCOUNT};")


def start_azurite(cwd: Path) -> tuple[subprocess.Popen[str], str]:
    """Start Azurite's blob service (working folder ``cwd``); returns the process and its
    endpoint URL. Raises ``RuntimeError`` saying why when it is missing or does not start;
    the caller kills the process when done (in memory: nothing to flush)."""
    if not AZURITE.exists():
        raise RuntimeError(f"Azurite is not installed at {AZURITE}: run `make azurite`")
    proc = subprocess.Popen(
        [str(AZURITE), "--blobHost", "127.0.0.1", "--blobPort", "0", "--inMemoryPersistence",
         "--silent", "--loose", "--skipApiVersionCheck"], cwd=cwd,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    assert proc.stdout is not None
    lines = []
    for line in proc.stdout:
        lines.append(line)
        found = re.search(r"listens on (http://127\.0\.0\.1:\d+)", line)
        if found:
            threading.Thread(target=proc.stdout.read, daemon=True).start()  # keep it drained
            return proc, found.group(1)
    proc.wait()
    raise RuntimeError("Azurite did not start:\n" + "".join(lines))
