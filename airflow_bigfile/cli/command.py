"""The ``bigfile`` command: a thin front end that turns arguments into engine calls.

Exit status: 0 on success, 1 on an operational error (one ``bigfile: error: ...`` line on
stderr, no traceback), 2 on a usage error, 130 on SIGINT (Ctrl-C) and 143 on SIGTERM: the
job is cancelled and the target left as it was. A signal that arrives after the commit point
(the rename of a rewrite, the removal of an in-place journal) is too late to cancel: the run
finishes, warns that the edit was committed and exits 0.

Only the standard library is imported at module level, so ``bigfile --help`` stays quick;
the engine (fsspec, pyarrow) is imported when a command runs.
"""

from __future__ import annotations

import argparse
import gc
import json
import logging
import os
import re
import signal
import stat
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, NoReturn

if TYPE_CHECKING:
    from airflow_bigfile.edits import Edit

PROG = "bigfile"
EXIT_OK, EXIT_ERROR, EXIT_USAGE = 0, 1, 2


class InputError(Exception):
    """Bad input found after parsing (unreadable --data-file, bad hex, bad JSON): exit 1."""


# ---------------------------------------------------------------------------- parsing


def _count(text: str) -> int:
    """A plain integer (workers, --max-match, --preview)."""
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None


def _positive_int(text: str) -> int:
    value = _count(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def _bytes_count(text: str) -> int:
    """A byte offset, length or size: ``4096``, ``4KiB``, ``1.5GB`` or hex ``0x1000``."""
    from airflow_bigfile.sizes import parse_size

    try:
        return int(text, 16) if text.strip().lower().startswith("0x") else parse_size(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected bytes such as 4096, 4KiB, 1.5GB or 0x1000, got {text!r}") from None


def _positive_bytes(text: str) -> int:
    value = _bytes_count(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1 byte, got {text!r}")
    return value


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of seconds, got {text!r}") from None
    if not value >= 0:  # also rejects nan
        raise argparse.ArgumentTypeError(f"must be >= 0, got {text}")
    return value


def _timeout(text: str) -> float:
    """A positive, finite number of seconds (``--regex-timeout``)."""
    from airflow_bigfile.exceptions import EditError
    from airflow_bigfile.scan_clock import check_timeout

    try:
        return check_timeout(float(text))  # type: ignore[return-value]
    except (ValueError, EditError):
        raise argparse.ArgumentTypeError(
            f"expected a positive number of seconds, got {text!r}") from None


def _regex_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--regex-timeout", type=_timeout, metavar="SECONDS",
                        help="stop the edit (file unchanged) when Python's re spends more "
                             "than SECONDS scanning one block (8 MiB) for one regex; "
                             "regexes on RE2 run in linear time (default: no bound)")


def _storage_option(text: str) -> tuple[str, Any]:
    """``KEY=VALUE``; VALUE is read as JSON when it parses (``true``, ``5``, ``{...}``)."""
    key, sep, raw = text.partition("=")
    if not sep or not key.strip():
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    try:
        value: Any = json.loads(raw)
    except ValueError:
        value = raw
    return key.strip(), value


def _delimiter(text: str) -> bytes:
    """Text with backslash escapes (``'\\n'``, ``'\\x00'``) as bytes."""
    import codecs

    try:
        value = codecs.escape_decode(text.encode("utf-8"))[0]
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"bad escape in {text!r}: {exc}") from None
    if not value:
        raise argparse.ArgumentTypeError("must not be empty")
    return value


def _common_options(*, edit: bool) -> argparse.ArgumentParser:
    parent = argparse.ArgumentParser(add_help=False)
    group = parent.add_argument_group("common options")
    if edit:
        group.add_argument("--shard-size", type=_positive_bytes, metavar="SIZE",
                           help="bytes per shard, e.g. 64MiB (default: chosen by the engine)")
        group.add_argument("--workers", type=_positive_int, metavar="N",
                           help="parallel workers (default: chosen by the engine)")
        group.add_argument("--mode", choices=("auto", "inplace", "rewrite"), default="auto",
                           help="commit mode (default: auto)")
        group.add_argument("--staging", metavar="URL",
                           help="where shards are staged (default: beside the target)")
        group.add_argument("--break-hardlinks", action="store_true",
                           help="allow a rewrite of a file with other hard links (they keep "
                                "the old bytes); without it such a file is edited in place "
                                "or the edit is refused")
        group.add_argument("--verify", choices=("fast", "full"),
                           help="fast: every byte read once and written once, CRC32Cs taken "
                                "as bytes stream, the file's identity checked before the "
                                "commit; full: also read the source and the new bytes "
                                "again (default: fast)")
    group.add_argument("--storage-option", type=_storage_option, action="append", default=[],
                       metavar="KEY=VALUE", dest="storage_options",
                       help="fsspec storage option, repeatable; VALUE is JSON if it parses "
                            "(true, 5, {...}), else text")
    if edit:
        group.add_argument("--dry-run", action="store_true",
                           help="compute the figures, change nothing")
        group.add_argument("--preview", type=_positive_int, metavar="N",
                           help="show the first N changes (offset, old and new bytes in "
                                "context) and stop reading there; implies --dry-run")
    group.add_argument("--json", action="store_true",
                       help="print the result as one JSON object on stdout")
    group.add_argument("--no-progress", action="store_true",
                       help="no progress bar (it is drawn only when stderr is a terminal)")
    more = parent.add_argument_group("more options")
    more.add_argument("--wait", type=_seconds, metavar="SECONDS",
                      help="wait up to SECONDS for another job's lock (default: 0)")
    if edit:
        more.add_argument("--executor", choices=("thread", "process", "dask"),
                          help="how workers run (default: thread)")
        more.add_argument("--scheduler", metavar="ADDRESS",
                          help="Dask scheduler address (implies --executor dask)")
        more.add_argument("--delimiter", type=_delimiter, metavar="TEXT",
                          help=r"align shards to records ending in TEXT (escapes such as \n)")
    return parent


def _data_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("data (one required)").add_mutually_exclusive_group(
        required=True)
    group.add_argument("--data", metavar="TEXT", help="the bytes, as UTF-8 text")
    group.add_argument("--data-hex", "--hex", metavar="HEX", dest="data_hex",
                       help="the bytes, in hex (spaces allowed); --hex is the same option")
    group.add_argument("--data-file", metavar="PATH",
                       help="the bytes, streamed from a local file (/dev/stdin reads a pipe)")


class Parser(argparse.ArgumentParser):
    """argparse with no abbreviated options, a suggestion for a mistyped option or command,
    and every mistake after a subcommand reported with that subcommand's usage."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("allow_abbrev", False)
        kwargs.setdefault("formatter_class", argparse.RawDescriptionHelpFormatter)
        super().__init__(*args, **kwargs)

    def parse_known_args(self, args: Sequence[str] | None = None,  # type: ignore[override]
                         namespace: argparse.Namespace | None = None
                         ) -> tuple[argparse.Namespace, list[str]]:
        args = sys.argv[1:] if args is None else list(args)
        if self._subparsers is not None:
            return super().parse_known_args(args, namespace)
        # A subcommand: an unknown option is named before "required: --find" can hide it,
        # and left-over arguments are its error, not the top-level parser's.
        self._check_options(args)
        namespace, extras = super().parse_known_args(args, namespace)
        if extras:
            self.error(f"unrecognized arguments: {' '.join(extras)}")
        return namespace, []

    def _check_options(self, args: Sequence[str]) -> None:
        for arg in args:
            if arg == "--":
                return
            name = arg.split("=", 1)[0]
            if (not arg.startswith("-") or arg == "-" or " " in name
                    or self._negative_number_matcher.match(arg)):
                continue
            if name not in self._option_string_actions:
                self.error(f"unrecognized option {name}")

    def error(self, message: str) -> NoReturn:  # type: ignore[override]
        self.print_usage(sys.stderr)
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message}{self._hint(message)}\n")

    def _hint(self, message: str) -> str:
        """``; did you mean --find?`` for an unknown option or command close to a real one."""
        import difflib

        choice = re.search(r"invalid choice: '([^']*)' \(choose from (.*)\)", message)
        if choice:
            word, options = choice.group(1), re.findall(r"'([^']*)'", choice.group(2))
        else:
            unknown = re.search(r"unrecognized (?:option|arguments):? (\S+)", message)
            if not unknown:
                return ""
            word = unknown.group(1).split("=", 1)[0]
            options = [o for o in self._option_string_actions if o.startswith("--")]
        close = difflib.get_close_matches(word, options, n=1, cutoff=0.6)
        return f"; did you mean {close[0]}?" if close else ""


#: bash and zsh completion of local paths (what shtab.FILE holds), for URL arguments
_COMPLETE_FILES = {"bash": "_shtab_compgen_files", "zsh": "_files"}

_EXAMPLES = {
    "replace": """\
  bigfile replace data.csv --find '@old.com' --replace '@new.org'
  bigfile replace 'logs/*.csv' --regex --find 'user(\\d+)@old\\.com' --replace 'u\\1@new.org'
  bigfile replace data.csv --find ';' --replace ',' --preview 5""",
    "patch": """\
  bigfile patch data.bin --offset 4KiB --data-hex 'deadbeef'
  bigfile patch data.bin --offset 0x1f40 --data 'OK'""",
    "insert": """\
  bigfile insert data.csv --offset 0 --data-hex 'efbbbf'        # a UTF-8 BOM
  bigfile insert data.csv --offset 0 --data $'id,email,score\\n'""",
    "delete": """\
  bigfile delete data.csv --offset 1000 --length 250""",
    "truncate": """\
  bigfile truncate data.log --size 1GiB                  # cut a corrupt tail""",
    "append": """\
  bigfile append data.csv --data-file today.csv
  bigfile append data.csv --data $'last,row\\n'""",
    "apply": """\
  bigfile apply data.csv --edits fixes.json
  generate-edits | bigfile apply data.csv --edits -""",
    "recover": """\
  bigfile recover data.csv""",
    "completion": """\
  bigfile completion bash > ~/.local/share/bash-completion/completions/bigfile
  bigfile completion zsh > ~/.zfunc/_bigfile""",
}


