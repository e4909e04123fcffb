"""The edit vocabulary: six operations, all in the original file's coordinates.

An edit list applies as one atomic change. Each class validates its own fields when it is
built; :func:`check_offsets` validates a list against the file's size before any I/O.
"""

from __future__ import annotations

import bisect
import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

try:
    from re import _parser  # type: ignore[attr-defined]
except ImportError:  # Python 3.10
    import sre_parse as _parser  # type: ignore[no-redef]

from airflow_bigfile.exceptions import EditConflictError, EditError, PatternError
from airflow_bigfile.payload import DataFile, StagedPayload, is_ranged

if TYPE_CHECKING:
    from airflow_bigfile.io.storage import Staging

DEFAULT_MAX_MATCH = 4096


def _as_bytes(value: Any, name: str) -> bytes:
    if isinstance(value, str):
        return value.encode("utf-8")
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value)
    raise EditError(f"{name} must be bytes or text, not {type(value).__name__}")


def _as_data(value: Any, name: str) -> Any:
    """Edit data as given: ``bytes`` and file-backed payloads are kept (never copied),
    text is encoded, a mutable buffer is copied once (it could change under us)."""
    if isinstance(value, bytes) or is_ranged(value):
        return value
    return _as_bytes(value, name)


#: the largest offset or size a file can have (a signed 64-bit ``off_t``)
MAX_OFFSET = 2**63 - 1


def _as_count(value: Any, name: str, *, minimum: int = 0) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise EditError(f"{name} must be an integer, not {value!r}")
    if value < minimum:
        raise EditError(f"{name} must be >= {minimum}, not {value}")
    if value > MAX_OFFSET:
        raise EditError(f"{name} must be at most {MAX_OFFSET:,} (2**63-1, the largest "
                        f"file offset), not {value:,}")
    return value


def _bytes(n: int) -> str:
    return f"{n} byte" if n == 1 else f"{n} bytes"


def _short(data: bytes, limit: int = 24) -> str:
    text = repr(data[:limit])
    return text + ("..." if len(data) > limit else "")


@dataclass(frozen=True)
class Replace:
    """Replace every leftmost non-overlapping match of ``find`` (as ``bytes.replace`` or
    ``re.sub`` on the whole file would). ``max_match`` bounds a regex match's length."""

    find: bytes
    replace: bytes
    regex: bool = False
    max_match: int = DEFAULT_MAX_MATCH
    pattern: re.Pattern[bytes] | None = field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        find = _as_bytes(self.find, "replace: find")
        object.__setattr__(self, "find", find)
        object.__setattr__(self, "replace", _as_bytes(self.replace, "replace: replace"))
        if not isinstance(self.regex, bool):
            raise EditError(f"replace: regex must be true or false, not {self.regex!r}")
        _as_count(self.max_match, "replace: max_match", minimum=1)
        if not find:
            raise PatternError("replace: find must not be empty")
        if self.regex:
            try:
                pattern = re.compile(find)
            except (re.error, OverflowError) as exc:
                raise PatternError(f"replace: invalid regex {_short(find)}: {exc}") from exc
            except RecursionError:
                raise PatternError(f"replace: regex {_short(find)} is nested too deeply "
                                   f"for Python's re") from None
            _check_analysable(pattern)
            shortest = _min_width(pattern)
            if shortest > self.max_match:
                raise PatternError(
                    f"replace: every match of {_short(find)} is at least {shortest} bytes "
                    f"long, more than max_match={self.max_match}; raise max_match")
            try:
                _check_template(pattern, self.replace)
            except (re.error, IndexError) as exc:
                raise PatternError(
                    f"replace: invalid replacement {_short(self.replace)}: {exc}") from exc
            object.__setattr__(self, "pattern", pattern)

    @property
    def window(self) -> int:
        """How many bytes from a match's start a scan must see to settle it: the literal,
        or ``max_match`` and two more, so that an attempt that may run longer is seen to
        read past ``max_match`` bytes (see patch/reach.py)."""
        return self.max_match + 2 if self.regex else len(self.find)

    @property
    def same_length(self) -> bool:
        """Every replacement is exactly as long as its match (a literal of the same length,
        or a regex like ``(\\d+)@old\\.com`` -> ``\\1@new.org``: see
        :func:`_same_length_template`)."""
        if self.pattern is None:
            return len(self.find) == len(self.replace)
        return _same_length_template(self.pattern, self.replace)

    def describe(self) -> str:
        kind = "regex" if self.regex else "replace"
        return f"{kind}({_short(self.find)} -> {_short(self.replace)})"


