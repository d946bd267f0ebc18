"""Writing the files the command line produces (exported modules, reports)."""

from __future__ import annotations

import os
import secrets
import stat
from pathlib import Path


def write_text_atomically(path: str | os.PathLike, text: str) -> None:
    """Write `text` to a new file beside `path`, then rename it over `path`: a reader never
    sees half a file. The file gets the mode ``open(path, "w")`` would give it: an existing
    file's own mode, else 0o666 less the umask (0o644 under the usual 022), not mkstemp's
    0o600. Raises OSError; nothing is left behind."""
    path = Path(path)
    try:
        mode = stat.S_IMODE(os.stat(path).st_mode)
    except OSError:
        mode = None
    tmp = path.parent / f".{path.name}.{secrets.token_hex(6)}.tmp"
    # O_EXCL: never write into a file that is already there; the kernel applies the umask
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            if mode is not None:
                os.fchmod(f.fileno(), mode)
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
