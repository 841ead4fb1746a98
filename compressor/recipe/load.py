"""Reading a recipe file into a validated Recipe, and writing the resolved recipe back as YAML."""

from __future__ import annotations

import re
from collections.abc import Hashable
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from compressor.errors import UserError
from compressor.io import record_unreadable
from compressor.recipe.messages import format_validation_error, yaml_kind
from compressor.recipe.sections import Recipe


def parse_recipe(
    data: Any, source: str = "<recipe>", base_dir: Path | None = None, *, started: bool = False
) -> Recipe:
    """Validate a recipe mapping; raise UserError with one line per schema problem.
    `started`: the recipe of a run that has started (see `compressor.recipe.strict.started`)."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise UserError(
            f"{source}: the recipe must be a YAML mapping of sections (student:, data:, ...), "
            f"not {yaml_kind(data)}"
        )
    try:
        return Recipe.model_validate(data, context={"base_dir": base_dir, "started": started})
    except ValidationError as error:
        raise UserError(*format_validation_error(source, error)) from None


class _UniqueKeyLoader(yaml.SafeLoader):
    """yaml.SafeLoader that refuses a key given twice in one mapping: PyYAML keeps the last,
    so a second `train:` section would silently drop every setting of the first. Merge keys
    (`<<: *base`) are left to SafeLoader: a key written beside one overrides the merged
    value, as YAML intends, and is no repeat."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue
            if not isinstance(key_node, yaml.ScalarNode):  # `? [a, b]`: a list as a key
                raise yaml.constructor.ConstructorError(
                    problem="a key must be a name, not a list or a mapping",
                    problem_mark=key_node.start_mark,
                )
            key = self.construct_object(key_node, deep=deep)
            if isinstance(key, Hashable) and key in seen:
                raise yaml.constructor.ConstructorError(
                    problem=f"{key!r} is given twice in one section; keep one",
                    problem_mark=key_node.start_mark,
                )
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


# YAML 1.1 (PyYAML) reads `010` as octal 8 and `1:30` as base-60 90: a recipe's `epochs: 010`
# would silently train 8 epochs. YAML 1.2 reads both as text; here they are refused instead.
_YAML_11_OCTAL = re.compile(r"[-+]?0[0-7_]+")
_YAML_11_BASE_60 = re.compile(r"[-+]?[0-9][0-9_]*(:[0-5]?[0-9])+(\.[0-9_]*)?")


def _refuse_yaml_11_numbers(loader: yaml.SafeLoader, node: yaml.ScalarNode) -> Any:
    integer = node.tag.endswith(":int")
    octal = integer and _YAML_11_OCTAL.fullmatch(node.value)  # `!!float 010` is 10.0
    if octal or _YAML_11_BASE_60.fullmatch(node.value):
        raise yaml.constructor.ConstructorError(
            problem=f"{node.value} is a YAML 1.1 octal or base-60 number, not the decimal it "
            "looks like; write it without the leading 0 or the colons, or quote it for text",
            problem_mark=node.start_mark,
        )
    try:
        return (loader.construct_yaml_int if integer else loader.construct_yaml_float)(node)
    except ValueError:  # `!!int 3.5`: a tag that does not fit the text
        raise yaml.constructor.ConstructorError(
            problem=f"{node.value!r} is not {'an integer' if integer else 'a number'}",
            problem_mark=node.start_mark,
        ) from None


_UniqueKeyLoader.add_constructor("tag:yaml.org,2002:int", _refuse_yaml_11_numbers)
_UniqueKeyLoader.add_constructor("tag:yaml.org,2002:float", _refuse_yaml_11_numbers)


class _RecipeDumper(yaml.SafeDumper):
    """yaml.SafeDumper that quotes text the loader would read as a number (a run named
    `1e5`), so a run's recipe.yaml reads back as it was written."""


# YAML 1.1 (PyYAML) reads `lr: 1e-3` and `1.0e5` as text: its floats need a dot and a signed
# exponent. YAML 1.2, JSON and editors read them as numbers, as the user means them.
_EXPONENT_FLOAT = re.compile(r"^[-+]?(?:[0-9][0-9_]*(?:\.[0-9_]*)?|\.[0-9_]+)[eE][-+]?[0-9]+$")
for _yaml_class in (_UniqueKeyLoader, _RecipeDumper):
    _yaml_class.add_implicit_resolver(
        "tag:yaml.org,2002:float", _EXPONENT_FLOAT, list("-+.0123456789")
    )


def load_recipe(path: Path | str, *, started: bool = False) -> Recipe:
    """Read a recipe file with a safe YAML loader (yaml.SafeLoader, duplicate keys refused)
    and validate its schema. `started`: a run's recipe.yaml, or the recipe resuming it."""
    path = Path(path)
    try:
        if path.is_dir():
            raise UserError(f"{path}: is a folder, not a recipe file (name the .yaml file in it)")
        if path.exists() and not path.is_file():  # /dev/null, a pipe
            raise UserError(f"{path}: not a regular file; a recipe is a UTF-8 YAML file")
        if not path.is_file():
            raise UserError(f"{path}: recipe file not found (check the path)")
        too_large = record_unreadable(path)  # a crafted run's recipe.yaml of gigabytes, say
        if too_large is not None:
            raise UserError(f"{path}: {too_large}; a recipe is a small YAML file")
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise UserError(f"{path}: not a text file; a recipe is UTF-8 YAML") from None
    except OSError as error:  # a name too long, a folder that may not be listed
        raise UserError(f"{path}: cannot read the recipe file ({error.strerror})") from None
    try:
        data = yaml.load(text, Loader=_UniqueKeyLoader)
    except RecursionError:  # the YAML composer recurses once per level of nesting
        raise UserError(f"{path}: nested too deeply to be a recipe (hundreds of levels)") from None
    except yaml.reader.ReaderError as error:  # a control character: where, and which
        line = text.count("\n", 0, error.position) + 1
        column = error.position - (text.rfind("\n", 0, error.position) + 1) + 1
        raise UserError(
            f"{path}: line {line}, column {column}: not valid YAML: a control character "
            f"(U+{error.character:04X}), which YAML does not allow; delete it"
        ) from None
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" line {mark.line + 1}, column {mark.column + 1}:" if mark else ""
        problem = getattr(error, "problem", None) or error
        raise UserError(f"{path}:{where} not valid YAML: {problem}") from None
    return parse_recipe(data, source=str(path), base_dir=path.resolve().parent, started=started)


def recipe_to_yaml(recipe: Recipe) -> str:
    """The resolved recipe (defaults filled in, paths absolute) as YAML."""
    return yaml.dump(recipe.model_dump(mode="json"), Dumper=_RecipeDumper, sort_keys=False)
