"""Cohort sync's pure parts: snapshot parsing, id sets, the plan, records and the stored blob."""

from __future__ import annotations

import argparse
import io
from datetime import UTC, datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from producers.cohorts import cli as cohort_cli
from producers.cohorts import state
from producers.cohorts.errors import CohortError
from producers.cohorts.guard import DEFAULT_MAX_REMOVAL_SHARE, check_not_empty, check_removals, removed_members
from producers.cohorts.members import CHUNK_IDS, Members, Plan, find, plan_sync, uncertain
from producers.cohorts.records import audience_of, change_id, change_record, changes_in, new_sync_id
from producers.cohorts.snapshot import InvalidLine, check_id, format_for, parse_csv, parse_parquet, parse_text
from producers.cohorts.sync import describe_invalid
from router.errors import ConfigError


def ids_of(data: bytes) -> list[str]:
    return data.decode().splitlines()


def apply(destination: set[str], plan: Plan) -> set[str]:
    """What a partner holds after importing the plan's records in order."""
    out = set(destination)
    for ids, remove in plan.chunks():
        out = out - set(ids) if remove else out | set(ids)
    return out


# ---- snapshots ------------------------------------------------------------------------------

def test_text_snapshot_keeps_valid_ids_in_order() -> None:
    snap = parse_text(b"user-1\nuser-2\nuser-3\n")
    assert ids_of(snap.data) == ["user-1", "user-2", "user-3"]
    assert snap.lines == 3 and snap.invalid == []


def test_text_snapshot_without_final_newline_crlf_and_bom() -> None:
    assert ids_of(parse_text(b"\xef\xbb\xbfa\r\nb\r\nc").data) == ["a", "b", "c"]


def test_text_snapshot_strips_and_reports_bad_lines_with_numbers() -> None:
    raw = "ok-1\n  padded \t\n\nbell\x07\n" + "x" * 257 + "\nüser\n\xa0nbsp\xa0\nok-2"
    snap = parse_text(raw.encode() + b"\n\xff\xfe\n")
    assert ids_of(snap.data) == ["ok-1", "padded", "üser", "nbsp", "ok-2"]
    assert [(i.line, i.reason.split()[0]) for i in snap.invalid] == [
        (3, "empty"), (4, "control"), (5, "257"), (9, "not")]
    assert str(snap.invalid[1]) == "line 4: control character U+0007"


def test_id_rules() -> None:
    assert check_id(" a b ") == ("a b", "")
    assert check_id("x\u0085y")[0] is None  # C1 control (NEL) inside an id
    assert check_id("é" * 128) == ("é" * 128, "")  # 256 bytes
    assert check_id("é" * 129)[1] == "258 bytes, over the 256-byte limit"


def test_csv_snapshot_by_column_with_line_numbers() -> None:
    raw = b'email,user_id\na@x,u-1\nb@x,"u-2"\nc@x,\nd@x\n\ne@x,u-1\n'
    snap = parse_csv(raw, "user_id")
    assert ids_of(snap.data) == ["u-1", "u-2", "u-1"]
    assert [i.line for i in snap.invalid] == [4, 5, 6]
    assert ids_of(parse_csv(raw, None).data)[:2] == ["a@x", "b@x"]
    with pytest.raises(CohortError, match="no column 'nope'"):
        parse_csv(raw, "nope")


def test_parquet_snapshot_by_column_with_row_numbers() -> None:
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    buf = io.BytesIO()
    pq.write_table(pa.table({"n": [1, 2, 3], "user_id": ["u-1", None, " u-3 "]}), buf)
    buf.seek(0)
    snap = parse_parquet(buf, "user_id")
    assert ids_of(snap.data) == ["u-1", "u-3"]
    assert snap.invalid == [InvalidLine(2, "empty (null)")]


def test_format_by_extension() -> None:
    assert format_for("a.csv", None) == "csv"
    assert format_for("a.PARQUET", None) == "parquet"
    assert format_for("-", None) == "text"
    assert format_for("a.csv", "text") == "text"


