"""The output folder of an example script that replaces what it wrote before (shared by the examples that do).

Such a script clears its own sub-folders on every run, so it may only write into a folder it owns: a new or empty
one, which it marks as mstool's commands mark theirs, or one it marked on an earlier run. Any other non-empty folder,
and the working folder or one above it, is refused before anything is written or removed.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path
from typing import NoReturn

from mstool._fs import is_mstool_folder, open_run_dir  # the package's own marked-folder rules
from mstool.errors import MstoolError

KIND = "example"


def example_folder(out: Path, *, clean: bool = False) -> Path:
    """``out`` ready to write into; with ``clean``, emptied first (only when an example wrote it).

    Exits with one line on stderr (status 2) for a folder the examples did not write.
    """
    target, here = out.resolve(), Path.cwd().resolve()
    if target == here or target in here.parents:
        _refuse(f"{out}: the output would hold the working folder; name a new folder for it")
    try:
        if clean and target.is_dir():
            if any(target.iterdir()) and not is_mstool_folder(target, KIND):
                _refuse(f"{out}: --clean removes only a folder an mstool example wrote, and this one holds other "
                        "files; name a new folder")
            shutil.rmtree(target)
        return open_run_dir(out, kind=KIND)
    except MstoolError as exc:
        _refuse(str(exc))


def _refuse(message: str) -> NoReturn:
    print(f"Error: {message}", file=sys.stderr)
    raise SystemExit(2)
