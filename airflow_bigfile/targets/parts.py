"""The parts of an S3 multipart upload, sized within S3's rules: every part but the last at
least :data:`MIN_PART`, none above :data:`MAX_PART`, at most :data:`MAX_PARTS` of them.

:class:`Parts` turns the new object, given in order as runs of the old object's bytes
(``copy``) and new bytes (``data``), into server-side copy parts and uploaded parts. A copy
run long enough stands as copy parts of its own; a shorter one, or the head of one that
follows new bytes, is read and sent with them, so a small change costs about one minimum
part. It does no I/O itself: it calls the ``read``, ``upload`` and ``copy`` functions it is
given (the S3 target passes the store's calls), so the sizing is tested without a store.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from airflow_bigfile.exceptions import StagingError

MIN_PART = 5 << 20
MAX_PART = 5 << 30
MAX_PARTS = 10_000


class Parts:
    """Builds the parts of one multipart upload, in order; :attr:`done` lists them as
    ``CompleteMultipartUpload`` wants them and :attr:`sent` counts the uploaded bytes.

    Parameters
    ----------
    part_size : new bytes are sent once this many are pending (at least :data:`MIN_PART`).
    read : ``read(offset, length)`` -> that many bytes of the old object.
    upload : ``upload(number, body)`` -> the ETag of the uploaded part.
    copy : ``copy(number, offset, length)`` -> the ETag of the part copied from the old
        object's ``[offset, offset + length)``.
    """

    def __init__(self, part_size: int, *, read: Callable[[int, int], bytes],
                 upload: Callable[[int, bytes], str],
                 copy: Callable[[int, int, int], str]) -> None:
        self.part_size = part_size
        self._read, self._upload_part, self._copy_part = read, upload, copy
        self.buf = bytearray()
        self.run: list[int] | None = None  # pending copy run [offset, length]
        self.done: list[dict[str, Any]] = []
        self.sent = 0

    def copy(self, offset: int, length: int) -> None:
        """The next ``length`` bytes of the new object are the old one's from ``offset``."""
        if self.run and self.run[0] + self.run[1] == offset:
            self.run[1] += length
        else:
            self._end_run(last=False)
            self.run = [offset, length]

    def data(self, data: bytes | memoryview) -> None:
        """The next bytes of the new object are ``data``."""
        self._end_run(last=False)
        self.buf += data
        if len(self.buf) >= self.part_size:
            self._upload()

    def finish(self) -> None:
        """Send what is pending; an empty object still gets its one (empty) part."""
        self._end_run(last=True)
        if self.buf or not self.done:
            self._upload()

    def _end_run(self, *, last: bool) -> None:
        if not self.run:
            return
        offset, length = self.run
        self.run = None
        if self.buf:  # pending bytes must grow to a full part before a copy part follows
            take = min(length, max(0, MIN_PART - len(self.buf)))
            self.buf += self._read(offset, take)
            offset, length = offset + take, length - take
            if length >= MIN_PART or (last and length > 0):
                self._upload()
            elif length:
                self.buf += self._read(offset, length)
                length = 0
            if len(self.buf) >= self.part_size:
                self._upload()
        if length >= MIN_PART or (last and length > 0 and not self.buf):
            count = -(-length // MAX_PART)
            step = -(-length // count)
            for start in range(offset, offset + length, step):
                number = self._number()
                etag = self._copy_part(number, start, min(step, offset + length - start))
                self.done.append({"PartNumber": number, "ETag": etag})
        elif length:
            self.buf += self._read(offset, length)

    def _number(self) -> int:
        number = len(self.done) + 1
        if number > MAX_PARTS:
            raise StagingError(f"the new object would need more than {MAX_PARTS:,} parts; "
                               "use a larger shard size")
        return number

    def _upload(self) -> None:
        number = self._number()
        body = bytes(self.buf)
        self.buf = bytearray()
        etag = self._upload_part(number, body)
        self.sent += len(body)
        self.done.append({"PartNumber": number, "ETag": etag})
