"""The gate's verdict as JUnit XML, the format CI systems already render as test results.

Kept apart from the gate's rules (compressor.gate) so that deciding a verdict and reporting
it change for different reasons: a CI system's schema is no business of the rules.
"""

from __future__ import annotations

import contextlib
import re
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import TYPE_CHECKING

from compressor.errors import UserError
from compressor.io import (
    WriteFailed,
    check_writable,
    file_in_the_way,
    regular_or_absent,
    what_to_do,
    write_bytes,
)

if TYPE_CHECKING:  # for annotations only: writing XML needs none of the gate's imports
    from compressor.gate import GateResult

SUITE_NAME = "compressor.gate"
# Characters XML 1.0 cannot hold, escaped or not: C0 controls, lone surrogates (a path's
# undecodable bytes, as Python names them) and U+FFFE/U+FFFF.
_NOT_XML = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


def _junit_suite(
    name: str, *, tests: int, failures: int, errors: int, skipped: int, seconds: float
) -> tuple[ET.Element, ET.Element]:
    counts = {"tests": str(tests), "failures": str(failures), "errors": str(errors)}
    time_text = f"{seconds:.3f}"
    suites = ET.Element("testsuites", {"name": SUITE_NAME, **counts, "time": time_text})
    suite = ET.SubElement(
        suites,
        "testsuite",
        {"name": name, **counts, "skipped": str(skipped), "time": time_text},
    )
    return suites, suite


def suite_name(run: Path, backend: str, precision: str) -> str:
    """compressor.gate.<run>.<backend>.<precision>: the fp32 and INT8 gates of one run, or the
    gates of two runs, in one pipeline are told apart where CI systems merge test results by
    suite and class name. The run's name keeps only characters that do not nest in Jenkins'
    package tree (a dot would)."""
    name = re.sub(r"[^\w-]", "_", (_resolved(run) or Path(run).absolute()).name) or "run"
    return f"{SUITE_NAME}.{name}.{backend}.{precision}"


def _resolved(path: Path) -> Path | None:
    """`path` with its links followed; None where they cannot be: a link loop (RuntimeError
    before Python 3.13, OSError since) or a name too long to look up. The gate's own checks
    then name what is wrong with the path."""
    try:
        return Path(path).resolve()
    except (OSError, RuntimeError):
        return None


def enclosing_run(path: Path) -> Path | None:
    """The run directory `path` lies in (the nearest folder above it that holds a run), for a
    --junit read off a command line that did not parse, where RUN is not known."""
    from compressor.rundir.layout import RunDir, holds_run

    target = _resolved(path)
    if target is None:
        return None
    return next((parent for parent in target.parents if holds_run(RunDir(parent))), None)


def check_junit_path(path: Path) -> None:
    """A --junit that names a folder, or a path in a file, is refused before the gate runs,
    not after it printed."""
    try:
        is_folder = Path(path).is_dir()
        in_the_way = file_in_the_way(path)
    except OSError as error:  # a name too long to look up, say
        raise UserError(f"--junit {path}: cannot write the JUnit file ({error.strerror})") from None
    if is_folder:
        # Path("") is Path("."): an empty --junit names the working directory.
        empty = " (the working directory)" if Path(path) == Path() else ""
        raise UserError(
            f"--junit {path}: a folder{empty}, not a file; give a file name such as gate.xml"
        )
    if in_the_way is not None:
        raise UserError(
            f"--junit {path}: {in_the_way} is a file, not a folder; give a path in a folder, "
            "such as gate.xml"
        )
    if not regular_or_absent(Path(path)):
        raise UserError(
            f"--junit {path}: not a regular file (a device, pipe or socket), which the XML "
            "would replace or block on; give a file name, such as gate.xml"
        )
    if not _replaceable(Path(path)):
        raise UserError(
            f"--junit {path}: holds something other than a JUnit file written by compress "
            f"gate, which the XML would replace; give another name, such as {_other_name(path)}"
        )
    try:
        check_writable(Path(path))
    except WriteFailed as error:
        raise UserError(_cannot_write(f"--junit {path}", error)) from None


def _cannot_write(named: str, error: WriteFailed) -> str:
    """'NAMED: cannot write the JUnit file (why); the fix', the fix as every write gives it."""
    fix = what_to_do(error.path.parent, error.errno)
    return f"{named}: cannot write the JUnit file ({error.strerror})" + (f"; {fix}" if fix else "")


def _other_name(path: Path | str) -> str:
    """A file name to suggest instead of `path`'s: not the very name refused."""
    return "compress-gate.xml" if Path(path).name == "gate.xml" else "gate.xml"


# An earlier JUnit file of the gate is a few kilobytes; anything far larger is something else.
_MAX_JUNIT_BYTES = 1 << 20


