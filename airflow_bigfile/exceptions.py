"""Errors raised by airflow-bigfile.

Every error the engine raises on purpose is a subclass of :class:`BigFileError`; where a
built-in fits, the leaf is also that built-in, so ``except ValueError`` keeps working::

    BigFileError
    ├── EditError (ValueError)                 an edit is malformed or out of range
    │   ├── EditConflictError                  two edits touch the same bytes
    │   ├── PatternError                       a bad regex, a zero-length or too-long match
    │   │   └── RegexTimeoutError              a regex ran on ``re`` past regex_timeout
    │   └── PayloadError                       a data file is missing, unreadable or changed
    ├── TargetError                            the target cannot be edited
    │   ├── TargetNotFoundError (FileNotFoundError)
    │   ├── TargetIsDirectoryError (IsADirectoryError)
    │   ├── TargetPermissionError (PermissionError)
    │   ├── TargetLockedError                  another job holds the target's lock
    │   └── HardLinkError                      a rewrite would cut the file's other hard links
    ├── SourceChangedError                     the target changed between plan and commit
    ├── StagingError                           staged shards or manifest missing or unusable
    │   └── ShardChecksumError (ValueError)    a staged shard or source range fails its CRC
    ├── StorageError (OSError)                 a permanent I/O failure (EIO, ENOSPC, ...)
    │   └── TransientStorageError              a lost connection or timeout that outlived
    │                                          the engine's retries: retry the job later
    └── RecoveryError                          a journal that cannot be rolled back safely
"""

from __future__ import annotations


class BigFileError(Exception):
    """Base class of every error airflow-bigfile raises on purpose."""


class EditError(BigFileError, ValueError):
    """An edit is malformed, or does not fit the file it is applied to."""


class EditConflictError(EditError):
    """Two edits cover the same bytes of the original file."""


class PatternError(EditError):
    """A search pattern is invalid, matches zero bytes, or a match exceeds ``max_match``."""


class RegexTimeoutError(PatternError):
    """A regex that runs on Python's ``re`` scanned one block longer than ``regex_timeout``
    (it backtracks); the edit stopped and nothing was changed."""


class PayloadError(EditError):
    """Edit data given as a file is missing, unreadable, or changed while the edit ran."""


class TargetError(BigFileError):
    """The target cannot be edited."""


class TargetNotFoundError(TargetError, FileNotFoundError):
    """The target does not exist."""


class TargetIsDirectoryError(TargetError, IsADirectoryError):
    """The target is a directory, not a file."""


class TargetPermissionError(TargetError, PermissionError):
    """The target (or its folder) may not be written."""


class TargetLockedError(TargetError):
    """Another job holds the target's lock."""


class HardLinkError(TargetError):
    """The file has other hard links that a rewrite would cut off (they would keep the old
    bytes); pass ``break_hardlinks=True`` to rewrite it anyway."""


class SourceChangedError(BigFileError):
    """The target changed between planning and commit; nothing was committed."""


class StagingError(BigFileError):
    """The staging area, its manifest or a staged shard is missing or inconsistent."""


class ShardChecksumError(StagingError, ValueError):
    """A staged shard or a source range does not match its CRC32C."""


class StorageError(BigFileError, OSError):
    """A permanent I/O failure (EIO, ENOSPC, EACCES, ...) that retrying will not cure."""


class TransientStorageError(StorageError):
    """A transient failure (a lost connection, a timeout, throttling) that outlived the
    engine's own retries; nothing was changed and running the job again later may succeed
    (the Airflow operators let Airflow retry it)."""


class RecoveryError(BigFileError):
    """A leftover journal could not be rolled back safely."""
