"""`compress export --student-onnx FILE`: a student ONNX file made elsewhere, validated in
place of the exported one, and what is refused before any work."""

from __future__ import annotations

import shlex
import shutil
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper
from onnxruntime.quantization import QuantType, quantize_dynamic
from packaging.version import Version

from compressor.errors import UserError
from compressor.io import file_sha256
from compressor.models import create_model
from export.onnx_export import check_classifier_io
from tests.cli_helpers import run_cli
from tests.export.helpers import (
    QUICK,
    copy_run,
    folder_contents,
    invoke,
    one_error_line,
    report_of,
    rows_of,
)


def test_quantized_student_file_is_validated_as_int8(
    exported_run: Path, teacher_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """--student-onnx: a file made elsewhere (here: ONNX Runtime's dynamic quantisation of
    the ResNet-20 exported as the distilled run's teacher, i.e. teacher_run's student)."""
    quantized = tmp_path / "resnet20.int8.onnx"
    try:
        quantize_dynamic(
            exported_run / "export" / "teacher.onnx", quantized, weight_type=QuantType.QUInt8
        )
    except Exception as error:  # the tool that makes the file, not compressor
        if Version(ort.__version__) >= Version("1.32"):  # 1.32 quantises it; 1.21-1.30 do not
            raise
        pytest.skip(f"onnxruntime {ort.__version__} cannot quantise this export: {error}")
    result = run_cli(capsys, "export", str(teacher_run), "--student-onnx", str(quantized), *QUICK)
    assert result.code == 0, result.stderr
    rows = rows_of(report_of(teacher_run))
    int8 = rows[("student", "onnxruntime", "int8")]
    assert int8["file"] == str(quantized)
    assert int8["parity"]["tolerance_max_abs"] is None
    assert int8["parity"]["min_agreement"] == 98.0
    assert int8["parity"]["top1_agreement"] > 90.0


def test_an_fp16_student_file_with_fp16_is_refused(
    exported_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Two fp16 students in one report: the gate could never tell which to judge."""
    given = shutil.copy(exported_run / "export" / "student.fp16.onnx", tmp_path / "s16.onnx")
    result = run_cli(capsys, "export", str(exported_run), "--student-onnx", str(given), "--fp16")
    assert "s16.onnx: is already fp16, and --fp16 would add" in one_error_line(result)


def test_a_student_onnx_the_export_would_replace_is_refused(
    distilled_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """export/teacher.onnx given back as the student would be overwritten by the new export
    of the teacher, losing the user's file (and the student's validation with it)."""
    run = copy_run(distilled_run, tmp_path / "mine", "completed")
    invoke("export", str(run), *QUICK)
    mine = run / "export" / "teacher.onnx"
    before = folder_contents(run / "export")
    line = one_error_line(run_cli(capsys, "export", str(run), "--student-onnx", str(mine), *QUICK))
    assert "this export writes its own teacher.onnx there and would replace" in line
    assert folder_contents(run / "export") == before


def fixed_batch_student(run: Path, folder: Path, batch: int) -> Path:
    """The run's student exported with its batch dimension fixed at `batch`."""
    record = torch.load(run / "student.pt", weights_only=True)
    model = create_model(record["arch"], record["num_classes"], record["image_shape"][0])
    model.load_state_dict(record["state_dict"])
    fixed = folder / f"fixed{batch}.onnx"
    example = torch.zeros(batch, *record["image_shape"])
    torch.onnx.export(model.eval(), (example,), fixed, dynamo=True)
    return fixed


def refused_fixed_batch_export(
    distilled_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], batch: int
) -> tuple[Path, Path, str]:
    """A copy of the run, its student fixed at `batch`, and the one line refusing a quick
    export of that student at the default batch sizes."""
    fixed = fixed_batch_student(distilled_run, tmp_path, batch)
    run = copy_run(distilled_run, tmp_path / "fixed", "completed")
    line = one_error_line(
        run_cli(capsys, "export", str(run), "--no-teacher", "--student-onnx", str(fixed), *QUICK)
    )
    return run, fixed, line


