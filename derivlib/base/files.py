"""Files: atomic writes, JSON lines, digests and write checks."""
from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any, Iterable, Mapping, Union

from .params import ParameterError


def atomic_write_text(path: Path | str, text: str) -> None:
    """Write ``text`` to ``path`` so that a reader sees the old file or the new, never half."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with open(tmp, "w", encoding="utf-8") as fh:
        fh.write(text)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def atomic_write_json(path: Path | str, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")


def write_jsonl(path: Path | str, records: Iterable[Mapping]) -> int:
    """Write records as JSON lines, atomically. Returns how many were written."""
    lines = [json.dumps(r, ensure_ascii=False, sort_keys=False) for r in records]
    atomic_write_text(path, "".join(line + "\n" for line in lines))
    return len(lines)


def _open_input(path: Path | str, what: str):
    """``path`` opened for reading bytes; a directory or a missing file is one line naming it."""
    path = Path(path)
    if path.is_dir():
        raise ValueError(f"{path} is a directory, expected {what}")
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such file (expected {what})")
    return open(path, "rb")


def _decoded(path, number: int, raw: bytes) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as err:
        raise ValueError(f"{path}: line {number} is not UTF-8 text (byte 0x{raw[err.start]:02x} at "
                         f"column {err.start + 1})") from None


def read_text(path: Path | str, what: str = "a UTF-8 text file") -> str:
    """The text of ``path``; a directory, a missing file or bytes that are not UTF-8 are one
    line naming the file (and the line)."""
    with _open_input(path, what) as fh:
        return "".join(_decoded(path, number, raw) for number, raw in enumerate(fh, 1))


def iter_jsonl(path: Path | str):
    """(line number, object) for each non-blank line; a malformed line (not JSON, cut short,
    not UTF-8) is an error naming the file and the line number, as is a directory."""
    with _open_input(path, "a JSON lines file") as fh:
        for number, raw in enumerate(fh, 1):
            line = _decoded(path, number, raw)
            if not line.strip():
                continue
            try:
                yield number, json.loads(line)
            except json.JSONDecodeError as err:
                cut = " (the file ends inside this line: truncated?)" if not raw.endswith(b"\n") else ""
                raise ValueError(f"{path}: line {number} is not valid JSON ({err.msg}, column "
                                 f"{err.colno}){cut}") from None


def read_jsonl(path: Path | str) -> list[dict]:
    """Read JSON lines; a malformed line is an error naming the file and the line number."""
    return [obj for _, obj in iter_jsonl(path)]


def writable_directory(directory: Path | str, label: str = "parameter 'out'") -> Path:
    """Fail early, before any work, unless ``directory`` exists as a writable directory or could
    be created: its nearest existing ancestor must be a directory in which a file can really be
    created (a probe file, removed at once; permission bits alone would let root pass on a
    read-only file system). ``label`` names the directory in the error. Returns that ancestor."""
    probe = Path(directory) if str(directory) else Path(".")
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    if not probe.is_dir():
        raise ParameterError(f"{label}: cannot write {directory} ({probe} is not a writable directory)")
    try:
        fd, tmp = tempfile.mkstemp(prefix=".derivlib-write-probe-", dir=probe)
    except OSError as err:
        raise ParameterError(f"{label}: cannot write {directory} ({probe} is not a writable "
                             f"directory: {err.strerror})") from None
    os.close(fd)
    os.unlink(tmp)
    return probe


def check_writable(path: Path | str, name: str = "out") -> Path:
    """Fail early, before any work, if the file ``path`` cannot be written. Leaves nothing behind."""
    path = Path(path)
    writable_directory(path.parent if path.parent != Path("") else Path("."), f"parameter {name!r}")
    if path.is_dir():
        raise ParameterError(f"parameter {name!r}: cannot write {path}: it is a directory, expected a file")
    if path.exists() and not os.access(path, os.W_OK):
        raise ParameterError(f"parameter {name!r}: cannot write {path} (not writable)")
    return path


Inputs = Union[Mapping[str, "Path | str | None"], Iterable[tuple[str, "Path | str | None"]]]


def refuse_overlap(out: Path | str, inputs: Inputs, option: str = "--out") -> Path:
    """Refuse, before any work, an output path that is one of ``inputs``, holds one, or lies
    inside an input directory: writing it would replace or change what the command reads.

    ``inputs`` maps how the user named each input (``--results``, ``parameter 'sets'``) to its
    path (None: not given); the same name may come twice as pairs. Paths are compared
    after resolving symbolic links, and an existing file also by identity (a hard link). A file
    inside a complete run directory is guarded by passing that directory too. Returns ``out``.
    """
    target = Path(out).expanduser().resolve()
    pairs = inputs.items() if isinstance(inputs, Mapping) else inputs
    for name, given in pairs:
        if given is None or str(given) == "":
            continue
        source = Path(given).expanduser().resolve()
        same = target == source or (target.exists() and source.exists() and os.path.samefile(target, source))
        if same and not source.is_dir():
            raise ParameterError(f"{option} {out} is the input {given} ({name}): it would be overwritten; "
                                 "choose an output outside the inputs")
        if same:
            raise ParameterError(f"{option} {out} holds the input {given} ({name}): it is that directory, which "
                                 "writing it would replace; choose an output outside the inputs")
        if source.is_relative_to(target):
            raise ParameterError(f"{option} {out} holds the input {given} ({name}), which writing it would "
                                 "replace; choose an output outside the inputs")
        if source.is_dir() and target.is_relative_to(source):
            raise ParameterError(f"{option} {out} lies inside the input {given} ({name}), which must stay as "
                                 "it is; choose an output outside the inputs")
    return Path(out)


def file_digest(path: Path | str) -> str:
    """sha256 of a file's bytes (first 16 hex digits), for a run key's ``inputs``."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()[:16]