def _replaceable(path: Path) -> bool:
    """Only an earlier JUnit file of the gate (or an empty file) is written over: a mistyped
    --junit that names a report, a model, a build file or another tool's test results must
    not be destroyed, whichever way the gate ends. Ours is told by its root element, not by
    its first bytes, which every XML file shares."""
    try:
        if path.stat().st_size > _MAX_JUNIT_BYTES:
            return False
        text = path.read_bytes()
    except OSError:
        return True  # absent, or writing it reports why it cannot be written
    if not text.strip():
        return True
    try:
        root = ET.fromstring(text)
    except (ET.ParseError, RecursionError, ValueError):
        return False
    return root.tag == "testsuites" and root.get("name") == SUITE_NAME


def refuse_run_file(path: Path, run: Path) -> None:
    """A --junit naming one of the run's own files (report.json, export/student.onnx) would
    replace it with XML, and every later export or gate would find the run damaged; one it
    lacks now (a gate refused for a missing report) would be taken for it later. The run
    writes no .xml file, so a JUnit file kept in the run directory is still fine."""
    target, root = _resolved(path), _resolved(run)
    if target is None or root is None:
        return  # check_junit_path, or the gate, names what is wrong with the path
    # A folder of the run is left to check_junit_path, which calls it a folder.
    if target.is_relative_to(root) and target.suffix.lower() != ".xml" and not target.is_dir():
        raise UserError(
            f"--junit {path}: a file of the run {run}, which the JUnit XML would replace; give "
            "another name, such as gate.xml"
        )


def _xml_safe(root: ET.Element) -> None:
    """Replace what XML cannot hold by U+FFFD in every text and attribute: names and messages
    quote paths and flags as given, and ElementTree would write a file no CI system parses."""
    for element in root.iter():
        element.attrib = {
            key: _NOT_XML.sub("\ufffd", value) for key, value in element.attrib.items()
        }
        if element.text:
            element.text = _NOT_XML.sub("\ufffd", element.text)


def _write_xml(root: ET.Element, path: Path) -> None:
    path = Path(path)
    check_junit_path(path)
    _xml_safe(root)
    ET.indent(root)
    try:
        write_bytes(path, ET.tostring(root, encoding="utf-8", xml_declaration=True) + b"\n")
    except WriteFailed as error:
        said = _cannot_write(str(path), error)
        # An earlier verdict left in its place is what CI would show (a pass, as like as
        # not): removed, which a full disk still allows, so CI finds no file at all.
        with contextlib.suppress(OSError):
            if path.is_file():
                path.unlink()
                said += "; the earlier JUnit file there is removed, so CI shows no old verdict"
        raise UserError(said) from None


def write_junit(result: GateResult, path: Path) -> None:
    """Write the verdict as JUnit XML (Jenkins junit-10 schema), one testcase per rule.

    CI systems already render JUnit, so a failed gate shows up as failed tests with the
    measured value and threshold in the message instead of being buried in a job log.
    """
    title = suite_name(result.run, result.backend, result.precision)
    suites, suite = _junit_suite(
        title,
        tests=len(result.rules),
        failures=len(result.failed),
        errors=0,
        skipped=sum(rule.skipped for rule in result.rules),
        seconds=result.seconds,
    )
    properties = ET.SubElement(suite, "properties")
    for name, value in (
        ("run", str(result.run)),
        ("backend", result.backend),
        ("precision", result.precision),
        *(("note", note) for note in result.notes),
    ):
        ET.SubElement(properties, "property", name=name, value=value)
    for rule in result.rules:
        case = ET.SubElement(suite, "testcase", name=rule.name, classname=title, time="0")
        if rule.failed:  # the failure holds the summary: no <system-out> to repeat it
            failure = ET.SubElement(case, "failure", message=rule.summary, type="GateFailure")
            failure.text = rule.summary
            continue
        if rule.skipped:
            ET.SubElement(case, "skipped", message=rule.detail)
        ET.SubElement(case, "system-out").text = rule.summary
    _write_xml(suites, path)


def write_junit_error(
    error: UserError, path: Path, suite: str = SUITE_NAME, kind: str = "UserError"
) -> None:
    """Record a gate that could not run as one JUnit <error>.

    Without it a CI job would go on displaying the JUnit file of an earlier, passing gate
    while this one exits 2. `suite`: the gate's own name where the command line was read.
    `kind`, the error's type: bad input (UserError), or the exception a crash (a bug) raised.
    """
    suites, element = _junit_suite(suite, tests=1, failures=0, errors=1, skipped=0, seconds=0.0)
    case = ET.SubElement(element, "testcase", name="inputs", classname=suite, time="0")
    said = ET.SubElement(case, "error", message=error.lines[0], type=kind)
    said.text = "\n".join(error.lines)
    _write_xml(suites, path)