def build_parser() -> argparse.ArgumentParser:
    """The ``bigfile`` argument parser."""
    from airflow_bigfile import __version__

    parser = Parser(
        prog=PROG,
        description="Change huge files (local or any fsspec URL) in place, in parallel, "
                    "committed atomically. Every offset refers to the original file.",
        epilog="examples:\n" + "\n".join(text.splitlines()[0] for name, text in
                                         _EXAMPLES.items() if name != "completion")
               + "\n\nRun 'bigfile COMMAND --help' for a command's options.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}",
                        help="print the version and exit")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True,
                                parser_class=Parser)
    common = _common_options(edit=True)

    def add(name: str, help_: str, parents: list[argparse.ArgumentParser]) -> Parser:
        p = sub.add_parser(name, help=help_, description=help_, parents=parents,
                           epilog="examples:\n" + _EXAMPLES[name])
        if name != "completion":
            url = p.add_argument("urls", nargs="+", metavar="URL",
                                 help="local paths or fsspec URLs; globs ('logs/*.csv', "
                                      "'s3://b/day=*/*.csv') are expanded, and each file is "
                                      "its own atomic edit")
            url.complete = _COMPLETE_FILES  # type: ignore[attr-defined]
        return p

    p = add("replace", "replace every match of a text or regex", [common])
    find = p.add_argument_group("what to find (one required)").add_mutually_exclusive_group(
        required=True)
    find.add_argument("--find", metavar="TEXT", help="text (or regex) to find, as UTF-8")
    find.add_argument("--find-hex", metavar="HEX", help="bytes to find, in hex")
    repl = p.add_argument_group("replacement (one required)").add_mutually_exclusive_group(
        required=True)
    repl.add_argument("--replace", metavar="TEXT",
                      help=r"replacement as UTF-8 (with --regex: \1 and \g<name> templates)")
    repl.add_argument("--replace-hex", metavar="HEX", help="replacement bytes, in hex")
    p.add_argument("--regex", action="store_true", help="FIND is a Python regular expression")
    p.add_argument("--max-match", type=_positive_int, metavar="N",
                   help="longest regex match allowed, in bytes (default: 4096)")
    _regex_options(p)

    offset_help = "byte offset in the original file: 4096, 4KiB, 1.5GB or 0x1000"
    p = add("patch", "overwrite bytes at an offset", [common])
    p.add_argument("--offset", required=True, type=_bytes_count, metavar="N", help=offset_help)
    _data_options(p)

    p = add("insert", "insert bytes before an offset", [common])
    p.add_argument("--offset", required=True, type=_bytes_count, metavar="N",
                   help=offset_help + " (the size itself inserts at the end)")
    _data_options(p)

    p = add("delete", "remove a range of bytes", [common])
    p.add_argument("--offset", required=True, type=_bytes_count, metavar="N", help=offset_help)
    p.add_argument("--length", required=True, type=_positive_bytes, metavar="N",
                   help="bytes to remove: 250, 4KiB, ...")

    p = add("truncate", "cut (or zero-extend) the file to a size", [common])
    p.add_argument("--size", required=True, type=_bytes_count, metavar="N",
                   help="the new size: 1073741824, 1GiB, 500MB, ...; larger than the file "
                        "adds zero bytes")

    p = add("append", "add bytes after the end", [common])
    _data_options(p)

    p = add("apply", "apply a JSON edit list as one atomic change", [common])
    p.add_argument("--edits", required=True, metavar="EDITS.json",
                   help="a JSON list of edits ('-' reads stdin)")
    _regex_options(p)

    add("recover", "roll back an interrupted commit and remove stale staging",
        [_common_options(edit=False)])

    p = add("completion", "print a shell completion script", [])
    p.add_argument("shell", choices=("bash", "zsh"), help="the shell to complete in")
    return parser


