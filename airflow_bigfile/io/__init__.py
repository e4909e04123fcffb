"""Byte I/O under the engine: positional reads and writes, fsspec storage, checksums, the
error policy and retries."""
