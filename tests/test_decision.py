"""The start decision, table-driven. Certificates never count: only etcd's db does (k0s #5149)."""

from __future__ import annotations

import pytest

from etcdward.decision import Action, Disk, Token, decide

T, F, BLANK = Token.GIVEN, Token.NONE, Token.BLANK

CASES = [
    # (description, disk, token_given, expected action, move partial aside)
    ("db exists, no token", Disk(has_db=True), F, Action.START, False),
    ("db exists, token ignored", Disk(has_db=True), T, Action.START, False),
    ("no db, token -> join", Disk(has_db=False), T, Action.JOIN, False),
    ("no db, no token -> bootstrap", Disk(has_db=False), F, Action.BOOTSTRAP, False),
    # CA files are not part of Disk at all: "CA present, no db, token" is just "no db, token"
    ("CA files present, no db, token given -> JOIN", Disk(has_db=False), T, Action.JOIN, False),
    ("partial etcd dir, token -> join, moved aside", Disk(has_db=False, has_partial_etcd=True), T, Action.JOIN, True),
    ("partial etcd dir, no token -> bootstrap, moved aside", Disk(has_db=False, has_partial_etcd=True), False,
     Action.BOOTSTRAP, True),
    ("pinned cluster, db gone, no token -> refuse", Disk(has_db=False, pinned_cluster_id="abc"), False,
     Action.REFUSE, False),
    ("pinned cluster, db gone, token -> join", Disk(has_db=False, pinned_cluster_id="abc"), T, Action.JOIN, False),
    ("pinned cluster, db present -> start", Disk(has_db=True, pinned_cluster_id="abc"), F, Action.START, False),
    ("unfinished join, no token -> refuse", Disk(has_db=False, join_started="https://a:9443"), False,
     Action.REFUSE, False),
    ("unfinished join, token -> join", Disk(has_db=False, join_started="https://a:9443"), T, Action.JOIN, False),
    ("refused join, no token -> refuse (and says no learner was added)",
     Disk(has_db=False, join_started="https://a:9443", join_refused="401 go away"), F, Action.REFUSE, False),
    ("refused join, token -> join", Disk(has_db=False, join_started="https://a:9443", join_refused="401"), T,
     Action.JOIN, False),
    ("tombstone -> refuse even with db", Disk(has_db=True, tombstone=True), F, Action.REFUSE, False),
    ("tombstone -> refuse even with token", Disk(has_db=False, tombstone=True), T, Action.REFUSE, False),
    # issue 8: a token that was given but is empty never means "no token"
    ("no db, blank token -> refuse", Disk(has_db=False), BLANK, Action.REFUSE, False),
    ("partial etcd dir, blank token -> refuse, nothing moved", Disk(has_db=False, has_partial_etcd=True), BLANK,
     Action.REFUSE, False),
    ("pinned cluster, db gone, blank token -> refuse", Disk(has_db=False, pinned_cluster_id="abc"), BLANK,
     Action.REFUSE, False),
    ("db exists, blank token ignored -> start", Disk(has_db=True), BLANK, Action.START, False),
]


@pytest.mark.parametrize("desc,disk,token,action,aside", CASES, ids=[c[0] for c in CASES])
def test_decision_table(desc: str, disk: Disk, token: Token, action: Action, aside: bool) -> None:
    d = decide(disk, token)
    assert d.action is action, desc
    assert d.move_partial_aside is aside
    assert d.reason


def test_refused_join_message_is_accurate() -> None:
    d = decide(Disk(has_db=False, join_started="https://a:9443", join_refused="401 go away"), F)
    assert "was refused (401 go away) and no learner was added" in d.reason
    assert "may already have a learner" not in d.reason
    d = decide(Disk(has_db=False, join_started="https://a:9443"), F)
    assert "may already have a learner" in d.reason


def test_a_token_never_bootstraps() -> None:
    for has_db in (False, True):
        for partial in (False, True):
            for pinned in (None, "c1"):
                for token in (T, BLANK):
                    d = decide(Disk(has_db=has_db, has_partial_etcd=partial, pinned_cluster_id=pinned), token)
                    assert d.action is not Action.BOOTSTRAP


def test_on_disk_inspection(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from etcdward.localstate import inspect_disk
    from etcdward.paths import DataDir

    data = DataDir(tmp_path)
    (tmp_path / "pki").mkdir()
    (tmp_path / "pki" / "ca.crt").write_text("x")
    (tmp_path / "pki" / "ca.key").write_text("x")
    assert decide(inspect_disk(data), T).action is Action.JOIN  # CA files do not mean "joined"
    (data.etcd / "member" / "wal").mkdir(parents=True)
    disk = inspect_disk(data)
    assert disk.has_partial_etcd and not disk.has_db
    data.etcd_db.parent.mkdir(parents=True)
    data.etcd_db.write_bytes(b"")
    assert decide(inspect_disk(data), T).action is Action.START