# ---------------------------------------------------------------------------- running


def _arg_bytes(text: str) -> bytes:
    """A command-line argument's bytes: UTF-8, and undecodable bytes given back as they were."""
    return os.fsencode(text)


def _hex(text: str, option: str) -> bytes:
    try:
        return bytes.fromhex(text)
    except ValueError as exc:
        raise InputError(f"{option} is not valid hex: {exc}") from None


def _data(args: argparse.Namespace) -> Any:
    """The edit data: bytes from --data/--data-hex, or a :class:`DataFile` read in chunks
    (a pipe such as /dev/stdin is first spooled to a temporary file)."""
    if args.data is not None:
        return _arg_bytes(args.data)
    if args.data_hex is not None:
        return _hex(args.data_hex, "--data-hex")
    from airflow_bigfile.exceptions import PayloadError
    from airflow_bigfile.payload import DataFile

    try:
        if stat.S_ISFIFO(os.stat(args.data_file).st_mode):
            return DataFile(_spool(args.data_file))
        return DataFile(args.data_file)
    except OSError as exc:
        raise InputError(f"cannot read --data-file {args.data_file}: "
                         f"{exc.strerror or exc}") from None
    except PayloadError as exc:
        raise InputError(f"--data-file: {exc}") from None


def _spool(path: str) -> str:
    """Copy a pipe to a temporary file (removed at exit), a chunk at a time."""
    import atexit
    import shutil
    import tempfile

    fd, spooled = tempfile.mkstemp(prefix="bigfile-data-")
    atexit.register(os.unlink, spooled)
    with open(path, "rb") as src, os.fdopen(fd, "wb") as out:
        shutil.copyfileobj(src, out, 4 << 20)
    return spooled


