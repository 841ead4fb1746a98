"""The gate's JUnit writer on verdicts built by hand: the exact file CI systems read.

tests/gate/test_evaluate.py checks the same files as `compress gate --junit` writes them on
real runs; here each writer runs alone, so a change in what CI is shown fails one small test.
"""

from __future__ import annotations

import socket
import stat
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from compressor.errors import UserError
from compressor.gate import GateResult, RuleResult
from compressor.reporting.junit import (
    check_junit_path,
    suite_name,
    write_junit,
    write_junit_error,
)
from tests.disk_full import file_size_limit, needs_file_size_limits

VERDICT = GateResult(
    run=Path("/runs/kd"),
    backend="onnxruntime",
    precision="fp16",
    rules=[
        RuleResult("student_accuracy", 91.234, 90.0, "PASS", "teacher 92.00 % − max_drop 2"),
        RuleResult("export_agreement", 98.75, 99.0, "FAIL", "a <b> & c"),
        RuleResult("speedup", None, None, "SKIP", "min_speedup is not set", "×"),
    ],
    seconds=1.23456,
)

EXPECTED = """\
<?xml version='1.0' encoding='utf-8'?>
<testsuites name="compressor.gate" tests="3" failures="1" errors="0" time="1.235">
  <testsuite name="compressor.gate.kd.onnxruntime.fp16" tests="3" failures="1" errors="0" \
skipped="1" time="1.235">
    <properties>
      <property name="run" value="/runs/kd" />
      <property name="backend" value="onnxruntime" />
      <property name="precision" value="fp16" />
    </properties>
    <testcase name="student_accuracy" classname="compressor.gate.kd.onnxruntime.fp16" \
time="0">
      <system-out>student_accuracy: PASS: measured 91.23 %, needs ≥ 90.00 % \
(teacher 92.00 % − max_drop 2)</system-out>
    </testcase>
    <testcase name="export_agreement" classname="compressor.gate.kd.onnxruntime.fp16" \
time="0">
      <failure message="export_agreement: FAIL: measured 98.75 %, needs ≥ 99.00 % \
(a &lt;b&gt; &amp; c)" type="GateFailure">export_agreement: FAIL: measured 98.75 %, \
needs ≥ 99.00 % (a &lt;b&gt; &amp; c)</failure>
    </testcase>
    <testcase name="speedup" classname="compressor.gate.kd.onnxruntime.fp16" time="0">
      <skipped message="min_speedup is not set" />
      <system-out>speedup: skipped: min_speedup is not set</system-out>
    </testcase>
  </testsuite>
</testsuites>
"""


def test_a_verdict_is_one_testcase_per_rule(tmp_path: Path) -> None:
    """Byte for byte: CI dashboards key on these names, counts and messages."""
    path = tmp_path / "gate.xml"
    write_junit(VERDICT, path)
    assert path.read_text(encoding="utf-8") == EXPECTED


def test_gates_of_other_runs_and_precisions_are_other_suites() -> None:
    """CI systems merge results by suite and class name: the fp32 and INT8 gates of a run,
    and the gates of two runs, must not collide. A dot would nest in Jenkins' package tree."""
    assert suite_name(Path("/runs/r8.v2"), "onnxruntime", "int8") == (
        "compressor.gate.r8_v2.onnxruntime.int8"
    )
    here = Path.cwd().name.replace(".", "_") or "run"
    assert suite_name(Path("."), "tensorrt", "fp16") == f"compressor.gate.{here}.tensorrt.fp16"


def test_only_a_junit_file_is_written_over(tmp_path: Path) -> None:
    """Whichever way the gate ends, a --junit naming a report, a build file or another
    tool's test results leaves it whole: every XML file starts with `<?xml`."""
    others = {
        "report.json": '{"results": {}}',
        "pom.xml": '<?xml version="1.0"?><project><modelVersion>4.0.0</modelVersion></project>',
        "pytest.xml": '<?xml version="1.0"?><testsuites name="pytest"><testsuite/></testsuites>',
    }
    for name, text in others.items():
        (tmp_path / name).write_text(text)
        for write in (
            lambda path: write_junit(VERDICT, path),
            lambda path: write_junit_error(UserError("why"), path),
        ):
            with pytest.raises(UserError, match="holds something other than a JUnit file"):
                write(tmp_path / name)
        assert (tmp_path / name).read_text() == text
    (tmp_path / "gate.xml").write_text(others["pytest.xml"])  # not to be suggested again
    with pytest.raises(UserError, match=r"give another name, such as compress-gate\.xml$"):
        write_junit(VERDICT, tmp_path / "gate.xml")
    (tmp_path / "gate.xml").unlink()
    earlier, empty = tmp_path / "gate.xml", tmp_path / "empty.xml"
    write_junit(VERDICT, earlier)
    empty.touch()
    for path in (earlier, empty):
        write_junit_error(UserError("why"), path)
        assert ET.parse(path).getroot().find("testsuite/testcase/error") is not None


