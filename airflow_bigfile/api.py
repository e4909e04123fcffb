"""The Python front end: ``edit_file`` runs the whole pipeline on one target.

plan (aligned shards, source CRCs, manifest) -> patch shards in parallel -> resolve and
verify -> commit atomically.
"""

from __future__ import annotations

import logging
import os
import stat
import time
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from .commit import check_identity, commit_rewrite, verify_pieces
from .edits import Layout, check_offsets, coerce_edits
from .exceptions import (
    BigFileError,
    EditError,
    TargetIsDirectoryError,
    TargetNotFoundError,
    TargetError,
    TargetPermissionError,
)
from .executors import Executor, make_executor
from .lock import TargetLock
from .patch import ShardResult
from .plan import BLOCK, Manifest, Shard, boundaries, new_job_id, touched
from .recover import RecoveryResult, recover_local, staging_root
from .resolve import Piece, resolve_pieces
from .sizes import parse_size
from .storage import Source, Staging, is_local, local_identity, resolve
from .tasks import JobSpec, checksum_ranges, patch_shards

if TYPE_CHECKING:
    from fsspec.callbacks import Callback

log = logging.getLogger(__name__)

DEFAULT_SHARD_SIZE = 64 << 20
DEFAULT_ALIGN = 4096
MODES = ("auto", "inplace", "rewrite")


@dataclass
class EditResult:
    """The figures of one edit (or of what a dry run would do)."""

    target: str
    size_before: int
    size_after: int
    matches: int
    shards: int
    shards_changed: int
    bytes_written: int
    commit_mode: str
    dry_run: bool
    job_id: str
    seconds: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def default_align(shard_size: int) -> int:
    """4 KiB, or the largest power of two dividing ``shard_size`` when that is smaller, so
    an explicit shard size is honoured exactly."""
    return min(DEFAULT_ALIGN, shard_size & -shard_size)