def _read_edits(path: str) -> list[Edit]:
    from airflow_bigfile.edits import edits_from_json

    try:
        if path == "-":
            text = sys.stdin.buffer.read()
        else:
            with open(path, "rb") as f:
                text = f.read()
    except OSError as exc:
        raise InputError(f"cannot read --edits {path}: {exc.strerror or exc}") from None
    try:
        return edits_from_json(text)
    except ValueError as exc:
        raise InputError(f"{'stdin' if path == '-' else path}: {exc}") from None


def _edits(args: argparse.Namespace) -> list[Edit]:
    from airflow_bigfile.edits import Append, Delete, Insert, Patch, Replace, Truncate

    cmd = args.command
    if cmd == "replace":
        extra = {} if args.max_match is None else {"max_match": args.max_match}
        find = (_arg_bytes(args.find) if args.find is not None
                else _hex(args.find_hex, "--find-hex"))
        repl = (_arg_bytes(args.replace) if args.replace is not None
                else _hex(args.replace_hex, "--replace-hex"))
        return [Replace(find, repl, regex=args.regex, **extra)]
    if cmd == "patch":
        return [Patch(args.offset, _data(args))]
    if cmd == "insert":
        return [Insert(args.offset, _data(args))]
    if cmd == "delete":
        return [Delete(args.offset, args.length)]
    if cmd == "truncate":
        return [Truncate(args.size)]
    if cmd == "append":
        return [Append(_data(args))]
    return _read_edits(args.edits)