def _check_analysable(pattern: re.Pattern[bytes]) -> None:
    """Refuse a pattern too deeply nested for the analysis that finds where its attempts
    can read (every regex needs it at shard edges; see patch/reach.py)."""
    from airflow_bigfile.patch.reach import reach_source

    try:
        reach_source(pattern)
    except RecursionError:
        raise PatternError(
            f"replace: regex {_short(pattern.pattern)} nests groups or repeats too deeply "
            f"for bigfile to find where its matches can reach across shards; flatten "
            f"it") from None


def _min_width(pattern: re.Pattern[bytes]) -> int:
    """The length of the shortest match ``pattern`` can produce."""
    return int(_parser.parse(pattern.pattern, pattern.flags).getwidth()[0])


def _same_length_template(pattern: re.Pattern[bytes], template: bytes) -> bool:
    """Every expansion of ``template`` is as long as its match. A match is its top-level
    capturing groups (each takes part in every match) and the rest of the top-level items;
    when the rest has one fixed width, and the template names each of those groups at most
    once, no other group, and its literals are as long as the rest and the groups it leaves
    out (which must be fixed-width too), both lengths are the same sum for every match."""
    try:
        refs, literals = _parser.parse_template(template, pattern)
    except (TypeError, ValueError):  # Pythons whose template format differs
        return False
    named = [group for _, group in refs]
    if len(set(named)) != len(named):
        return False
    tree = _parser.parse(pattern.pattern, pattern.flags)
    rest = 0
    for op, av in tree:
        if op is _parser.SUBPATTERN and av[0] in named:
            named.remove(av[0])
            continue
        low, high = _parser.SubPattern(tree.state, [(op, av)]).getwidth()
        if low != high:
            return False
        rest += low
    return not named and sum(len(lit) for lit in literals if lit is not None) == rest


def _check_template(pattern: re.Pattern[bytes], template: bytes) -> None:
    """Expand ``template`` against an empty match with ``pattern``'s groups, so a reference
    to a group that does not exist fails before any I/O."""
    names = {number: name for name, number in pattern.groupindex.items()}
    groups = "".join(f"(?P<{names[n]}>)" if n in names else "()"
                     for n in range(1, pattern.groups + 1))
    match = re.compile(groups.encode()).match(b"")
    assert match is not None
    match.expand(template)


@dataclass(frozen=True)
class Patch:
    """Overwrite ``len(data)`` bytes at ``offset``; the range must lie inside the file."""

    offset: int
    data: bytes | DataFile

    def __post_init__(self) -> None:
        _as_count(self.offset, "patch: offset")
        object.__setattr__(self, "data", _as_data(self.data, "patch: data"))
        if not self.data:
            raise EditError("patch: data must not be empty")

    def describe(self) -> str:
        return f"patch(offset={self.offset}, {_bytes(len(self.data))})"


@dataclass(frozen=True)
class Insert:
    """Insert ``data`` before the original byte at ``offset`` (``0 <= offset <= size``)."""

    offset: int
    data: bytes | DataFile

    def __post_init__(self) -> None:
        _as_count(self.offset, "insert: offset")
        object.__setattr__(self, "data", _as_data(self.data, "insert: data"))

    def describe(self) -> str:
        return f"insert(offset={self.offset}, {_bytes(len(self.data))})"


@dataclass(frozen=True)
class Delete:
    """Remove the original bytes ``[offset, offset + length)``."""

    offset: int
    length: int

    def __post_init__(self) -> None:
        _as_count(self.offset, "delete: offset")
        _as_count(self.length, "delete: length", minimum=1)

    def describe(self) -> str:
        return f"delete(offset={self.offset}, length={self.length})"


