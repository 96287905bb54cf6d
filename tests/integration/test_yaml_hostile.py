"""Hostile YAML: every way a spec file can attack the loader ends as one located line with a code.

Issue 15, finding 5: a 1.6 KB alias bomb ran `router spec validate` to 3.3 GB, a 1.3 KB one hung
`router gateway --sources`, and 500 levels of nesting or one non-UTF-8 byte gave a traceback.
The CLI tests run the real command in a child process with a deadline and an address-space
limit, so a regression fails here quickly instead of eating the machine.
"""

from __future__ import annotations

import os
import re
import resource
import subprocess
import sys
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from router.errors import SpecError
from router.spec.load import SpecErrors
from router.spec.yamlsrc import (
    MAX_ALIAS_NODES,
    MAX_NUMBER_CHARS,
    MAX_YAML_BYTES,
    MAX_YAML_DEPTH,
    MAX_YAML_VALUES,
    format_path,
    load_yaml,
    load_yaml_file,
)

pytestmark = pytest.mark.timeout(180)

ROOT = Path(__file__).resolve().parents[2]
SCHEMAS = ROOT / "schemas" / "avro"
CHILD_MEMORY = 1 << 30  # bytes of address space a child gets: the shipped specs validate in about 90 MB
CHILD_DEADLINE_S = 60.0

# Nine levels of nine aliases: 9**9 = 387 million strings once expanded, from 1.5 KB of YAML.
BOMB = "\n".join(
    [f"l0: &l0 [{', '.join(['lol'] * 9)}]"]
    + [f"l{n}: &l{n} [{', '.join([f'*l{n - 1}'] * 9)}]" for n in range(1, 9)]
) + "\n"


def _limit_memory() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (CHILD_MEMORY, CHILD_MEMORY))


