"""EtcdMember records: shape, validation, JSON round trip (pure; no etcd)."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from etcdward import records
from etcdward.records import Condition, EtcdMember, RecordError

LABEL = st.from_regex(r"[a-z0-9]([a-z0-9-]{0,10}[a-z0-9])?", fullmatch=True)
NAMES = st.lists(LABEL, min_size=1, max_size=3).map(".".join)
TEXT = st.text(max_size=40)
HEX = st.integers(min_value=1, max_value=2**64 - 1).map(lambda i: format(i, "x"))


@st.composite
def members(draw: st.DrawFn) -> EtcdMember:
    conds = draw(st.lists(st.builds(Condition, st.just("Joined"), st.sampled_from(records.CONDITION_STATUSES),
                                    TEXT, TEXT), max_size=1))
    return EtcdMember(
        name=draw(NAMES), uid=draw(TEXT), creation_timestamp=draw(TEXT), leave=draw(st.booleans()),
        peer_address=draw(TEXT), member_id=draw(st.one_of(st.just(""), HEX)),
        reconcile_status=draw(st.sampled_from(records.RECONCILE_STATUSES)), message=draw(TEXT),
        conditions=tuple(conds), resource_version=draw(st.integers(min_value=1, max_value=2**40)))


@given(members())
def test_json_round_trip(rec: EtcdMember) -> None:
    stored = rec.to_json()
    assert "resourceVersion" not in json.loads(stored)["metadata"]  # filled in on read from the mod revision
    back = records.parse(stored, name=rec.name, mod_revision=rec.resource_version)
    assert back == rec
    assert back.to_dict() == rec.to_dict()
    assert back.to_dict()["metadata"]["resourceVersion"] == str(rec.resource_version)


def test_shape_is_k0s_like() -> None:
    r = records.new("c1", "10.0.0.1", "8E9E05C52164694D", now=0)
    d = r.to_dict()
    assert d["apiVersion"] == "etcd.etcdward.io/v1beta1" and d["kind"] == "EtcdMember"
    assert set(d["metadata"]) == {"name", "uid", "creationTimestamp", "resourceVersion"}
    assert d["metadata"]["creationTimestamp"] == "1970-01-01T00:00:00Z"
    assert d["spec"] == {"leave": False}
    assert d["status"]["memberID"] == "8e9e05c52164694d"  # lowercase hex
    assert d["status"]["peerAddress"] == "10.0.0.1"
    assert d["status"]["conditions"] == [
        {"type": "Joined", "status": "True", "lastTransitionTime": "1970-01-01T00:00:00Z", "message": "Member joined"}]


def test_last_transition_time_changes_only_on_flips() -> None:
    r = records.new("c1", "10.0.0.1", "1", now=100)
    same = r.with_joined("True", "still here", now=500)
    assert same.conditions[0].last_transition_time == r.conditions[0].last_transition_time
    assert same.conditions[0].message == "still here"
    flipped = same.with_joined("False", "No such member ID", now=1000)
    assert flipped.conditions[0].last_transition_time == records.timestamp(1000)
    assert flipped.joined == "False"


@pytest.mark.parametrize("mutate, field", [
    (lambda d: d.update(apiVersion="v1"), "apiVersion"),
    (lambda d: d.update(kind="Pod"), "kind"),
    (lambda d: d["metadata"].update(name="C1"), "metadata.name"),
    (lambda d: d["metadata"].pop("name"), "metadata.name"),
    (lambda d: d["spec"].update(leave="yes"), "spec.leave"),
    (lambda d: d["status"].update(memberID="xyz"), "status.memberID"),
    (lambda d: d["status"].update(reconcileStatus="Done"), "status.reconcileStatus"),
    (lambda d: d["status"]["conditions"][0].update(status="Yes"), "status.conditions[0].status"),
    (lambda d: d["status"]["conditions"][0].update(type="Ready"), "status.conditions[0].type"),
    (lambda d: d["status"].update(peerAddress=7), "status.peerAddress"),
])
def test_bad_input_names_the_field(mutate, field: str) -> None:  # type: ignore[no-untyped-def]
    d = records.new("c1", "10.0.0.1", "abc").to_dict()
    mutate(d)
    with pytest.raises(RecordError, match=field.replace("[", r"\[").replace("]", r"\]")):
        records.from_dict(d, name="c1")


def test_key_name_must_match() -> None:
    raw = records.new("c1", "10.0.0.1", "abc").to_json()
    with pytest.raises(RecordError, match="does not match"):
        records.parse(raw, name="c2")
    with pytest.raises(RecordError, match="not valid JSON"):
        records.parse(b"{", name="c1")


def test_minimal_hand_written_record_parses() -> None:
    d = {"apiVersion": records.API_VERSION, "kind": "EtcdMember", "metadata": {"name": "c1.example.org"},
         "status": {"memberID": "ABC"}}
    r = records.parse(json.dumps(d), name="c1.example.org", mod_revision=7)
    assert (r.member_id, r.leave, r.joined, r.resource_version) == ("abc", False, "Unknown", 7)


def test_peer_host() -> None:
    assert records.peer_host("https://10.0.0.1:2380") == "10.0.0.1"
    assert records.peer_host("https://[fd00::1]:2380") == "fd00::1"
    assert records.peer_host("https://c1.example.org:2380") == "c1.example.org"
    assert records.peer_host("") == ""