@dataclass(frozen=True)
class Truncate:
    """Keep the first ``size`` original bytes; a larger ``size`` extends with zero bytes."""

    size: int

    def __post_init__(self) -> None:
        _as_count(self.size, "truncate: size")

    def describe(self) -> str:
        return f"truncate(size={self.size})"


@dataclass(frozen=True)
class Append:
    """Add ``data`` after the end of the file; several appends keep their order."""

    data: bytes | DataFile

    def __post_init__(self) -> None:
        object.__setattr__(self, "data", _as_data(self.data, "append: data"))

    def describe(self) -> str:
        return f"append({_bytes(len(self.data))})"


Edit = Replace | Patch | Insert | Delete | Truncate | Append
EDIT_TYPES: dict[str, type] = {
    "replace": Replace, "patch": Patch, "insert": Insert,
    "delete": Delete, "truncate": Truncate, "append": Append,
}
_FIELDS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    # op: (required fields, optional fields)
    "replace": (("find", "replace"), ("regex", "max_match")),
    "patch": (("offset", "data"), ()),
    "insert": (("offset", "data"), ()),
    "delete": (("offset", "length"), ()),
    "truncate": (("size",), ()),
    "append": (("data",), ()),
}
_BYTE_FIELDS = ("data", "find", "replace")


def label(index: int, edit: Edit) -> str:
    """Name an edit for error messages: ``edit #2 patch(offset=10, 4 bytes)``."""
    return f"edit #{index + 1} {edit.describe()}"


def edit_from_json(obj: Any, index: int = 0, staging: Staging | None = None) -> Edit:
    """Build one edit from its JSON form (``{"op": "patch", "offset": 3, "data": "x"}``);
    ``data`` may also come as ``data_hex``, or from a local file as ``data_file``. With
    ``staging`` (a manifest being loaded), ``data_staged`` names a payload staged there."""
    where = f"edit #{index + 1}"
    if not isinstance(obj, dict):
        raise EditError(f"{where}: expected an object with an 'op' field, got {obj!r}")
    if "op" not in obj:
        raise EditError(f"{where}: missing field 'op'; expected one of {', '.join(_FIELDS)}")
    op = obj["op"]
    if op not in _FIELDS:
        raise EditError(f"{where}: unknown op {op!r}; expected one of {', '.join(_FIELDS)}")
    required, optional = _FIELDS[op]
    allowed = set(required) | set(optional) | {f"{f}_hex" for f in _BYTE_FIELDS} | {"op"}
    if "data" in required:
        allowed |= {"data_file", "data_staged"} if staging is not None else {"data_file"}
    unknown = sorted(set(obj) - allowed)
    if unknown:
        raise EditError(f"{where} ({op}): unknown field(s) {', '.join(unknown)}")
    kwargs: dict[str, Any] = {}
    for name in required + optional:
        hex_name = f"{name}_hex"
        given = [f for f in (name, hex_name, f"{name}_file", f"{name}_staged") if f in obj]
        if len(given) > 1:
            both = "not both" if len(given) == 2 else "only one"
            raise EditError(f"{where} ({op}): give {' or '.join(given)}, {both}")
        if f"{name}_file" in obj:
            if not isinstance(obj[f"{name}_file"], str):
                raise EditError(f"{where} ({op}): {name}_file must be a path string")
            kwargs[name] = DataFile(obj[f"{name}_file"])
        elif f"{name}_staged" in obj:
            assert staging is not None
            try:
                ref = obj[f"{name}_staged"]
                kwargs[name] = StagedPayload(staging, ref["name"], ref["size"], ref["crc32c"])
            except (KeyError, TypeError) as exc:
                raise EditError(f"{where} ({op}): {name}_staged is malformed") from exc
        elif name in _BYTE_FIELDS and hex_name in obj:
            try:
                kwargs[name] = bytes.fromhex(obj[hex_name])
            except (TypeError, ValueError) as exc:
                raise EditError(f"{where} ({op}): {hex_name} is not valid hex") from exc
        elif name in obj:
            if name in _BYTE_FIELDS and not isinstance(obj[name], str):
                raise EditError(f"{where} ({op}): {name} must be a string")
            kwargs[name] = obj[name]
        elif name in required:
            raise EditError(f"{where} ({op}): missing field {name!r}")
    try:
        return EDIT_TYPES[op](**kwargs)
    except EditError as exc:
        raise type(exc)(f"{where}: {exc}") from None