def router(*argv: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """``python -m router <argv>`` as a user runs it, bounded in time and memory."""
    return subprocess.run([sys.executable, "-m", "router", *argv], cwd=ROOT, capture_output=True, text=True,
                          timeout=CHILD_DEADLINE_S, preexec_fn=_limit_memory, env=env or dict(os.environ),
                          check=False)


def validate(folder: Path) -> subprocess.CompletedProcess[str]:
    return router("spec", "validate", str(folder), "--schemas", str(SCHEMAS))


def assert_one_line(done: subprocess.CompletedProcess[str], file: Path, line: int | None, code: str) -> str:
    """Exit 2, no traceback, and exactly one ``file:line: …  [code]`` line; returns that line."""
    assert done.returncode == 2, (done.returncode, done.stderr[-2000:])
    assert "Traceback" not in done.stderr, done.stderr[-2000:]
    where = f"{file}:{line}:" if line is not None else f"{file}:"
    hits = [ln for ln in done.stderr.splitlines() if ln.startswith(where) or f": {where}" in ln]
    assert len(hits) == 1, done.stderr[-2000:]
    assert hits[0].rstrip().endswith(f"[{code}]") or f"[{code}]" in hits[0], hits[0]
    return hits[0]


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    out = tmp_path / "integrations"
    out.mkdir()
    return out


# ---- through the real CLI -------------------------------------------------------------------

def test_alias_bomb_is_refused_by_spec_validate_fast(folder: Path) -> None:
    file = folder / "bomb.yaml"
    file.write_text(BOMB)
    assert len(BOMB) < 1600
    started = time.monotonic()
    done = validate(folder)
    line = assert_one_line(done, file, None, "spec.yaml_aliases")
    assert "alias" in line
    assert time.monotonic() - started < 20


def test_alias_bomb_is_refused_by_the_gateway(tmp_path: Path) -> None:
    sources = tmp_path / "sources"
    sources.mkdir()
    file = sources / "bomb.yaml"
    file.write_text("name: bomb\nsignature: {scheme: none}\nevent_id: id\n" + BOMB)
    env = {**os.environ, "KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:9"}  # never reached: the specs fail first
    done = router("gateway", "--sources", str(sources), "--port", "0", env=env)
    assert done.returncode == 2, done.stderr[-2000:]
    assert "Traceback" not in done.stderr
    [line] = [ln for ln in done.stderr.splitlines() if str(file) in ln]
    assert line.startswith("router: error [spec.yaml_aliases]: ") and "alias" in line


def test_deep_nesting_is_one_line_and_exit_2(folder: Path) -> None:
    file = folder / "deep.yaml"
    file.write_text("name: deep\nx: " + "[" * 500 + "]" * 500 + "\n")
    assert_one_line(validate(folder), file, 2, "spec.too_deep")


def test_a_non_utf8_byte_is_one_line_and_exit_2(folder: Path) -> None:
    file = folder / "latin1.yaml"
    file.write_bytes(b"name: demo\nversion: 1\ntitle: caf\xe9\n")
    line = assert_one_line(validate(folder), file, 3, "spec.not_utf8")
    assert "0xe9" in line


def test_an_oversized_file_is_refused_before_parsing(folder: Path) -> None:
    file = folder / "huge.yaml"
    file.write_text("name: huge\n" + "# padding\n" * (MAX_YAML_BYTES // 10 + 1))
    assert_one_line(validate(folder), file, None, "spec.too_large")


def test_a_syntax_error_exits_2(folder: Path) -> None:
    file = folder / "broken.yaml"
    file.write_text("name: demo\nsource: [unclosed\n")
    assert_one_line(validate(folder), file, 3, "spec.yaml")


def test_spec_test_refuses_a_bomb_too(folder: Path) -> None:
    file = folder / "bomb.yaml"
    file.write_text(BOMB)
    done = router("spec", "test", str(folder), "--schemas", str(SCHEMAS))
    assert_one_line(done, file, None, "spec.yaml_aliases")


# ---- the loader -----------------------------------------------------------------------------

def refused(text: str | bytes, code: str) -> SpecError:
    with pytest.raises(SpecError) as caught:
        load_yaml(text, "x.yaml")
    assert caught.value.code == code, str(caught.value)
    assert "\n" not in str(caught.value)
    return caught.value


def test_small_anchors_and_aliases_still_work() -> None:
    doc = load_yaml("base: &http {url: 'https://x', timeout: 5s}\na: *http\nb: [*http, *http]\n", "x.yaml")
    assert doc.value["a"] == doc.value["base"] == {"url": "https://x", "timeout": "5s"}
    assert doc.value["b"] == [doc.value["base"]] * 2
    assert doc.line(("b", 1)) == 3


def test_alias_budget_is_on_expanded_values() -> None:
    row = ", ".join(["v"] * 99)
    within = f"a: &a [{row}]\nb: [{', '.join(['*a'] * (MAX_ALIAS_NODES // 100))}]\n"
    assert len(load_yaml(within, "x.yaml").value["b"]) == MAX_ALIAS_NODES // 100
    over = f"a: &a [{row}]\nb: [{', '.join(['*a'] * (MAX_ALIAS_NODES // 100 + 1))}]\n"
    error = refused(over, "spec.yaml_aliases")
    assert error.line == 2 and error.path.startswith("b")


def test_a_bomb_is_refused_in_milliseconds() -> None:
    started = time.monotonic()
    refused(BOMB, "spec.yaml_aliases")
    assert time.monotonic() - started < 2


def test_a_cyclic_alias_is_refused() -> None:
    error = refused("a: &a [1, *a]\n", "spec.yaml_aliases")
    assert "cycle" in str(error)
    refused("a: &a {b: {c: *a}}\n", "spec.yaml_aliases")


def test_depth_limit_is_exact() -> None:
    ok = "x: " + "[" * (MAX_YAML_DEPTH - 1) + "]" * (MAX_YAML_DEPTH - 1) + "\n"  # the top mapping is level 1
    load_yaml(ok, "x.yaml")
    deep = "x: " + "[" * MAX_YAML_DEPTH + "]" * MAX_YAML_DEPTH + "\n"
    assert refused(deep, "spec.too_deep").line == 1
    refused("x: " + "[" * 100_000 + "\n", "spec.too_deep")
    refused("x: " + "{a: " * 2000 + "}" * 2000 + "\n", "spec.too_deep")


def test_depth_built_from_aliases_counts_too() -> None:
    half = MAX_YAML_DEPTH // 2 + 1
    text = f"a: &a {'[' * half}1{']' * half}\nb: &b {'[' * half}*a{']' * half}\n"
    refused(text, "spec.too_deep")


def test_special_characters_and_bad_bytes_are_located() -> None:
    assert refused("a: 1\nb: x\x07y\n", "spec.yaml").line == 2
    error = refused(b"a: 1\nb: \xff\xfe\n", "spec.not_utf8")
    assert error.line == 2 and "0xff" in str(error)
    assert refused("a: 1\nb: 1\nc: 1\nd: 1\ne: 1\na: 2\n", "spec.yaml").line == 6  # duplicate key


def test_keys_with_line_breaks_stay_on_one_line() -> None:
    error = refused('a: {"x\\ny": 1, "x\\ny": 2}\n', "spec.yaml")
    assert error.path == 'a["x\\ny"]'
    assert format_path(("a", "", 0, "b\u2028\x85")) == 'a[""][0]["b\\u2028\\u0085"]'


def test_size_is_checked_on_text_and_bytes() -> None:
    refused("#" * MAX_YAML_BYTES + "\na: 1\n", "spec.too_large")
    refused(b"#" * MAX_YAML_BYTES + b"\na: 1\n", "spec.too_large")


def test_parsing_work_is_bounded_within_the_size_limit() -> None:
    """Under 1 MiB, a file can still hold half a million values or a 500,000-digit base-60 number."""
    started = time.monotonic()
    assert refused("a: [" + ",".join(["1"] * MAX_YAML_VALUES) + "]\n", "spec.too_large").line == 1
    refused("a: &a 1\nb: [" + ",".join(["*a"] * (MAX_ALIAS_NODES + 1)) + "]\n", "spec.yaml_aliases")
    error = refused("a: 1" + ":2" * 400_000 + "\n", "spec.yaml")
    assert error.path == "a" and str(MAX_NUMBER_CHARS) in str(error)
    assert load_yaml("a: '" + "9" * 5000 + "'\n", "x.yaml").value == {"a": "9" * 5000}  # quoted: text
    assert time.monotonic() - started < 30


def test_only_json_like_values() -> None:
    assert refused("a: !!binary aGVsbG8=\n", "spec.yaml").line == 1
    assert refused("a: !!timestamp 2024-01-01\n", "spec.yaml").path == "a"
    refused("a: !!python/object:os.system {}\n", "spec.yaml")
    assert load_yaml("a: 2024-01-01\nb: .inf\nc: ~\n", "x.yaml").value == {"a": "2024-01-01", "b": float("inf"),
                                                                             "c": None}


def test_files_that_are_not_regular_files_are_refused(tmp_path: Path) -> None:
    fifo = tmp_path / "pipe.yaml"
    os.mkfifo(fifo)
    with pytest.raises(SpecError) as caught:
        load_yaml_file(fifo)  # would block for ever if it were opened
    assert caught.value.code == "spec.unreadable"
    (tmp_path / "dir.yaml").mkdir()
    with pytest.raises(SpecError) as caught:
        load_yaml_file(tmp_path / "dir.yaml")
    assert caught.value.code == "spec.unreadable"


_LINE = re.compile(r"^x\.yaml(:\d+)?(: [^\n]+)?: [^\n]+$")


@settings(max_examples=300, deadline=2000, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=400))
def test_any_bytes_load_or_fail_with_one_located_line(data: bytes) -> None:
    try:
        load_yaml(data, "x.yaml")
    except SpecError as exc:
        assert exc.code.startswith("spec.")
        assert _LINE.match(str(exc)), str(exc)


def _yaml_piece() -> st.SearchStrategy[str]:
    scalars = st.sampled_from(["a", "1", "'q'", '"\\x07"', "~", "*a", "*b", "*c", "&a x", "!!str s", "[]", "{}"])
    return st.recursive(scalars, lambda inner: st.one_of(
        st.lists(inner, max_size=6).map(lambda items: "[" + ", ".join(items) + "]"),
        st.lists(st.tuples(st.sampled_from(["k", "l", "m", "&b n", "? o", "<<"]), inner), max_size=5)
        .map(lambda pairs: "{" + ", ".join(f"{k}: {v}" for k, v in pairs) + "}"),
        st.tuples(st.sampled_from(["&a ", "&b ", "&c ", ""]), inner).map("".join),
        st.integers(1, 300).map(lambda n: "[" * n),
    ), max_leaves=40)


@settings(max_examples=300, deadline=2000, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(_yaml_piece(), min_size=1, max_size=4))
def test_hostile_yaml_shapes_load_or_fail_with_one_located_line(pieces: list[str]) -> None:
    text = "".join(f"k{i}: {piece}\n" for i, piece in enumerate(pieces))
    try:
        doc = load_yaml(text, "x.yaml")
    except SpecError as exc:
        assert _LINE.match(str(exc)), str(exc)
    else:
        assert isinstance(doc.value, dict)


def test_shipped_specs_still_load() -> None:
    for folder in (ROOT / "integrations", ROOT / "sources"):
        for file in folder.glob("*.yaml"):
            assert isinstance(load_yaml_file(file).value, dict)


def test_a_folder_of_problems_keeps_each_code() -> None:
    one = SpecError("m", file="a.yaml", line=1, code="spec.too_deep")
    other = SpecError("n", file="b.yaml", line=2, code="spec.not_utf8")
    assert SpecErrors([one]).code == "spec.too_deep" and str(SpecErrors([one])) == "a.yaml:1: m"
    both = SpecErrors([one, other])
    assert both.code == "spec.invalid"
    assert str(both).splitlines() == ["a.yaml:1: m  [spec.too_deep]", "b.yaml:2: n  [spec.not_utf8]"]
