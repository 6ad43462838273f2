"""Content hashes of files: how geoal names models and recognises its own exports."""

from __future__ import annotations

import hashlib
import threading
from pathlib import Path

_MEMO: dict[tuple[str, int, int, int], str] = {}
_MEMO_LOCK = threading.Lock()


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file's content (the model hash of a .pt), read in 1 MiB blocks.

    Remembered for the process by (path, inode, size, modification time in ns), so a model
    looked up by several steps of one run is read once; any change of the file is a new key.
    """
    stat = path.stat()
    key = (str(path.resolve()), stat.st_ino, stat.st_size, stat.st_mtime_ns)
    with _MEMO_LOCK:
        if key in _MEMO:
            return _MEMO[key]
    digest = hashlib.sha256()
    with path.open("rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    value = digest.hexdigest()
    with _MEMO_LOCK:
        _MEMO[key] = value
    return value