def edits_from_json(data: Any, staging: Staging | None = None) -> list[Edit]:
    """Build an edit list from parsed JSON (a list of objects) or a JSON string
    (``staging``: see :func:`edit_from_json`)."""
    if isinstance(data, (str, bytes)):
        try:
            data = json.loads(data)
        except ValueError as exc:
            raise EditError(f"edits are not valid JSON: {exc}") from exc
        except RecursionError:
            raise EditError("edits are nested too deeply to be a list of edit "
                            "objects") from None
    if isinstance(data, dict) and "edits" in data:
        data = data["edits"]
    if not isinstance(data, list):
        raise EditError("edits must be a JSON list of objects, each with an 'op' field")
    return [edit_from_json(obj, i, staging) for i, obj in enumerate(data)]


def edit_to_json(edit: Edit) -> dict[str, Any]:
    """The JSON form of an edit; bytes that are not UTF-8 use the ``*_hex`` fields."""
    op = next(name for name, cls in EDIT_TYPES.items() if isinstance(edit, cls))
    required, optional = _FIELDS[op]
    out: dict[str, Any] = {"op": op}
    for name in required + optional:
        value = getattr(edit, name)
        if isinstance(value, DataFile):
            out[f"{name}_file"] = value.path
        elif isinstance(value, StagedPayload):
            out[f"{name}_staged"] = value.to_json()
        elif isinstance(value, bytes):
            try:
                out[name] = value.decode("utf-8")
            except UnicodeDecodeError:
                out[f"{name}_hex"] = value.hex()
        else:
            out[name] = value
    return out


def coerce_edits(edits: Any) -> list[Edit]:
    """Accept edit objects, their JSON dicts, or a JSON string, and return edit objects."""
    if isinstance(edits, (str, bytes)):
        return edits_from_json(edits)
    if isinstance(edits, (Replace, Patch, Insert, Delete, Truncate, Append, dict)):
        edits = [edits]
    if not isinstance(edits, Iterable):
        raise EditError(f"edits must be a list of edits, not {type(edits).__name__}")
    out: list[Edit] = []
    for i, edit in enumerate(edits):
        if isinstance(edit, dict):
            out.append(edit_from_json(edit, i))
        elif isinstance(edit, (Replace, Patch, Insert, Delete, Truncate, Append)):
            out.append(edit)
        else:
            raise EditError(f"edit #{i + 1}: not an edit: {edit!r}")
    return out


@dataclass(frozen=True)
class Layout:
    """An edit list resolved against a file size, with its offset conflicts checked.

    ``ranges`` are ``(start, end, new_bytes, edit_index)`` covering original bytes (patches,
    deletes, and the part a truncate cuts off), sorted by start. ``inserts`` are
    ``(offset, data, edit_index)`` before original byte ``offset < size``, in list order per
    offset. ``tail`` is what follows the last original byte: inserts at ``size``, the zero
    bytes a growing truncate adds, then appends. Replace matches are found later, by shard.
    """

    size: int
    edits: tuple[Edit, ...]
    ranges: tuple[tuple[int, int, bytes, int], ...]
    inserts: tuple[tuple[int, bytes, int], ...]
    replaces: tuple[tuple[int, Replace], ...]
    tail_inserts: tuple[bytes, ...]
    zero_fill: int
    appends: tuple[bytes, ...]
    truncate_at: int | None
    truncate_index: int | None

    @property
    def same_length(self) -> bool:
        """True when every edit keeps the file's length (patches and same-length replaces)."""
        return (not self.inserts and not self.tail_inserts and not self.appends
                and self.zero_fill == 0 and self.truncate_at is None
                and all(len(data) == end - start for start, end, data, _ in self.ranges)
                and all(r.same_length for _, r in self.replaces))

    @property
    def tail_length(self) -> int:
        return sum(map(len, self.tail_inserts)) + self.zero_fill + sum(map(len, self.appends))

    def owner(self, index: int) -> str:
        return label(index, self.edits[index])


