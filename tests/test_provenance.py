"""compressor/provenance.py: the recipe hash that ties exports to the run they were made from."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

import compressor
from compressor import provenance
from compressor.provenance import recipe_hash, with_free_settings_of
from compressor.recipe import Recipe, parse_recipe


def _hash(**sections: Any) -> str:
    return recipe_hash(parse_recipe({"student": {"arch": "resnet8"}, **sections}, source="t"))


def test_spelling_out_a_default_keeps_the_hash() -> None:
    """What a recipe gets from a field added later with a default: the hash must not move,
    or every run made before the upgrade could no longer be resumed."""
    assert _hash(method={"name": "amkd"}) == _hash(method={"name": "amkd", "bank_epochs": 1})
    assert _hash() == _hash(method={"name": "ce"}, train={"epochs": 10})
    assert _hash() == _hash(export={"int8": {"calibration_images": 512}})


def test_what_the_recipe_asks_for_changes_the_hash() -> None:
    hashes = {
        _hash(),
        _hash(method={"name": "kd"}),
        _hash(method={"name": "amkd"}),
        _hash(method={"name": "bss"}),
        _hash(method={"name": "amkd", "bank_epochs": 2}),
        _hash(train={"epochs": 11}),
        _hash(data={"name": "cifar10"}),
        # An export made with other settings (a looser agreement bar) is made again.
        _hash(export={"int8": {"calibration_images": 256}}),
    }
    assert len(hashes) == 8


def test_settings_free_to_change_after_training_keep_the_hash() -> None:
    """A stricter gate, a moved data set or teacher file: the same student, whose export the
    gate must still accept."""
    base = {"teacher": {"arch": "resnet20", "checkpoint": "/a/t.pt"}, "method": {"name": "kd"}}
    before = _hash(**base, data={"name": "cifar10", "root": "/a"})
    after = _hash(
        method={"name": "kd"},
        teacher={"arch": "resnet20", "checkpoint": "/b/t.pt"},
        data={"name": "cifar10", "root": "/b"},
        gate={"max_drop": 0.5, "min_speedup": 2},
        output={"name": "elsewhere"},
    )
    assert before == after


def _recipe(**sections: Any) -> Recipe:
    base = {
        "student": {"arch": "resnet8"},
        "teacher": {"arch": "resnet20", "checkpoint": "/old/t.pt"},
        "data": {"name": "cifar10", "root": "/old/data"},
    }
    for name, values in sections.items():
        base[name] = {**base.get(name, {}), **values}
    return parse_recipe(base, source="t")


def test_free_settings_are_taken_from_the_new_recipe_and_the_rest_kept() -> None:
    """What `--resume` compares: a run moved (data root, teacher file) or exported and gated
    otherwise is the same run; anything it trains with is not."""
    started = _recipe()
    moved = _recipe(
        data={"root": "/new/data"},
        teacher={"checkpoint": "/new/t.pt"},
        export={"batch_sizes": [1, 4]},
        gate={"max_drop": 5.0},
    )
    assert started != moved
    assert with_free_settings_of(started, moved) == moved
    retrained = _recipe(train={"epochs": 3}, data={"root": "/new/data"})
    taken = with_free_settings_of(started, retrained)
    assert taken != retrained and taken.train == started.train
    assert taken.data.root == retrained.data.root
    untaught = parse_recipe({"student": {"arch": "resnet8"}}, source="t")
    assert with_free_settings_of(started, untaught).teacher == started.teacher


needs_git = pytest.mark.skipif(shutil.which("git") is None, reason="no git on this machine")


def _git(folder: Path, *args: str) -> str:
    done = subprocess.run(["git", *args], cwd=folder, capture_output=True, text=True, check=True)
    return done.stdout.strip()


def _repository_with_a_package(root: Path, package: Path) -> None:
    """A git repository at `root` with one commit, holding an empty `package` folder."""
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("")
    _git(root, "init", "-q")
    author = ["-c", "user.name=u", "-c", "user.email=u@x"]
    _git(root, *author, "commit", "-q", "--allow-empty", "-m", "first")


@needs_git
def test_the_revision_is_compressors_own_checkouts_not_a_repository_around_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A virtual environment inside the user's repository (a CI workspace) put the user's
    commit in every manifest as compressor's."""
    repository = tmp_path / "user-repo"
    package = repository / ".venv" / "site-packages" / "compressor"
    _repository_with_a_package(repository, package)
    monkeypatch.setattr(compressor, "__file__", str(package / "__init__.py"))
    monkeypatch.setattr(provenance, "_installed_commit", lambda: None)
    assert provenance.git_revision() is None

    checkout = tmp_path / "clone"
    _repository_with_a_package(checkout, checkout / "compressor")
    monkeypatch.setattr(compressor, "__file__", str(checkout / "compressor" / "__init__.py"))
    assert provenance.git_revision() == _git(checkout, "rev-parse", "HEAD")