def test_a_student_onnx_fixed_at_one_batch_is_run_at_that_batch_only(
    distilled_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Fixed at 72, it fits the 360 digits test images and --batch-sizes 72; not 1 and 8."""
    run, fixed, line = refused_fixed_batch_export(distilled_run, tmp_path, capsys, 72)
    assert "fixed at 72, but it would be run at batch sizes 1, 8, 40, 64" in line
    assert line.endswith("export it with a dynamic batch axis, or time it with --batch-sizes 72")
    int8_flags = ["--batch-sizes", "72", "--int8", "--calibration-images", "144"]
    student_flags = ["--no-teacher", "--student-onnx", str(fixed)]
    calibrated = one_error_line(run_cli(capsys, "export", str(run), *student_flags, *int8_flags))
    assert "fixed at 72, but --int8 calibrates in batches of 64 (144 images)" in calibrated
    invoke(
        "export", str(run), "--no-teacher", "--student-onnx", str(fixed),
        "--batch-sizes", "72", "--runs", "2", "--warmup", "1",
    )  # fmt: skip
    row = rows_of(report_of(run))[("student", "onnxruntime", "fp32")]
    assert row["file"] == str(fixed)
    assert row["parity"]["top1_agreement"] == 100.0


def test_a_student_onnx_fixed_below_the_evaluation_batch_is_told_it_cannot_run(
    distilled_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Fixed at 8, no --batch-sizes can help: evaluation runs in batches of at least 64."""
    _, _, line = refused_fixed_batch_export(distilled_run, tmp_path, capsys, 8)
    assert line.endswith(
        "export it with a dynamic batch axis, a fixed batch can run here only if it is at "
        "least 64 and divides the 360 test images"
    )


def _classifier(
    path: Path, image: list[int | str], logits: list[int | str], *, flatten_to: int, classes: int
) -> Path:
    """A linear classifier as a hand-built ONNX graph: images [image] → Reshape to
    [-1, flatten_to] (or to a fixed [1, -1] with flatten_to 0) → MatMul → logits, declared
    [logits]. What a careless export leaves: sizes that say more, or less, than the graph does."""
    shape = [-1, flatten_to] if flatten_to else [1, -1]
    features = flatten_to or 64
    weights = numpy_helper.from_array(np.ones((features, classes), np.float32), "weights")
    target = numpy_helper.from_array(np.array(shape, np.int64), "shape")
    graph = helper.make_graph(
        [
            helper.make_node("Reshape", ["images", "shape"], ["flat"]),
            helper.make_node("MatMul", ["flat", "weights"], ["logits"]),
        ],
        "classifier",
        [helper.make_tensor_value_info("images", TensorProto.FLOAT, image)],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, logits)],
        [weights, target],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, path)
    return path


def test_a_student_onnx_that_fixes_its_batch_inside_is_refused_before_any_work(
    exported_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Its input says the batch is dynamic, a Reshape to [1, 64] says otherwise: ONNX
    Runtime failed halfway through the evaluation, and the export crashed (exit 3)."""
    given = _classifier(
        tmp_path / "fixed-inside.onnx", ["batch", 1, 8, 8], ["batch", 10], flatten_to=0, classes=10
    )
    before = folder_contents(exported_run / "export")
    line = one_error_line(
        run_cli(capsys, "export", str(exported_run), "--student-onnx", str(given), *QUICK)
    )
    assert line.startswith(f"error: {given}: fails in ONNX Runtime {ort.__version__} on a batch")
    assert "dynamic all through the graph (no reshape to a fixed batch): it ran on 1" in line
    assert folder_contents(exported_run / "export") == before


def test_open_sizes_are_taken_at_their_word_until_the_file_runs(tmp_path: Path) -> None:
    """Named height, width and class dimensions are not refused for not being numbers; a
    file whose logits then do not match the run's classes is, once it has run."""
    image, logits = ["batch", 1, "h", "w"], ["batch", "classes"]
    open_sizes = _classifier(tmp_path / "open.onnx", image, logits, flatten_to=64, classes=10)
    check_classifier_io(onnx.load(open_sizes), open_sizes, [1, 8, 8], 10)
    with pytest.raises(UserError, match=r"images are \[batch, 3, 8, 8\]"):
        check_classifier_io(onnx.load(open_sizes), open_sizes, [3, 8, 8], 10)


def test_logits_of_the_wrong_size_from_open_sizes_are_refused_once_run(
    distilled_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    given = _classifier(
        tmp_path / "five.onnx", ["batch", 1, 8, 8], ["batch", "classes"], flatten_to=64, classes=5
    )
    line = one_error_line(
        run_cli(capsys, "export", str(distilled_run), "--student-onnx", str(given), *QUICK)
    )
    assert line == (
        f"error: {given}: returns logits of shape [1, 5] for 1 images of [1, 8, 8]; expected "
        "[1, 10], one per class"
    )


def test_the_gates_re_export_hints_give_the_student_onnx_file_again(
    exported_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """After `--student-onnx FILE`, a re-export without the flag would measure student.pt's
    export in the file's place: the gate's hints give the file again, and its own precision
    takes no flag (`--fp16` with an fp16 file is refused); where only student.pt's export
    makes the student asked for, the hint says it replaces the file."""
    run = copy_run(exported_run, tmp_path / "given", "completed")
    given = tmp_path / "mine.fp16.onnx"
    shutil.copyfile(exported_run / "export" / "student.fp16.onnx", given)
    flags = ["--no-teacher", *QUICK]
    assert run_cli(capsys, "export", str(run), "--student-onnx", str(given), *flags).code == 0
    assert report_of(run)["student_onnx"] == {"file": str(given.resolve()), "precision": "fp16"}

    line = one_error_line(run_cli(capsys, "gate", str(run)))
    assert line.endswith(
        f"no onnxruntime fp32 student (exported: onnxruntime fp16); run `compress export {run}` "
        f"(it exports the run's student.pt in place of --student-onnx {given.resolve()}), or "
        "gate an exported one with --backend onnxruntime --precision fp16"
    )

    proto = onnx.load(given)
    proto.doc_string = "optimised again"
    onnx.save(proto, given)
    line = one_error_line(run_cli(capsys, "gate", str(run), "--precision", "fp16"))
    again = f"compress export {run} --student-onnx {given.resolve()}"
    assert line.endswith(f"re-export with `{again}`")
    assert run_cli(capsys, *shlex.split(again)[1:], *flags).code == 0
    fp16 = rows_of(report_of(run))["student", "onnxruntime", "fp16"]
    assert fp16["sha256"] == file_sha256(given)
    assert run_cli(capsys, "gate", str(run), "--precision", "fp16").code in (0, 1)
