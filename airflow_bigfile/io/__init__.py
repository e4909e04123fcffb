"""Byte I/O under the engine: positional reads and writes, fsspec storage, checksums, the
files kept beside a local target and its lock, the error policy and retries."""
