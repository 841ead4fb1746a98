"""What made a run: the manifest's provenance (versions, git revision, command, device) and
the hashes that tie a run's files to the recipe that made them.

Export and the gate compare these hashes to refuse files that are not the run's own, so how
each is computed is part of the run-directory contract (DESIGN.md).
"""

from __future__ import annotations

import hashlib
import json
import platform
import subprocess
import sys
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel

import compressor
from compressor.recipe import Recipe

SCHEMA_VERSION = 1


def recipe_hash(recipe: Recipe) -> str:
    """What the recipe asks for, hashed: only the values that differ from the defaults.

    It ties an export to the run it was made from (the gate compares the export report's
    hash with the run report's). A later compressor that adds a recipe field with a default
    must not change the hash of a recipe that does not set it, or every export made before
    the upgrade would read as made for another recipe. Nor must the settings a run's recipe
    may change after training (FREE_TO_CHANGE: a new gate threshold, the data moved), or a
    stricter gate would refuse the export of the same student; except the export section:
    an export made with other settings (a looser INT8 agreement bar, which the gate applies
    from the export report) must be made again. (`--resume` and benchmarks/quality.py
    compare recipes as recipes instead; `trained_recipe_sha256` checks recipe.yaml's text.)
    """
    asked = recipe.model_dump(mode="json", exclude_defaults=True)
    # The method's name is its default within its own class, but it picks the class.
    asked["method"] = {"name": recipe.method.name, **asked.get("method", {})}
    _drop_free_settings(asked, keep=("export",))
    return _json_sha256(asked)


def export_section_hash(recipe: Recipe) -> str:
    """The recipe's `export:` section as an export read it (only what differs from the
    defaults, like `recipe_hash`). The section may be edited in a run's recipe.yaml after
    training, which no run hash sees, and only a new export applies the edit: the gate
    compares this with recipe.yaml's section now."""
    asked = recipe.export.model_dump(mode="json", exclude_defaults=True)
    return _json_sha256(asked)


def _json_sha256(value: Any) -> str:
    """The sha256 of `value` as canonical JSON (sorted keys), so equal settings hash alike."""
    return hashlib.sha256(json.dumps(value, sort_keys=True).encode("utf-8")).hexdigest()


def package_versions() -> dict[str, str | None]:
    """Versions of what produced the run; looked up without importing the heavy packages."""
    versions: dict[str, str | None] = {
        "python": platform.python_version(),
        "compressor": compressor.__version__,
    }
    for package in ("torch", "torchvision", "onnx", "onnxruntime", "onnxruntime-gpu", "tensorrt"):
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = None
    return versions


CPUINFO = Path("/proc/cpuinfo")


def _cpuinfo_value(keys: tuple[str, ...], cpuinfo: Path = CPUINFO) -> str | None:
    """The first non-empty value of one of `keys` in /proc/cpuinfo; None where there is
    none (not Linux)."""
    try:
        lines = cpuinfo.read_text(errors="replace").splitlines()
    except OSError:
        return None
    for line in lines:
        key, _, value = line.partition(":")
        if key.strip() in keys and value.strip():
            return value.strip()
    return None


def cpu_model() -> str:
    """The processor's model name, which a latency is read against. On Linux
    platform.processor() says only "x86_64", so /proc/cpuinfo's "model name" (or an ARM
    board's "Model") comes first; elsewhere, what platform knows."""
    return _cpuinfo_value(("model name", "Model")) or platform.processor() or platform.machine()


def x86_without_vnni(cpuinfo: Path = CPUINFO) -> bool:
    """Whether this is an x86 CPU without int8 dot-product instructions (AVX-512 VNNI,
    AVX-VNNI or AMX), whose ONNX Runtime int8 kernels saturate; an x86 CPU whose flags
    cannot be read (not Linux) is taken to lack them."""
    if platform.machine().lower() not in ("x86_64", "amd64", "i386", "i686", "x86"):
        return False
    flags = _cpuinfo_value(("flags",), cpuinfo)
    return flags is None or not {"avx512_vnni", "avx_vnni", "amx_int8"} & set(flags.split())