def check_target(path: str) -> os.stat_result:
    """Stat the target, turning the usual mistakes into clear errors."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise TargetNotFoundError(f"{path}: no such file") from None
    except PermissionError as exc:
        raise TargetPermissionError(f"{path}: {exc.strerror}") from None
    if stat.S_ISDIR(st.st_mode):
        raise TargetIsDirectoryError(f"{path} is a folder, not a file")
    if not stat.S_ISREG(st.st_mode):
        raise TargetError(f"{path} is not a regular file")
    return st


def _check_writable(path: str) -> None:
    folder = os.path.dirname(os.path.abspath(path))
    if not os.access(path, os.W_OK):
        raise TargetPermissionError(f"{path} is read-only; nothing was changed")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise TargetPermissionError(f"the folder {folder} is read-only; bigfile needs to "
                                    f"write its lock and the new file there")


def _chunks(items: list[Shard], count: int) -> list[list[Shard]]:
    """Split ``items`` into about ``count`` contiguous runs of similar byte size."""
    if not items:
        return []
    total = sum(s.length for s in items) or 1
    per = total / max(1, count)
    out: list[list[Shard]] = [[]]
    acc = 0
    for shard in items:
        if out[-1] and acc >= per * len(out):
            out.append([])
        out[-1].append(shard)
        acc += shard.length
    return out


def _tail(layout: Layout) -> list[bytes | int]:
    return [*layout.tail_inserts, *( [layout.zero_fill] if layout.zero_fill else []),
            *layout.appends]


def edit_file(url: str, edits: Any, *, storage_options: dict[str, Any] | None = None,
              shard_size: int | str | None = None, workers: int | None = None,
              executor: str | Executor | None = "thread", dry_run: bool = False,
              mode: str = "auto", staging: str | None = None,
              delimiter: bytes | str | None = None, align: int | None = None,
              progress: Callback | None = None, wait: float = 0.0,
              scheduler: str | None = None, client: Any = None,
              block_size: int | str | None = None) -> EditResult:
    """Apply ``edits`` to the file at ``url`` as one atomic change.

    Parameters
    ----------
    url : a local path or an fsspec URL.
    edits : edit objects (:class:`Replace`, :class:`Patch`, ...), their JSON dicts, or JSON.
    shard_size : bytes per shard, an int or a string like ``"64MiB"``.
    workers : parallel workers (default: the CPU count).
    executor : ``"thread"`` (default), ``"process"``, ``"dask"`` or an executor object.
    dry_run : compute every figure, change nothing.
    mode : ``"auto"``, ``"inplace"`` or ``"rewrite"``.
    delimiter : move shard boundaries past this record delimiter (e.g. ``b"\\n"``).
    progress : an ``fsspec.callbacks.Callback`` told the bytes to patch and patched.
    wait : seconds to wait for another job's lock on the target.
    block_size : bytes a worker reads at a time (default 8 MiB); memory per worker is
        about this plus the longest match.

    Raises
    ------
    BigFileError
        (a subclass of it) for bad edits, conflicts, an unusable target, a source that
        changed, or a staging failure; the target is then byte-for-byte as it was.

    Examples
    --------
    >>> edit_file("data.csv", [Replace(b"@old.com", b"@new.com")])  # doctest: +SKIP
    """
    started = time.monotonic()
    edit_list = coerce_edits(edits)
    if mode not in MODES:
        raise EditError(f"mode must be one of {', '.join(MODES)}, not {mode!r}")
    shard_bytes = parse_size(shard_size if shard_size is not None else DEFAULT_SHARD_SIZE,
                             name="shard_size")
    if shard_bytes < 1:
        raise EditError(f"shard_size must be at least 1 byte, not {shard_bytes}")
    block = parse_size(block_size if block_size is not None else BLOCK, name="block_size")
    if block < 1:
        raise EditError(f"block_size must be at least 1 byte, not {block}")
    if align is not None and (isinstance(align, bool) or not isinstance(align, int)
                              or align < 1):
        raise EditError(f"align must be a positive integer, not {align!r}")
    align = align or default_align(shard_bytes)
    if isinstance(delimiter, str):
        delimiter = delimiter.encode("utf-8")
    if delimiter is not None and not delimiter:
        raise EditError("delimiter must not be empty")
    fs, path = resolve(url, storage_options)
    if not is_local(fs):
        raise BigFileError(f"{url}: only local files are supported by this version")
    check_target(path)
    if not dry_run:
        _check_writable(path)
    job_id = new_job_id()
    with TargetLock(path, wait=wait, job=job_id):
        recover_local(path)
        identity = local_identity(path)
        layout = check_offsets(edit_list, identity.size, path)
        if mode == "inplace" and not layout.same_length:
            raise EditError("mode inplace needs edits that keep the file's length "
                            "(patches and same-length literal replaces); use rewrite or auto")
        stage_root = staging or os.path.join(staging_root(path), job_id)
        spec = JobSpec(target=path, staging=stage_root, storage_options={},
                       dry_run=dry_run)
        stage = spec.open_staging()
        exe = make_executor(executor, workers, **({"scheduler": scheduler} if scheduler
                                                  else {}), **({"client": client} if client
                                                               else {}))
        try:
            with Source(fs, path) as source:
                starts = boundaries(identity.size, shard_bytes, align, source, delimiter)
            ends = [*starts[1:], identity.size]
            hit = touched(layout, starts)
            shards = [Shard(i, s, e - s, i in hit) for i, (s, e) in enumerate(zip(starts, ends))]
            todo = [s for s in shards if s.patch]
            batches = _chunks(todo, exe.workers * 4)
            crcs: dict[int, int] = {}
            for part in exe.run(checksum_ranges, [
                    (spec, [(s.index, s.offset, s.length) for s in batch]) for batch in batches]):
                crcs.update(part)
            shards = [Shard(s.index, s.offset, s.length, s.patch, crcs.get(s.index))
                      for s in shards]
            manifest = Manifest(job_id=job_id, target=path, identity=identity,
                                edits=edit_list, shards=shards, align=align,
                                delimiter=delimiter, block_size=block, staging=stage.url())
            stage.create()
            manifest.save(stage)
            if progress is not None:
                progress.set_size(sum(s.length for s in todo))
            results: dict[int, ShardResult] = {}
            for batch_results in exe.run(patch_shards, [
                    (spec, [s.index for s in batch]) for batch in batches]):
                for result in batch_results:
                    results[result.index] = result
                    if progress is not None:
                        progress.relative_update(shards[result.index].length)

            def repatch(shard: Shard, resume: list[int]) -> ShardResult:
                return patch_shards(spec, [shard.index], resume, manifest)[0]

            pieces = resolve_pieces(manifest, results, repatch, len(layout.replaces))
            size_after = sum(p.length for p in pieces) + layout.tail_length
            tail = _tail(layout)
            commit_mode = "rewrite"
            matches = sum(sum(p.result.matches) for p in pieces if p.result is not None)
            changed = sum(1 for p in pieces if p.changed)
            if dry_run:
                written = size_after
            else:
                verify_pieces(stage, pieces, manifest)
                check_identity(manifest, local_identity(path))
                with Source(fs, path) as source:
                    assert source.fileno is not None
                    written = commit_rewrite(path, source.fileno, stage, pieces, manifest,
                                             tail, size_after)
        finally:
            exe.close()
            stage.destroy()
            _remove_empty(staging_root(path))
    return EditResult(
        target=url, size_before=identity.size, size_after=size_after, matches=matches,
        shards=len(shards), shards_changed=changed, bytes_written=written,
        commit_mode=commit_mode, dry_run=dry_run, job_id=job_id,
        seconds=round(time.monotonic() - started, 6))


def _remove_empty(folder: str) -> None:
    try:
        os.rmdir(folder)
    except OSError:
        pass


def recover_target(url: str, *, storage_options: dict[str, Any] | None = None,
                   wait: float = 0.0) -> RecoveryResult:
    """Bring a target back to a consistent state after a crash (roll back an unfinished
    in-place commit, remove stale staging); a clean target is left alone."""
    fs, path = resolve(url, storage_options)
    if not is_local(fs):
        raise BigFileError(f"{url}: only local files are supported by this version")
    check_target(path)
    with TargetLock(path, wait=wait):
        return recover_local(path)


__all__ = ["EditResult", "Piece", "edit_file", "recover_target"]
