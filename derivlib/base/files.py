"""Files: atomic writes, JSON lines, digests and write checks."""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any, Iterable, Mapping

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


def iter_jsonl(path: Path | str):
    """(line number, object) for each non-blank line; a malformed line is an error naming the
    file and the line number."""
    with open(path, encoding="utf-8") as fh:
        for number, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                yield number, json.loads(line)
            except json.JSONDecodeError as err:
                raise ValueError(f"{path}: line {number} is not valid JSON ({err.msg})") from None


def read_jsonl(path: Path | str) -> list[dict]:
    """Read JSON lines; a malformed line is an error naming the file and the line number."""
    return [obj for _, obj in iter_jsonl(path)]


def check_writable(path: Path | str, name: str = "out") -> Path:
    """Fail early, before any work, if ``path`` cannot be written. Creates nothing."""
    path = Path(path)
    parent = path.parent if path.parent != Path("") else Path(".")
    probe = parent
    while not probe.exists():
        probe = probe.parent
    if not probe.is_dir() or not os.access(probe, os.W_OK):
        raise ParameterError(f"parameter {name!r}: cannot write {path} ({probe} is not a writable directory)")
    if path.exists() and (path.is_dir() or not os.access(path, os.W_OK)):
        raise ParameterError(f"parameter {name!r}: cannot write {path}")
    return path


def file_digest(path: Path | str) -> str:
    """sha256 of a file's bytes (first 16 hex digits), for a run key's ``inputs``."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()[:16]