def _has_glob(url: str) -> bool:
    return any(c in url for c in "*?[")


def expand_targets(urls: Sequence[str], storage_options: dict[str, Any] | None
                   ) -> list[str]:
    """The files ``urls`` name, in order, globs expanded (sorted): local ones by
    :mod:`glob`, URLs by their fsspec filesystem. A path that exists as written is taken
    literally; a glob that matches no file is an :class:`InputError`."""
    out: list[str] = []
    for url in urls:
        if not _has_glob(url) or ("://" not in url and os.path.lexists(url)):
            out.append(url)
            continue
        if "://" in url or "::" in url:
            import fsspec

            fs, path = fsspec.core.url_to_fs(url, **(storage_options or {}))
            found = [fs.unstrip_protocol(p) for p, info in
                     sorted(fs.glob(path, detail=True).items()) if info.get("type") != "directory"]
        else:
            import glob

            found = sorted(p for p in glob.glob(url) if not os.path.isdir(p))
        if not found:
            raise InputError(f"no file matches {url}")
        out.extend(found)
    return _once_each(out)


def _once_each(paths: list[str]) -> list[str]:
    """A file named twice (``f`` and ``./f``, a link and its file) is edited once, where it
    is first named; paths that do not exist yet and URLs are told apart by their text."""
    seen: set[object] = set()
    out = []
    for path in paths:
        key: object = path
        if "://" not in path and "::" not in path:
            try:
                st = os.stat(path)
                key = (st.st_dev, st.st_ino)
            except (OSError, ValueError):
                pass
        if key not in seen:
            seen.add(key)
            out.append(path)
    return out


def _plural(n: int, word: str, plural: str | None = None) -> str:
    return f"{n:,} {word if n == 1 else (plural or word + 's')}"


def exact_bytes(n: int) -> str:
    """``1234567`` -> ``"1,234,567 B"``: sizes in summaries are exact."""
    return f"{n:,} B"


def size_change(before: int, after: int) -> str:
    """``"2,000 B -> 2,021 B (+21 B)"``."""
    delta = after - before
    return (f"{exact_bytes(before)} -> {exact_bytes(after)} "
            f"({f'{delta:+,} B' if delta else 'same size'})")


