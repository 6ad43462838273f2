"""Thin file I/O for the formats: atomic writes (tmp file + rename) and JSON reads."""

from __future__ import annotations

import json
import os
import stat
import tempfile
import threading
from pathlib import Path
from typing import Any

from geoal.errors import FormatError

_UMASK_LOCK = threading.Lock()


def _new_file_mode(path: Path) -> int:
    """The permission bits a plain ``open(path, "w")`` would give: the existing file's, or 0o666
    less the process umask (mkstemp alone makes every file 0600, whatever the umask)."""
    try:
        return stat.S_IMODE(path.stat().st_mode)
    except OSError:
        pass
    with _UMASK_LOCK:  # os.umask can only be read by setting it
        umask = os.umask(0o077)
        os.umask(umask)
    return 0o666 & ~umask


def writable_folder(folder: str | Path) -> Path:
    """``folder``, made if missing, once a file can be created in it (GDAL's writers say only
    "unable to open database file"); OSError (permission denied, read-only) otherwise."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    try:
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as exc:  # name the folder, not the temporary file
        raise OSError(exc.errno, exc.strerror, str(folder)) from None
    return folder


def write_bytes(path: str | Path, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically: a reader sees the old file or the whole new one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, _new_file_mode(path))
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def write_text(path: str | Path, text: str) -> Path:
    """Write UTF-8 ``text`` to ``path`` atomically."""
    return write_bytes(path, text.encode("utf-8"))


def write_json(path: str | Path, data: Any) -> Path:
    """Write ``data`` as JSON atomically; floats keep full precision, NaN is refused."""
    try:
        text = json.dumps(data, indent=1, allow_nan=False, ensure_ascii=False)
    except ValueError as exc:
        raise FormatError(f"cannot write {path}: {exc} (NaN or inf in the data)") from exc
    return write_text(path, text + "\n")


def read_json(path: str | Path) -> Any:
    """Parse a JSON file; FormatError naming the file when it is missing or not JSON."""
    path = Path(path)
    try:
        with path.open("rb") as f:
            return json.load(f)
    except FileNotFoundError as exc:
        raise FormatError(f"{path}: no such file") from exc
    except IsADirectoryError:
        raise FormatError(f"{path}: is a folder; give the JSON file inside it") from None
    except RecursionError:
        raise FormatError(
            f"{path}: JSON nested too deeply to read (thousands of levels); not an annotation file"
        ) from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise FormatError(f"{path}: not a readable JSON file ({exc})") from exc