def test_invalid_listing_stops_at_twenty() -> None:
    text = describe_invalid([InvalidLine(i, "empty") for i in range(1, 31)], "s.txt")
    assert text.startswith("30 invalid line(s) in s.txt: line 1: empty;")
    assert "line 20: empty; and 10 more" in text and "line 21" not in text


@settings(max_examples=300, deadline=None)
@given(st.lists(st.text(st.characters(codec="utf-8", exclude_characters="\n\r\ufeff"), max_size=12), max_size=40),
       st.booleans())
def test_every_line_is_an_id_or_reported_with_its_number(lines: list[str], final_newline: bool) -> None:
    raw = ("\n".join(lines) + ("\n" if final_newline and lines else "")).encode()
    snap = parse_text(raw)
    checked = [check_id(line) for line in lines]
    if lines and lines[-1] == "" and not final_newline:
        checked = checked[:-1]  # the text ends with a newline: nothing follows the last line
    assert ids_of(snap.data) == [v for v, _ in checked if v is not None]
    assert [(i.line, i.reason) for i in snap.invalid] == [(n, why) for n, (v, why) in enumerate(checked, 1)
                                                           if v is None]
    assert snap.lines == len(checked)


# ---- id sets and the plan --------------------------------------------------------------------

def test_members_deduplicate_keeping_first_position() -> None:
    m = Members.from_canonical(b"b\na\nb\nc\na\n")
    assert len(m) == 3
    assert m.ids(m.positions(m.sorted)) == ["b", "a", "c"]
    assert Members.union([m, Members.from_ids(["d", "a"])]).ids(find(m.hashes, m.sorted)) == ["b", "a", "c"]


def test_first_sync_is_all_adds_in_sorted_chunks() -> None:
    ids = [f"user-{n}" for n in range(2500)]
    plan = plan_sync(Members.from_ids(ids), Members.empty())
    chunks = list(plan.chunks())
    assert (plan.added, plan.removed, plan.unchanged, plan.records()) == (2500, 0, 0, 3)
    assert [len(c) for c, _ in chunks] == [1000, 1000, 500]
    assert all(c == sorted(c) and not remove for c, remove in chunks)
    assert sorted(i for c, _ in chunks for i in c) == sorted(ids)


def test_no_change_plans_nothing() -> None:
    old = Members.from_ids(["a", "b", "c"])
    plan = plan_sync(Members.from_ids(["c", "a", "b", "a"]), old)
    assert (plan.added, plan.removed, plan.unchanged, plan.records()) == (0, 0, 3, 0)


def test_carry_over_rules() -> None:
    old = Members.from_ids(["a", "b", "c"])
    new = Members.from_ids(["a", "b", "d"])
    plan = plan_sync(new, old, failed_adds=Members.from_ids(["a", "x"]), failed_removes=Members.from_ids(["y", "b"]))
    chunks = list(plan.chunks())
    assert chunks == [(["a", "d"], False), (["c"], True), (["y"], True)]
    assert (plan.added, plan.removed, plan.unchanged) == (2, 2, 1)


def test_uncertain_is_what_a_killed_run_may_have_changed() -> None:
    old = Members.from_ids(["a", "b", "c"])
    pending = Members.from_ids(["b", "c", "d"])
    earlier = Members.from_ids(["z"])
    unknown = uncertain(old, pending, earlier)
    assert sorted(unknown.ids(find(unknown.hashes, unknown.sorted))) == ["a", "d", "z"]


id_sets = st.sets(st.sampled_from([f"u{n}" for n in range(60)]), max_size=60)


@settings(max_examples=300, deadline=None)
@given(old=id_sets, new=id_sets, unknown=id_sets, failed_adds=id_sets, failed_removes=id_sets, data=st.data())
def test_plan_takes_any_consistent_destination_to_the_snapshot(old: set[str], new: set[str], unknown: set[str],
                                                               failed_adds: set[str], failed_removes: set[str],
                                                               data: st.DataObject) -> None:
    # The destination agrees with `old` except where a killed run or a DLQ'd record left it different.
    dropped = data.draw(st.sets(st.sampled_from(sorted(unknown | failed_adds) or ["-"])))
    extra = data.draw(st.sets(st.sampled_from(sorted(unknown | failed_removes) or ["-"])))
    destination = (old - dropped) | (extra - {"-"})
    plan = plan_sync(Members.from_ids(sorted(new)), Members.from_ids(sorted(old)), Members.from_ids(sorted(unknown)),
                     Members.from_ids(sorted(failed_adds)), Members.from_ids(sorted(failed_removes)))
    assert apply(destination, plan) == new
    assert plan.added + plan.unchanged == len(new)
    assert all(len(ids) <= CHUNK_IDS and ids == sorted(ids) for ids, _ in plan.chunks())
    if not unknown and not failed_adds and not failed_removes:
        assert plan.added == len(new - old) and plan.removed == len(old - new)