def summarize(command: str, args: argparse.Namespace, result: dict[str, Any],
              edits: Sequence[Edit]) -> str:
    """One human line describing an edit's result."""
    dry = bool(result.get("dry_run"))
    matches = int(result.get("matches") or 0)
    if command == "replace":
        what = ("would replace " if dry else "replaced ") + _plural(matches, "match", "matches")
    elif command == "apply":
        what = ("would apply " if dry else "applied ") + _plural(len(edits), "edit")
        if matches:
            what += f" ({_plural(matches, 'match', 'matches')})"
    else:
        done = {"patch": "patched", "insert": "inserted", "delete": "deleted",
                "truncate": "truncated", "append": "appended"}[command]
        edit = edits[0]
        if command == "delete":
            amount = _plural(args.length, "byte")
        elif command == "truncate":
            amount = f"to {_plural(args.size, 'byte')}"
        else:
            amount = _plural(len(edit.data), "byte")  # type: ignore[union-attr]
        where = f" at offset {args.offset:,}" if command in ("patch", "insert", "delete") else ""
        what = f"{'would ' + command if dry else done} {amount}{where}"
    parts = [what]
    shards, changed = result.get("shards"), result.get("shards_changed")
    if shards is not None and changed:
        parts[0] += f" in {changed:,} of {_plural(int(shards), 'shard')}"
    parts.append(size_change(result["size_before"], result["size_after"]))
    parts.append(f"{exact_bytes(result['bytes_written'])} {'to write' if dry else 'written'}")
    parts.append(f"commit: {result['commit_mode']}")
    line = "; ".join(parts)
    return f"dry run: {line}; nothing changed" if dry else line


def _show(data: bytes) -> str:
    """Bytes as one line of text: UTF-8, with control and undecodable bytes escaped."""
    text = data.decode("utf-8", "backslashreplace")
    return "".join(c if c.isprintable() or c == " " else repr(c)[1:-1] for c in text)


def render_preview(preview: Any) -> str:
    """A preview as diff-like hunks: offset and edit, then the line's old and new bytes."""
    lines = []
    for change in preview.changes:
        head = f"@@ offset {change.offset:,} @@ {change.edit}"
        for sign, data, length in (("-", change.old, change.old_length),
                                   ("+", change.new, change.new_length)):
            more = f" ... ({exact_bytes(length)} in all)" if length > len(data) else ""
            lines.append(f"{sign} {_show(change.before)}{_show(data)}{_show(change.after)}"
                         f"{more}")
        lines[-2:-2] = [head]
    shown = len(preview.changes)
    scanned = ("the edits needed no scan" if not preview.scanned
               else f"read {exact_bytes(preview.scanned)} of {exact_bytes(preview.size)}")
    lines.append(f"preview: {_plural(shown, 'change')} shown ({scanned}); nothing changed")
    return "\n".join(lines)


def _preview_dict(preview: Any) -> dict[str, Any]:
    def text(data: bytes) -> str:
        return data.decode("utf-8", "backslashreplace")

    return {"target": preview.target, "dry_run": True, "size_before": preview.size,
            "scanned": preview.scanned,
            "preview": [{**c.to_dict(), **{k: text(getattr(c, k)) for k in
                                           ("old", "new", "before", "after")}}
                        for c in preview.changes]}


def _engine_kwargs(args: argparse.Namespace) -> dict[str, Any]:
    kwargs: dict[str, Any] = {"mode": args.mode, "dry_run": args.dry_run}
    if args.break_hardlinks:
        kwargs["break_hardlinks"] = True
    for name in ("shard_size", "workers", "staging", "delimiter", "wait", "executor",
                 "verify", "regex_timeout"):
        value = getattr(args, name, None)
        if value is not None:
            kwargs[name] = value
    if args.scheduler is not None:
        kwargs["executor"] = "dask"
        kwargs["scheduler"] = args.scheduler
    return kwargs


def _want_progress(args: argparse.Namespace) -> bool:
    try:
        return not args.no_progress and sys.stderr.isatty()
    except (AttributeError, ValueError):
        return False


def _run_one(args: argparse.Namespace, url: str, edits: list[Edit],
             storage_options: dict[str, Any] | None) -> tuple[dict[str, Any], str]:
    """Edit, preview or recover one file: its JSON figures and its human line."""
    if args.command == "recover":
        from airflow_bigfile import recover_target

        extra = {} if args.wait is None else {"wait": args.wait}
        recovery = recover_target(url, storage_options=storage_options, **extra)
        return recovery.to_dict(), recovery.message
    if args.preview:
        from airflow_bigfile.preview import preview_edit

        preview = preview_edit(url, edits, args.preview, storage_options=storage_options)
        return _preview_dict(preview), render_preview(preview)
    from airflow_bigfile import edit_file

    kwargs = _engine_kwargs(args)
    bar = None
    if _want_progress(args):
        from airflow_bigfile.cli.progress import ProgressBar

        bar = ProgressBar(sys.stderr, label=args.command)
        kwargs["progress"] = bar
    try:
        result = edit_file(url, edits, storage_options=storage_options, **kwargs)
    finally:
        if bar is not None:
            bar.close()
    figures = result.to_dict()
    return figures, summarize(args.command, args, figures, edits)


