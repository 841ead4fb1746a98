"""The staging folder an export writes into, inside the run's export/ folder, under its lock:
the previous export stays whole until export/publish.py swaps the new one in."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from compressor.errors import UserError
from compressor.io import WriteFailed, lock_or_refuse
from export.publish import LOCK_NAME, OUR_FILES, REPORT_NAME, STAGING_PREFIX, finish_interrupted


@contextmanager
def staging_folder(export_dir: Path, say: Callable[[str], None]) -> Iterator[Path]:
    """A fresh folder inside export/ for this export's files, removed however the export ends
    (publishing renames it away). Inside export/, so publishing is a rename on one disk.

    The export holds `export/.lock` throughout: two exports of one run would otherwise publish
    over each other. Holding it also proves that any other staging or publishing folder there
    belongs to an export that died without cleaning up (killed, power lost): a staging folder
    is removed, and a publish it left halfway is finished first (export/publish.py), so that
    should this export fail too, the previous export is a whole one.
    """
    if export_dir.is_symlink():
        # Followed, the export wrote its files into the folder linked to, and removed the
        # files there an earlier export's report names: a crafted run directory's choice.
        raise UserError(
            f"{export_dir}: a link (to {os.readlink(export_dir)}), not a folder of the run; "
            "the export writes and removes files in it: replace the link with a folder"
        )
    try:
        # Not its parents: a run removed since it was read (the run an --overwrite set aside,
        # once the new one completes) must not come back as an export/ alone.
        export_dir.mkdir(exist_ok=True)
        busy = (
            f"{export_dir}: another export of this run is in progress, or a gate is reading it; "
            "wait for it to end"
        )
        lock = lock_or_refuse(export_dir / LOCK_NAME, busy)
    except FileExistsError:
        raise UserError(
            f"{export_dir}: is a file, not a folder; move it away and export again"
        ) from None
    except FileNotFoundError:
        raise UserError(
            f"{export_dir.parent}: removed while the export read it; nothing was exported"
        ) from None
    except OSError as error:
        raise _cannot_write(export_dir, error) from None
    try:
        _check_targets(export_dir)
        staging = _fresh_staging(export_dir, say)
        try:
            yield staging
        except WriteFailed as error:
            if not error.path.is_relative_to(staging):
                raise
            # Named as the file it was to become: the staging folder is gone once this ends.
            final = export_dir / error.path.relative_to(staging)
            cause = error.__cause__
            named = WriteFailed(final, cause) if isinstance(cause, OSError) else error
            raise UserError(f"{named}; nothing in {export_dir} was changed") from error
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    finally:
        lock.release()


def _fresh_staging(export_dir: Path, say: Callable[[str], None]) -> Path:
    """Finish what killed exports left, then make this export's staging folder.

    Why the OSError: export/.lock can be writable where export/ itself is not (a read-only
    folder, an immutable flag), and the lock alone does not prove the folder is writable.
    """
    try:
        finished, removed = finish_interrupted(export_dir)
        if finished:
            said = f"{export_dir}: put in place the export that was killed while publishing it"
            if removed:
                said += f", and removed the previous export's {', '.join(removed)}"
            say(said)
        for abandoned in export_dir.glob(f"{STAGING_PREFIX}*"):
            shutil.rmtree(abandoned, ignore_errors=True)
        return Path(tempfile.mkdtemp(prefix=STAGING_PREFIX, dir=export_dir))
    except OSError as error:
        raise _cannot_write(export_dir, error) from None


def _cannot_write(export_dir: Path, error: OSError) -> UserError:
    return UserError(
        f"{export_dir}: cannot write the export there ({error.strerror}); make the run "
        "directory writable, or copy it somewhere writable and export the copy"
    )


def _check_targets(export_dir: Path) -> None:
    """A folder where the export writes a file would stop it halfway through publishing."""
    for name in (*OUR_FILES, *(f"{REPORT_NAME}.{kind}" for kind in ("json", "md", "html"))):
        if (export_dir / name).is_dir():
            raise UserError(
                f"{export_dir / name}: a folder where the export writes a file; move it away "
                "and export again"
            )