@settings(max_examples=50, deadline=None)
@given(st.lists(st.integers(0, 5000), max_size=3000), st.lists(st.integers(0, 5000), max_size=3000))
def test_diff_applied_to_old_gives_new_at_scale(old: list[int], new: list[int]) -> None:
    o = {f"user-{n}" for n in old}
    n = {f"user-{x}" for x in new}
    plan = plan_sync(Members.from_ids([f"user-{x}" for x in new]), Members.from_ids(sorted(o)))
    assert apply(o, plan) == n
    assert all(len(ids) <= CHUNK_IDS for ids, _ in plan.chunks())


# ---- records -------------------------------------------------------------------------------

def test_event_ids_name_their_audience() -> None:
    sync_id = new_sync_id("vip-users.eu", datetime(2026, 11, 22, 10, 0, tzinfo=UTC))
    assert sync_id.startswith("vip-users.eu-20261122T100000Z-")
    assert audience_of(change_id(sync_id, 7)) == "vip-users.eu"
    assert audience_of("vip-20261122T100000Z-abc123:0") == "vip"
    for other in ("e1", "sync-20261122T10:0", "x-y:z", ""):
        assert audience_of(other) is None


def test_changes_in_both_dlq_shapes() -> None:
    change = change_record("s", 0, "a", None, ["u1", "u2"], True, 0)
    assert list(changes_in(change)) == [(["u1", "u2"], True)]
    braze = {"cohort_id": "t:a", "cohort_changes": [{"user_ids": ["u3"], "should_remove": False}]}
    assert list(changes_in(braze)) == [(["u3"], False)]
    assert list(changes_in({"title": "x"})) == []


# ---- the stored blob ---------------------------------------------------------------------------