def _recipe_file(folder: Path, name: str, text: str) -> Path:
    path = folder / name
    path.write_text(text, encoding="utf-8")
    return path


def test_a_run_s_recipe_yaml_hashes_alike_after_edits_free_to_change(tmp_path: Path) -> None:
    """A run's recipe.yaml may be edited after training where FREE_TO_CHANGE allows (the data
    or teacher moved, download turned off, export, gate or output settings), and rewritten
    in another key order: the run must still read as the one trained, or its export and
    gate refuse it as a changed recipe. A change to what it trained with must show."""
    trained = _recipe_file(
        tmp_path,
        "trained.yaml",
        "student: {arch: resnet8}\n"
        "teacher: {arch: resnet20, checkpoint: /a/t.pt}\n"
        "data: {name: cifar10, root: /a, download: true}\n"
        "train: {epochs: 2, device: cpu}\n",
    )
    edited = _recipe_file(
        tmp_path,
        "edited.yaml",
        "train: {device: cpu, epochs: 2}\n"
        "data: {download: false, name: cifar10, root: /b}\n"
        "teacher: {checkpoint: /b/t.pt, arch: resnet20}\n"
        "student: {arch: resnet8}\n"
        "export: {opset: 17}\n"
        "gate: {max_drop: 0.5}\n"
        "output: {name: elsewhere}\n",
    )
    sha = provenance.trained_recipe_sha256
    assert sha(trained) == sha(edited)
    text = trained.read_text(encoding="utf-8")
    for before, after in (("epochs: 2", "epochs: 3"), ("device: cpu", "device: cuda")):
        changed = _recipe_file(tmp_path, "changed.yaml", text.replace(before, after))
        assert sha(changed) != sha(trained), after


@pytest.mark.parametrize(
    ("machine", "flags", "saturates"),
    [
        ("x86_64", "fpu sse2 avx2 fma", True),  # AVX2 only: an AMD EPYC of this project's CI
        ("x86_64", "fpu avx2 avx512f avx512_vnni", False),
        ("x86_64", "fpu avx2 avx_vnni", False),
        ("x86_64", "fpu avx2 amx_int8 amx_tile", False),
        ("aarch64", "fp asimd", False),  # ONNX Runtime's ARM kernels are others
    ],
)
def test_a_cpu_whose_u8s8_kernels_saturate_is_told_by_its_flags(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, machine: str, flags: str, saturates: bool
) -> None:
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text(f"processor\t: 0\nmodel name\t: Some CPU\nflags\t\t: {flags}\n\n")
    monkeypatch.setattr(provenance.platform, "machine", lambda: machine)
    assert provenance.x86_without_vnni(cpuinfo) is saturates
    unreadable = tmp_path / "absent"  # not Linux: taken to lack them, 7 bits are safe
    assert provenance.x86_without_vnni(unreadable) is (machine == "x86_64")