def test_what_xml_cannot_hold_is_replaced_and_the_file_parses(tmp_path: Path) -> None:
    """A run folder named with a control character or undecodable bytes (which Python keeps
    as lone surrogates), and an error quoting it, still give a file CI systems can read."""
    odd = Path("/runs/ctl\x01run\udcff")
    verdict = GateResult(odd, "onnx\x02runtime", "int8", VERDICT.rules, seconds=0.5)
    path = tmp_path / "gate.xml"
    write_junit(verdict, path)
    root = ET.parse(path).getroot()
    run = root.find("testsuite/properties/property[@name='run']")
    assert run is not None and run.get("value") == "/runs/ctl\ufffdrun\ufffd"
    assert root.find("testsuite/properties/property[@name='backend']").get("value") == (
        "onnx\ufffdruntime"
    )
    write_junit_error(UserError(f"{odd}: no such run\x07"), path)
    error = ET.parse(path).getroot().find("testsuite/testcase/error")
    assert (
        error is not None and error.get("message") == "/runs/ctl\ufffdrun\ufffd: no such run\ufffd"
    )


def test_an_earlier_junit_file_with_a_byte_order_mark_is_written_over(tmp_path: Path) -> None:
    path = tmp_path / "gate.xml"
    path.write_bytes(b"\xef\xbb\xbf<?xml version='1.0'?><testsuites name='compressor.gate' />")
    write_junit(VERDICT, path)
    assert path.read_text(encoding="utf-8") == EXPECTED


def test_a_gate_that_could_not_run_is_one_error(tmp_path: Path) -> None:
    path = tmp_path / "gate.xml"
    write_junit(VERDICT, path)  # an earlier verdict is replaced, never left standing
    write_junit_error(UserError("run.json: not found", "run `compress distill` first"), path)
    root = ET.parse(path).getroot()
    assert (root.get("tests"), root.get("failures"), root.get("errors")) == ("1", "0", "1")
    [case] = root.iter("testcase")
    assert (case.get("name"), case.get("classname")) == ("inputs", "compressor.gate")
    error = case.find("error")
    assert error is not None
    assert error.get("message") == "run.json: not found"
    assert error.text == "run.json: not found\nrun `compress distill` first"


@pytest.mark.parametrize("name", ["", "reports"])
def test_a_folder_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str) -> None:
    """An empty name is the working directory, a folder too."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "reports").mkdir()
    check_junit_path(Path("reports.xml"))  # a file that does not exist yet is fine
    with pytest.raises(UserError, match="not a file; give a file name") as caught:
        write_junit(VERDICT, Path(name))
    assert ("(the working directory)" in str(caught.value)) == (name == "")
    assert list(tmp_path.iterdir()) == [tmp_path / "reports"]


def test_an_unwritable_file_is_a_user_error(tmp_path: Path) -> None:
    """Refused before the gate runs, too: looking a name this long up used to crash."""
    path = tmp_path / f"{'x' * 300}.xml"
    for write in (check_junit_path, lambda path: write_junit_error(UserError("why"), path)):
        with pytest.raises(UserError, match=r"cannot write the JUnit file \(File name too long\)"):
            write(path)


def test_a_path_in_a_file_names_the_file(tmp_path: Path) -> None:
    """`--junit r20.yaml/out.xml` with r20.yaml a file: mkdir's 'File exists' named no file."""
    (tmp_path / "r20.yaml").write_text("")
    for path in (tmp_path / "r20.yaml" / "out.xml", tmp_path / "r20.yaml" / "sub" / "out.xml"):
        with pytest.raises(UserError) as caught:
            check_junit_path(path)
        assert str(caught.value) == (
            f"--junit {path}: {tmp_path / 'r20.yaml'} is a file, not a folder; give a path in "
            "a folder, such as gate.xml"
        )


def test_a_socket_or_device_is_not_replaced_by_a_file(tmp_path: Path) -> None:
    """The atomic write renames a file over the path: `--junit /dev/null` as root would put
    a regular file in place of the device (a named pipe would block the check's read)."""
    with socket.socket(socket.AF_UNIX) as listening:
        path = tmp_path / "gate.sock"
        listening.bind(str(path))
        with pytest.raises(UserError, match=r"not a regular file \(a device, pipe or socket\)"):
            write_junit(VERDICT, path)
        assert stat.S_ISSOCK(path.stat().st_mode)


@needs_file_size_limits
def test_a_junit_file_that_cannot_be_written_takes_the_earlier_verdict_with_it(
    tmp_path: Path,
) -> None:
    """On a full disk the error record failed to replace an earlier passing verdict, and CI
    went on showing that pass. Removing a file needs no space."""
    path = tmp_path / "gate.xml"
    write_junit(VERDICT, path)
    with file_size_limit(100), pytest.raises(UserError) as error:
        write_junit_error(UserError("the run is missing"), path)
    assert str(error.value) == (
        f"{path}: cannot write the JUnit file (File too large); the file is larger than this "
        "process may write (see `ulimit -f`); the earlier JUnit file there is removed, so CI "
        "shows no old verdict"
    )
    assert not path.exists()


def test_a_file_too_large_to_be_a_junit_file_is_never_written_over(tmp_path: Path) -> None:
    """An earlier JUnit file of the gate is a few kilobytes: a --junit naming something far
    larger (a model, a data file, a log) is refused unread, before the gate runs, and left
    whole. (A sparse 2 MiB file: its size is what tells.)"""
    large = tmp_path / "model.bin"
    with large.open("wb") as file:
        file.write(b"not xml")
        file.truncate(2 << 20)
    with pytest.raises(UserError, match="holds something other than a JUnit file"):
        check_junit_path(large)
    assert large.stat().st_size == 2 << 20
