"""Paths in a recipe, and how each came about.

Paths in a recipe may use `${VAR}` or `${VAR:-default}` and `~`. A relative input path (data,
checkpoints) is read from the folder of whoever wrote its start: a path the recipe writes,
including a `:-default` used because VAR is unset, from the recipe's folder, so a recipe finds
its inputs from any working directory; a path that starts with a set variable's value from the
working directory, as the shell that set it would, and so does every relative path of a
recipe built in code (no file, no folder of its own). `output.dir` is relative to the
working directory.

A section remembers how each of its input paths was written (`PathSource`), so an error about
a missing file can name the variable or folder to change.
"""

from __future__ import annotations

import os
import re
from contextvars import ContextVar
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    PrivateAttr,
    ValidationInfo,
    model_validator,
)
from pydantic.functional_validators import ModelWrapValidatorHandler

from compressor.recipe.strict import Strict

_ENV_PATTERN = re.compile(r"\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?::-(?P<default>[^}]*))?\}")


@dataclass(frozen=True)
class PathSource:
    """How a recipe path came about, so an error about a missing file can say what to change:
    the variable that gave it, or the folder a relative path was read from."""

    expanded: str  # after ${...} and ~
    variable: str | None = None  # the set variable whose value starts the path
    value: str = ""  # that variable's value
    unset: tuple[str, ...] = ()  # variables whose `:-default` stood in
    folder: Literal["recipe", "working"] | None = None  # a relative path's base; None: absolute

    def note(self) -> str:
        """E.g. 'from $COMPRESSOR_DATA_ROOT=mydata, read from the working folder'; '' for an
        absolute path written in the recipe, which needs no explaining."""
        if self.variable:
            where = f"from ${self.variable}={self.value}"
            where += ", read from the working folder" if self.folder else ""
        elif self.folder == "recipe":
            where = f"{self.expanded!r} read from the recipe's folder"
        else:
            where = "read from the working folder" if self.folder else ""
        unset = [
            f"${name} {'is empty' if name in os.environ else 'is not set'}" for name in self.unset
        ]
        # `$HOME/data`, `${1X}`, an unclosed `${X`: not expanded, so the path is taken as is.
        literal = (
            "its '$' was read as a character: a variable is written ${NAME} or ${NAME:-default}"
            if re.search(r"\$[A-Za-z_{]", self.expanded)
            else ""
        )
        return "; ".join(part for part in (where, *unset, literal) if part)


def _expand(text: str) -> PathSource:
    """Expand `${VAR}`, `${VAR:-default}` and `~`; an unset variable with no default is an error."""
    leading: list[tuple[str, str]] = []
    unset: list[str] = []

    def substitute(match: re.Match[str]) -> str:
        value = os.environ.get(match["name"])
        if value:
            if match.start() == 0:
                leading.append((match["name"], value))
            return value
        if match["default"] is not None:
            unset.append(match["name"])
            return match["default"]
        state = "is empty" if match["name"] in os.environ else "is not set"
        raise ValueError(f"environment variable {match['name']} {state} (use ${{VAR:-default}})")

    expanded = os.path.expanduser(_ENV_PATTERN.sub(substitute, text))
    variable, value = leading[0] if leading else (None, "")
    return PathSource(expanded, variable, value, tuple(unset))


def read_user_path(text: str, base_dir: Path | None) -> tuple[Path, PathSource]:
    """The input path `text` names, by the module docstring's rule, and how it came about."""
    source = _expand(text)
    path = Path(source.expanded)
    if path.is_absolute():
        return path, source
    if source.variable is not None or base_dir is None:
        # Absolute now: the run's recipe.yaml is read again from the run directory (by export
        # and --resume), where a relative path would point somewhere else. With no recipe file
        # (a recipe built in code), the working folder is the only folder it can mean.
        return Path(os.path.abspath(path)), replace(source, folder="working")
    # normpath: recipes/../data → data
    return Path(os.path.normpath(base_dir / path)), replace(source, folder="recipe")


# Where the input paths of the section being validated note how they came about: a field
# validator sees no section to keep them in, and reading a path twice to find out again could
# give a second answer. Set by WithInputPaths around each section's validation.
_sources_of_this_section: ContextVar[dict[str, PathSource] | None] = ContextVar(
    "_sources_of_this_section", default=None
)


# The longest file or folder name most file systems hold (NAME_MAX); Python 3.11's
# Path.exists() raises on a longer one instead of answering False.
MAX_NAME_BYTES = 255


def check_name_lengths(path: Path) -> Path:
    """Refuse a path with a file or folder name no file system holds, here, as one line:
    the first check of it on disk would crash with "File name too long"."""
    for part in path.parts:
        size = len(os.fsencode(part))
        if size > MAX_NAME_BYTES:
            raise ValueError(
                f"a file or folder name in the path ({part[:16]}…) is {size} bytes long; a "
                f"name holds at most {MAX_NAME_BYTES}"
            )
    return path


def _to_path(value: Any, info: ValidationInfo) -> Any:
    if not isinstance(value, str | Path):
        return value
    path, source = read_user_path(str(value), (info.context or {}).get("base_dir"))
    check_name_lengths(path)
    sources = _sources_of_this_section.get()
    if sources is not None and info.field_name is not None:
        sources[info.field_name] = source
    return path


def _to_output_path(value: Any) -> Any:
    if not isinstance(value, str | Path):
        return value
    return check_name_lengths(Path(_expand(str(value)).expanded))


UserPath = Annotated[Path, BeforeValidator(_to_path)]
# Outputs are relative to the working directory, like every CLI's output flag: `runs/` lands
# where the user runs the command, not beside a recipe that may sit in a read-only checkout.
OutputPath = Annotated[Path, BeforeValidator(_to_output_path)]


class WithInputPaths(Strict):
    """A section with input paths (UserPath fields), which remembers how each came about so
    that an error about one can name the variable or folder it was read from."""

    _path_sources: dict[str, PathSource] = PrivateAttr(default_factory=dict)

    @model_validator(mode="wrap")
    @classmethod
    def _remember_path_sources(cls, data: Any, handler: ModelWrapValidatorHandler[Any]) -> Any:
        """Keep what the UserPath fields noted while this section was validated (a section
        given as an instance is not validated again and keeps its own)."""
        sources: dict[str, PathSource] = {}
        token = _sources_of_this_section.set(sources)
        try:
            section = handler(data)
        finally:
            _sources_of_this_section.reset(token)
        section._path_sources.update(sources)
        return section

    def __eq__(self, other: object) -> bool:
        """Equal by value: how a path was written (for messages) is not part of what a recipe
        asks for. pydantic would compare the private record too, and a run's recipe.yaml
        (absolute paths) would never equal the recipe that started it (relative ones), so
        --resume and quickstart would refuse the very recipe that made the run."""
        if not isinstance(other, BaseModel):
            return NotImplemented
        return type(self) is type(other) and self.__dict__ == other.__dict__

    __hash__ = None  # type: ignore[assignment]  # mutable, as pydantic models are

    def path_source(self, field: str) -> PathSource | None:
        """How `field` was written; None when it was given as a Path or is unset."""
        return self._path_sources.get(field)

    def path_note(self, field: str) -> str:
        """' (from $VAR=value, read from the working folder)' and the like, or ''."""
        source = self.path_source(field)
        note = source.note() if source else ""
        return f" ({note})" if note else ""
