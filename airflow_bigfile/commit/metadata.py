"""Keep a file's metadata and hard links when a commit replaces it.

A rewrite (and fsspec ``wb``) builds a new file and renames it over the target, so the
target gets a new inode. Before the rename, everything the old inode carried is put on the
new one, or the edit is refused and the target stays as it was:

1. owner, then group (``fchown``): refused when not permitted, e.g. a user rewriting
   someone else's file;
2. every extended attribute, POSIX ACLs included (the kernel keeps them as the
   ``system.posix_acl_*`` attributes); an ACL the new file inherited from its folder's
   default ACL is removed when the original had none;
3. every mode bit, setuid, setgid and sticky included (``fchmod`` last: ``chown`` clears
   setuid and setgid, and would clear file capabilities set before it).

A rename also cuts the file from its other hard links (they keep the old bytes), so a
commit that replaces a file with more than one link is refused unless the caller breaks the
links on purpose.
"""

from __future__ import annotations

import errno
import os
import stat

from airflow_bigfile.exceptions import HardLinkError, TargetPermissionError

ACL_NAMES = ("system.posix_acl_access", "system.posix_acl_default")
_NO_XATTRS = {errno.ENOTSUP, errno.EOPNOTSUPP, errno.ENOSYS}


def check_hardlinks(st: os.stat_result, url: str, break_hardlinks: bool) -> None:
    """Refuse to replace a file that has other hard links, unless ``break_hardlinks``."""
    if st.st_nlink > 1 and not break_hardlinks:
        raise HardLinkError(
            f"{url} has {st.st_nlink} links (hard links to one file); this edit replaces "
            f"the file, which would leave the other names with the old bytes; nothing was "
            f"changed. Use same-length edits (committed in place, links kept) or pass "
            f"break_hardlinks=True (CLI --break-hardlinks) to give {url} a file of its own")


def refuse_linked_rewrite(path: str, url: str, break_hardlinks: bool) -> None:
    """Before any I/O: a forced rewrite of a multiply-linked ``path`` is refused."""
    check_hardlinks(os.stat(path), url, break_hardlinks)


def keep_metadata(source: int | str, fd: int, st: os.stat_result, url: str) -> None:
    """Give the new file ``fd`` the owner, group, extended attributes, ACLs and mode bits
    of the original (``source``: its fd or path; ``st``: its stat).

    Raises :class:`TargetPermissionError` naming what cannot be kept; the caller then
    removes the new file and leaves the target alone."""
    _keep_owner(fd, st, url)
    _copy_xattrs(source, fd, url)
    mode = stat.S_IMODE(st.st_mode)
    os.fchmod(fd, mode)
    kept = stat.S_IMODE(os.fstat(fd).st_mode)
    if kept != mode:
        raise TargetPermissionError(
            f"cannot keep the mode {mode:#o} of {url} (the system set {kept:#o}); "
            f"nothing was changed")


def _refusal(what: str, url: str, exc: OSError, verb: str = "keep") -> TargetPermissionError:
    reason = "not permitted" if exc.errno in (errno.EPERM, errno.EACCES) else (
        exc.strerror or str(exc))
    return TargetPermissionError(f"cannot {verb} {what} of {url} ({reason}); nothing was "
                                 f"changed. Run the edit as the file's owner or as root")


def _keep_owner(fd: int, st: os.stat_result, url: str) -> None:
    if not hasattr(os, "fchown"):  # Windows: no POSIX owners
        return
    now = os.fstat(fd)
    if now.st_uid != st.st_uid:
        try:
            os.fchown(fd, st.st_uid, -1)
        except OSError as exc:
            raise _refusal(f"the owner uid {st.st_uid}", url, exc) from exc
    if now.st_gid != st.st_gid:
        try:
            os.fchown(fd, -1, st.st_gid)
        except OSError as exc:
            raise _refusal(f"the group gid {st.st_gid}", url, exc) from exc


def _describe(name: str) -> str:
    return f"the POSIX ACL ({name})" if name in ACL_NAMES else f"the extended attribute {name}"


def _copy_xattrs(source: int | str, fd: int, url: str) -> None:
    if not hasattr(os, "listxattr"):  # only Linux exposes them through os
        return
    try:
        names = os.listxattr(source)
    except OSError as exc:
        if exc.errno in _NO_XATTRS:
            return
        raise _refusal("the extended attributes", url, exc) from exc
    for name in names:
        try:
            value = os.getxattr(source, name)
        except OSError as exc:
            if exc.errno == errno.ENODATA:  # removed since it was listed
                continue
            raise _refusal(_describe(name), url, exc) from exc
        try:
            os.setxattr(fd, name, value)
        except OSError as exc:
            raise _refusal(_describe(name), url, exc) from exc
    for name in set(ACL_NAMES) - set(names):
        try:
            os.removexattr(fd, name)
        except OSError as exc:
            if exc.errno not in (errno.ENODATA, *_NO_XATTRS):
                raise _refusal(f"{_describe(name)} inherited from the folder by the new file",
                               url, exc, verb="drop") from exc