def test_state_blob_round_trips_in_parts(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(state, "PART_BYTES", 100)
    members = Members.from_ids([f"user-{n}" for n in range(500)])
    fields = state.encode(members, version=3)
    assert len(fields) > 2
    back = state.decode({k.encode(): v for k, v in fields.items()}, "k")
    assert back.data == members.data and state.fingerprint(back) == state.fingerprint(members)


def test_a_corrupt_state_blob_is_an_error_not_an_empty_state() -> None:
    fields = {k.encode(): v for k, v in state.encode(Members.from_ids(["a", "b"])).items()}
    fields[b"part:0"] = fields[b"part:0"][:-3]
    with pytest.raises(CohortError) as err:
        state.decode(fields, "k")
    assert err.value.code == "cohort.state_corrupt"


# ---- refusals (issue 15: an empty snapshot removed every member) ----------------------------

def test_an_empty_snapshot_is_refused_unless_allowed() -> None:
    with pytest.raises(CohortError) as err:
        check_not_empty(False, 0, "vip.txt", allow_empty=False)
    assert err.value.code == "cohort.empty_snapshot"
    assert str(err.value).startswith("the snapshot vip.txt holds no id: ") and "--allow-empty" in str(err.value)
    with pytest.raises(CohortError, match=r"holds no id \(3 invalid line\(s\) skipped\)"):
        check_not_empty(False, 3, "vip.txt", allow_empty=False)
    check_not_empty(False, 0, "vip.txt", allow_empty=True)
    check_not_empty(True, 0, "vip.txt", allow_empty=False)


def test_removals_over_the_share_are_refused_and_exactly_the_share_passes() -> None:
    old = Members.from_ids([f"u{n}" for n in range(100)])
    target = Members.from_ids([f"u{n}" for n in range(40)] + ["new-1", "new-2"])
    assert removed_members(old, target) == 60
    assert removed_members(Members.empty(), target) == 0
    assert removed_members(old, Members.empty()) == 100
    with pytest.raises(CohortError) as err:
        check_removals(60, 100, "vip", DEFAULT_MAX_REMOVAL_SHARE)
    assert err.value.code == "cohort.too_many_removals"
    assert str(err.value) == ("the snapshot would remove 60 of 100 members of vip (60%), more than the 50% allowed; "
                              "nothing was published (--max-removal-share 0.6 allows it)")
    check_removals(60, 100, "vip", 0.6)
    check_removals(50, 100, "vip", 0.5)
    check_removals(29, 100, "vip", 0.29)  # 0.29 * 100 is 28.999999999999996 in floats: the share compares exactly
    check_removals(0, 0, "vip", 0.0)
    with pytest.raises(CohortError, match=r"1,996 of 1,996 .*\(--max-removal-share 1 allows"):
        check_removals(1996, 1996, "vip", 0.5)
    with pytest.raises(CohortError, match=r"--max-removal-share 0\.01 allows"):
        check_removals(1, 1000, "vip", 0.0)


@settings(max_examples=200, deadline=None)
@given(st.integers(0, 10_000), st.integers(1, 10_000), st.floats(0, 1))
def test_the_suggested_share_always_lets_the_run_through(removed: int, members: int, share: float) -> None:
    removed = min(removed, members)
    try:
        check_removals(removed, members, "a", share)
    except CohortError as exc:
        suggested = float(str(exc).split("--max-removal-share ")[1].split()[0])
        check_removals(removed, members, "a", suggested)


def test_max_removal_share_must_be_a_share() -> None:
    parser = argparse.ArgumentParser()
    cohort_cli.register(parser.add_subparsers())
    for bad in ("1.5", "-0.1", "nan"):
        args = parser.parse_args(["cohort", "sync", "--audience", "a", "--snapshot", "s.txt",
                                  "--max-removal-share", bad])
        with pytest.raises(ConfigError, match="--max-removal-share"):
            cohort_cli.request_from(args)
    args = parser.parse_args(["cohort", "sync", "--audience", "a", "--snapshot", "s.txt", "--allow-empty"])
    request = cohort_cli.request_from(args)
    assert request.allow_empty and request.max_removal_share == 0.5


# ---- hostile snapshot files -----------------------------------------------------------------

def test_a_csv_field_over_the_csv_limit_is_an_invalid_line_not_a_crash() -> None:
    snap = parse_csv(b"id\nu-1\n" + b"y" * 200_000 + b"\nu-2\n", None)
    assert ids_of(snap.data) == ["u-1", "u-2"]
    assert [i.line for i in snap.invalid] == [3] and "not readable as CSV" in snap.invalid[0].reason
    snap = parse_csv(b'id\n"u-1\nu-2\n' + b"z" * 200_000, None)  # an unclosed quote to the end
    assert snap.data == b"" and len(snap.invalid) == 1
    with pytest.raises(CohortError) as err:
        parse_csv(b'"' + b"h" * 200_000 + b'"\nu-1\n', None)
    assert err.value.code == "cohort.snapshot_unreadable"


def test_column_names_in_messages_stay_on_one_line() -> None:
    with pytest.raises(CohortError) as err:
        parse_csv(b'"a\nb",\xff\nu,v\n', "id")
    assert "\n" not in str(err.value) and "'a\\nb'" in str(err.value)


def test_parquet_columns_must_hold_text_or_integers() -> None:
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    buf = io.BytesIO()
    pq.write_table(pa.table({"ids": [[1, 2], [3]], "n": [1, 2]}), buf)
    buf.seek(0)
    with pytest.raises(CohortError, match="holds list"):
        parse_parquet(buf, None)
    buf.seek(0)
    assert ids_of(parse_parquet(buf, "n").data) == ["1", "2"]
    with pytest.raises(CohortError) as err:
        parse_parquet(io.BytesIO(b"PAR1" + bytes(range(256)) * 4 + b"PAR1"), None)
    assert err.value.code == "cohort.snapshot_unreadable" and "\n" not in str(err.value)