def _error_dict(exc: BaseException, url: str | None = None) -> dict[str, Any]:
    where = {} if url is None else {"target": url}
    return {**where, "error": _describe(exc), "type": type(exc).__name__}


def _total(files: list[dict[str, Any]]) -> dict[str, Any]:
    done = [f for f in files if "error" not in f]
    return {"files": len(files), "failed": len(files) - len(done),
            **{k: sum(f.get(k) or 0 for f in done)
               for k in ("matches", "size_before", "size_after", "bytes_written")},
            **({"changes": sum(len(f["preview"]) for f in done)}
               if any("preview" in f for f in done) else {})}


def _total_line(total: dict[str, Any], args: argparse.Namespace) -> str:
    done = total["files"] - total["failed"]
    if args.preview:
        return (f"total: {_plural(total['changes'], 'change')} shown in {done:,} of "
                f"{_plural(total['files'], 'file')}; nothing changed")
    dry = args.dry_run
    line = f"total: {done:,} of {_plural(total['files'], 'file')} " + \
        ("checked" if dry else "done")
    if total["failed"]:
        line += f", {total['failed']:,} failed (unchanged)"
    line += f"; {_plural(total['matches'], 'match', 'matches')}; "
    return line + size_change(total["size_before"], total["size_after"])


def run(args: argparse.Namespace) -> int:
    """Run a parsed command on each target; a lone target's errors propagate to
    :func:`main`, and with several each file's error is reported and the rest still run."""
    if args.command == "completion":
        import shtab

        print(shtab.complete(build_parser(), shell=args.shell), end="")
        return EXIT_OK
    storage_options = dict(args.storage_options) or None
    if getattr(args, "preview", None):
        args.dry_run = True
    edits = _edits(args) if args.command != "recover" else []
    urls = expand_targets(args.urls, storage_options)
    if len(urls) == 1:
        figures, line = _run_one(args, urls[0], edits, storage_options)
        print(json.dumps(figures, default=str) if args.json else line)
        return EXIT_OK
    files: list[dict[str, Any]] = []
    for url in urls:
        try:
            figures, line = _run_one(args, url, edits, storage_options)
        except KeyboardInterrupt:
            args.done = len(files)
            raise
        except Exception as exc:
            if not _expected_error(exc):
                raise
            files.append(_error_dict(exc, url))
            _fail(_with_url(_describe(exc), url))
            line = f"error: {_describe(exc)}; unchanged"
        else:
            files.append({"target": url, **figures})
        if not args.json:
            print(f"{url}:\n{line}" if "\n" in line else f"{url}: {line}", flush=True)
    total = _total(files)
    if args.json:
        print(json.dumps({"files": files, "total": total}, default=str))
    elif args.command != "recover":
        print(_total_line(total, args))
    return EXIT_ERROR if total["failed"] else EXIT_OK


def _subparser(parser: argparse.ArgumentParser, name: str) -> argparse.ArgumentParser:
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return action.choices[name]


def _with_url(message: str, url: str) -> str:
    return message if url in message else f"{url}: {message}"


def _expected_error(exc: BaseException) -> bool:
    """Errors that are about the input or the target (one line, no traceback)."""
    from airflow_bigfile.exceptions import BigFileError

    return isinstance(exc, (InputError, OSError, ValueError, BigFileError))


#: control characters shown escaped, so a message stays one line and names files exactly
_ESCAPES = {c: repr(chr(c))[1:-1] for c in (*range(32), 127)}