def git_revision() -> str | None:
    """The compressor source revision: the commit of the checkout it runs from, else the one
    pip installed it from (`pip install git+...` records it in direct_url.json), else None.
    A git repository that merely holds the installed package (a virtual environment inside
    the user's own repository, as CI workspaces have it) is not compressor's checkout."""
    source = Path(compressor.__file__).resolve().parent
    try:
        result = subprocess.run(
            ["git", "rev-parse", "--show-toplevel", "HEAD"],
            cwd=source,
            capture_output=True,
            text=True,
            timeout=5,
        )
    except (OSError, subprocess.SubprocessError):
        result = None
    if result is not None and result.returncode == 0:
        top, _, commit = result.stdout.strip().partition("\n")
        if Path(top).resolve() == source.parent and commit:
            return commit
    return _installed_commit()


def _installed_commit() -> str | None:
    """The commit pip installed compressor from (PEP 610 direct_url.json), if it came from
    a version control system."""
    try:
        text = metadata.distribution("compressor").read_text("direct_url.json")
        commit = json.loads(text or "{}").get("vcs_info", {}).get("commit_id")
    except (metadata.PackageNotFoundError, ValueError, AttributeError):
        return None
    return commit if isinstance(commit, str) else None


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def invoked_command() -> list[str]:
    """How this process was started. `python -m compressor ...` (how torchrun starts its
    workers) reads as `compress ...`, not as the path of the package's __main__.py."""
    program = Path(sys.argv[0])
    if program.name == "__main__.py" and program.parent.name == "compressor":
        return ["compress", *sys.argv[1:]]
    return list(sys.argv)


def manifest(recipe: Recipe, device: str, status: str, **extra: Any) -> dict[str, Any]:
    return {
        "schema_version": SCHEMA_VERSION,
        "status": status,
        "command": invoked_command(),
        "versions": package_versions(),
        "device": device,
        "seed": recipe.train.seed,
        "recipe_sha256": recipe_hash(recipe),
        "git_revision": git_revision(),
        **extra,
    }


# What may change in a run's recipe.yaml, finished or resumed: where files are and how to get
# them (the run moved to another machine; the teacher is pinned by its weights' hash), and how
# it is exported and gated. What was trained, from what, on which data, may not.
FREE_TO_CHANGE = (
    ("data", "root"),
    ("data", "download"),
    ("teacher", "checkpoint"),
    ("output",),
    ("export",),
    ("gate",),
)


def with_free_settings_of(started: Recipe, recipe: Recipe) -> Recipe:
    """`started` with `recipe`'s values of the settings in FREE_TO_CHANGE: what is left to
    compare says whether `recipe` trains the same run."""
    for path in FREE_TO_CHANGE:
        started = _taking(started, path, recipe)
    return started


def _taking(model: BaseModel, path: tuple[str, ...], source: BaseModel) -> Any:
    """`model` with the value at `path` (section names, then a field) taken from `source`;
    as it was where either side lacks the section (a recipe without a teacher)."""
    name, *rest = path
    if not rest:
        return model.model_copy(update={name: getattr(source, name)})
    inner, inner_source = getattr(model, name), getattr(source, name)
    if inner is None or inner_source is None:
        return model
    return model.model_copy(update={name: _taking(inner, tuple(rest), inner_source)})


def trained_recipe_sha256(path: Path) -> str:
    """Hash of recipe.yaml as written, less the parts in FREE_TO_CHANGE.

    Hashed from the YAML mapping rather than from a parsed Recipe, so a later compressor
    that adds a field or changes a default does not make an old run's recipe differ."""
    mapping = yaml.safe_load(path.read_text(encoding="utf-8"))
    if isinstance(mapping, dict):
        _drop_free_settings(mapping)
    text = json.dumps(mapping, sort_keys=True, default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _drop_free_settings(mapping: dict[str, Any], keep: tuple[str, ...] = ()) -> None:
    """Remove the FREE_TO_CHANGE settings, but those `keep` names, from a recipe mapping, in
    place."""
    for *parents, key in (path for path in FREE_TO_CHANGE if path != keep):
        section: Any = mapping
        for parent in parents:
            section = section.get(parent) if isinstance(section, dict) else None
        if isinstance(section, dict):
            section.pop(key, None)
