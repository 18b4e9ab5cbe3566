"""Files that exist whole or not at all: write a temporary file beside the target, flush it, rename it."""

from __future__ import annotations

import os
import tempfile
from contextlib import contextmanager
from pathlib import Path


def ordinary_file_mode() -> int:
    """The permissions a plain ``open(path, "w")`` would give a new file under the current umask."""
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


@contextmanager
def atomic_path(path, *, prefix: str = ".tmp-"):
    """Yield a temporary path in ``path``'s folder; on success it is fsynced and renamed to ``path``.

    On error (or a kill) the target is untouched; a killed writer may leave the
    temporary file, which starts with ``prefix`` so cleaners can find it.
    """
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=prefix, suffix=path.suffix)
    os.close(fd)
    os.chmod(tmp, ordinary_file_mode())  # mkstemp makes it private; the result should be an ordinary file
    try:
        yield Path(tmp)
        with open(tmp, "rb+") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