def check_offsets(edits: Sequence[Edit], size: int, name: str = "the file") -> Layout:
    """Validate ``edits`` against a file of ``size`` bytes and return their :class:`Layout`.

    Raises :class:`EditError` for an offset outside the file and
    :class:`EditConflictError` naming both edits when two of them touch the same bytes.
    """
    ranges: list[tuple[int, int, bytes, int]] = []
    inserts: list[tuple[int, bytes, int]] = []
    tail_inserts: list[tuple[int, bytes]] = []
    replaces: list[tuple[int, Replace]] = []
    appends: list[bytes] = []
    truncate: tuple[int, int] | None = None
    for i, edit in enumerate(edits):
        if isinstance(edit, Patch):
            end = edit.offset + len(edit.data)
            if end > size:
                raise EditError(f"{label(i, edit)} ends at {end}, past the end of {name} "
                                f"(size {size})")
            ranges.append((edit.offset, end, edit.data, i))
        elif isinstance(edit, Delete):
            end = edit.offset + edit.length
            if end > size:
                raise EditError(f"{label(i, edit)} ends at {end}, past the end of {name} "
                                f"(size {size})")
            ranges.append((edit.offset, end, b"", i))
        elif isinstance(edit, Insert):
            if edit.offset > size:
                raise EditError(f"{label(i, edit)}: offset {edit.offset} is past the end of "
                                f"{name} (size {size})")
            if edit.offset == size:
                tail_inserts.append((i, edit.data))
            else:
                inserts.append((edit.offset, edit.data, i))
        elif isinstance(edit, Truncate):
            if truncate is not None:
                first = truncate[1]
                raise EditConflictError(f"{label(first, edits[first])} conflicts with "
                                        f"{label(i, edit)}: only one truncate per edit list")
            truncate = (edit.size, i)
        elif isinstance(edit, Append):
            appends.append(edit.data)
        elif isinstance(edit, Replace):
            replaces.append((i, edit))
        else:
            raise EditError(f"edit #{i + 1}: not an edit: {edit!r}")
    truncate_at = truncate_index = None
    zero_fill = 0
    if truncate is not None:
        truncate_at, truncate_index = truncate
        if truncate_at < size:
            ranges.append((truncate_at, size, b"", truncate_index))
        else:
            zero_fill = truncate_at - size
    ranges.sort(key=lambda r: (r[0], r[1]))
    for (_s1, e1, _, i1), (s2, e2, _, i2) in zip(ranges, ranges[1:], strict=False):
        if s2 < e1:
            a, b = sorted((i1, i2))
            raise EditConflictError(f"{label(a, edits[a])} conflicts with {label(b, edits[b])}: "
                                    f"both change bytes {s2}..{min(e1, e2)}")
    inserts.sort(key=lambda ins: ins[0])
    starts = [r[0] for r in ranges]
    for offset, _, i in inserts:
        k = bisect.bisect_left(starts, offset) - 1
        if k >= 0 and ranges[k][0] < offset < ranges[k][1]:
            j = ranges[k][3]
            raise EditConflictError(f"{label(i, edits[i])} conflicts with {label(j, edits[j])}: "
                                    f"the insert falls inside bytes {ranges[k][0]}..{ranges[k][1]}")
    if truncate_at is not None and truncate_at < size:
        for i, _ in tail_inserts:
            raise EditConflictError(
                f"{label(i, edits[i])} conflicts with "
                f"{label(truncate_index, edits[truncate_index])}: the insert is past the new size")
    layout = Layout(
        size=size, edits=tuple(edits), ranges=tuple(ranges), inserts=tuple(inserts),
        replaces=tuple(replaces), tail_inserts=tuple(d for _, d in tail_inserts),
        zero_fill=zero_fill, appends=tuple(appends), truncate_at=truncate_at,
        truncate_index=truncate_index,
    )
    end = (size if truncate_at is None else min(size, truncate_at)) + layout.tail_length
    if end > MAX_OFFSET:
        raise EditError(f"the edits would make {name} {end:,} bytes long, more than any "
                        f"file can be ({MAX_OFFSET:,}, 2**63-1)")
    return layout