def _describe(exc: BaseException) -> str:
    """``exc`` as one line (a newline in a file's name shown as ``\\n``, not cut); built-in
    OSErrors without a strerror get their kind named."""
    text = str(exc).strip().translate(_ESCAPES)
    from airflow_bigfile.exceptions import BigFileError

    if isinstance(exc, OSError) and not isinstance(exc, BigFileError) and not exc.strerror:
        kind = {FileNotFoundError: "no such file", IsADirectoryError: "is a directory",
                PermissionError: "permission denied",
                NotADirectoryError: "not a directory"}.get(type(exc), type(exc).__name__)
        return f"{kind}: {text}" if text else kind
    return text or type(exc).__name__


def _fail(message: str, status: int = EXIT_ERROR) -> int:
    sys.stderr.write(f"{PROG}: error: {message}\n")
    sys.stderr.flush()
    return status


class _WarningHandler(logging.Handler):
    """The engine's warnings (e.g. a rolled-back journal) as ``bigfile: warning: ...``."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            message = " ".join(record.getMessage().split())
            sys.stderr.write(f"{PROG}: warning: {message}\n")
        except Exception:
            self.handleError(record)


def _show_engine_warnings() -> None:
    logger = logging.getLogger("airflow_bigfile")
    if not any(isinstance(h, _WarningHandler) for h in logger.handlers):
        logger.addHandler(_WarningHandler(logging.WARNING))


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``bigfile`` console script; returns the exit status."""
    _show_engine_warnings()
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
        if (args.command not in ("recover", "completion") and args.scheduler is not None
                and args.executor not in (None, "dask")):
            _subparser(parser, args.command).error(
                f"--scheduler needs --executor dask, not {args.executor}")
        if getattr(args, "regex_timeout", None) is not None and args.preview:
            _subparser(parser, args.command).error(
                "--regex-timeout does not apply to --preview, which scans in this process "
                "(Ctrl-C stops it); use --dry-run for a timed run that changes nothing")
    except SystemExit as exc:  # --help, --version (0) or a usage error (2)
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE
    from airflow_bigfile.cancel import Cancelled, cancel_on_signals, late_signal, signal_name

    def failed(exc: BaseException) -> int:
        if getattr(args, "json", False):
            print(json.dumps(_error_dict(exc)), flush=True)
        return _fail(_describe(exc))

    try:
        with cancel_on_signals():
            status = run(args)
            late = late_signal()
        if late is not None:
            sys.stderr.write(f"{PROG}: warning: {signal_name(late)} arrived after the edit was "
                             "committed; it was not cancelled\n")
        return status
    except KeyboardInterrupt as exc:  # Cancelled, or a Ctrl-C before the handlers were in
        signum = exc.signum if isinstance(exc, Cancelled) else signal.SIGINT
        done = ("run `bigfile recover` again to finish" if args.command == "recover"
                else "nothing was changed")
        if getattr(args, "done", 0):
            done = (f"the file being edited was not changed; {_plural(args.done, 'file')} "
                    "before it were done")
        return _fail(f"interrupted ({signal_name(signum or signal.SIGINT)}); {done}",
                     128 + (signum or signal.SIGINT))
    except Exception as exc:
        if _expected_error(exc):
            return failed(exc)
        if os.environ.get("BIGFILE_DEBUG"):
            raise
        return _fail(f"unexpected {type(exc).__name__}: {_describe(exc)} "
                     "(set BIGFILE_DEBUG=1 for a traceback)")


def console(argv: Sequence[str] | None = None) -> int:
    """The ``bigfile`` console script and ``python -m airflow_bigfile``: :func:`main` in a
    process of its own that exits next, so two things a library call may not do are done.

    numpy is hidden from the process: pyarrow, which runs the RE2 kernels, takes numpy as
    optional but imports it whenever it is installed, a cost each regex command paid at
    start-up, and nothing a command runs converts to numpy arrays. And ``gc.freeze``
    leaves the heap to the operating system, so the exit skips tearing down one by one
    the objects pyarrow and fsspec made. Callers in a longer-lived process use
    :func:`main`."""
    if "numpy" not in sys.modules:
        sys.modules["numpy"] = None  # type: ignore[assignment]
    status = main(argv)
    gc.freeze()
    return status
