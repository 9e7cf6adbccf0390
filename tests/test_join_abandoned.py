"""An abandoned join must not stall the others (issue 8 item 4), against real etcd and real
controllers: a learner whose joiner is silent is removed after joinerTimeout (not
learnerStartTimeout), a joiner that is alive but slow keeps its learner by repeating its join
request, and a joiner that waits in the queue says at INFO where it stands.
"""

from __future__ import annotations

import re
import time

from tests.cluster import Cluster, wait_for
from tests.join_helpers import api_client, etcd_members, phantom_peer_url

MEMBERS = "/v1beta1/etcd/members"


def test_silent_learner_is_removed_within_joiner_timeout_and_the_queued_join_completes(cluster: Cluster) -> None:
    n1 = cluster.bootstrap("n1")  # defaults: joinerTimeout 60 s, learnerStartTimeout 300 s
    tok = n1.token()
    bogus = phantom_peer_url()  # nothing will ever serve it, and nobody repeats the request
    with api_client(token=tok) as c:
        r = c.post(MEMBERS, json={"node": "bogus", "peerAddress": bogus})
    assert r.status_code == 200, r.text
    added = time.monotonic()
    bogus_id = r.json()["memberID"]

    n2 = cluster.node("n2")
    n2.start(tok)
    wait_for(lambda: "joining via" in n2.log(), 30, "n2 asks to join", node=n2)
    time.sleep(1.0)  # n2's request takes its place in line first

    # What a queued request is answered: about every 10 s, text/plain, where it stands.
    with api_client(token=tok, timeout=30) as c:
        asked = time.monotonic()
        r = c.post(MEMBERS, json={"node": "probe", "peerAddress": phantom_peer_url()})
        held = time.monotonic() - asked
    assert r.status_code == 503, r.text
    assert 5 <= held <= 14, f"a queued request was held {held:.1f}s (want ~9 s)"
    assert r.headers["content-type"].startswith("text/plain")
    assert r.headers["retry-after"].isdigit()
    assert r.headers["x-etcdward-queue-position"] == "2"
    assert r.headers["x-etcdward-waiting-behind"] == f"bogus {bogus_id}"
    assert r.text.startswith("join of probe is queued: 2 of 2 in line, waiting behind learner bogus "
                             f"(id {bogus_id}, {bogus}) that has not started yet"), r.text

    wait_for(lambda: all(bogus not in m["peerURLs"] for m in etcd_members(n1)), 80, "bogus learner removed",
             node=n1)
    gone_after = time.monotonic() - added
    assert 55 <= gone_after <= 70, f"bogus learner removed {gone_after:.0f}s after it was added (joinerTimeout 60)"
    assert (f"reconcile: removed learner bogus (id {bogus_id}, {bogus}) that did not start: its joiner was not "
            "heard from for 60s (joinerTimeout)") in n1.log(), n1.log()[-3000:]

    cluster.wait_voters(n1, {"n1", "n2"}, 60)
    n2.wait_ready(30)
    assert "removed learner n2" not in n1.log()
    progress = re.findall(
        r"INFO .*join: waiting since \d\d:\d\d:\d\d \((\d+)s\): place [12] in line, behind learner bogus "
        rf"\(id {bogus_id}\)", n2.log())
    assert len(progress) >= 4, n2.log()[-4000:]  # ~60 s of waiting, a line about every 10 s
    seconds = [int(s) for s in progress]
    assert seconds == sorted(seconds) and seconds[-1] >= 45, seconds  # since when: one start, growing


def test_live_joiner_with_a_slow_etcd_keeps_its_learner_past_joiner_timeout(cluster: Cluster) -> None:
    fast = {"spec": {"reconciler": {"joinerTimeout": 3}}}
    n1 = cluster.bootstrap("n1", extra_config=fast)
    tok = n1.token()

    # The contrast first: a learner nobody asks for again is gone after ~3 s...
    bogus = phantom_peer_url()
    with api_client(token=tok) as c:
        r = c.post(MEMBERS, json={"node": "bogus", "peerAddress": bogus})
        assert r.status_code == 200, r.text
        bogus_id = r.json()["memberID"]
        wait_for(lambda: all(bogus not in m["peerURLs"] for m in etcd_members(n1)), 20, "bogus removed", node=n1)
        # ...and a repeat that names it is refused, never answered with a new learner.
        r = c.post(MEMBERS, json={"node": "bogus", "peerAddress": bogus}, headers={"X-Etcdward-Learner-ID": bogus_id})
        assert r.status_code == 409 and "no longer in the member list" in r.text, r.text
    assert all(bogus not in m["peerURLs"] for m in etcd_members(n1))

    # A joiner whose etcd starts 10 s after its learner was added: alive, so it keeps it.
    n2 = cluster.node("n2", extra_config=fast, env={"ETCDWARD_TEST_DELAY_AT": "join-before-etcd-start:10"})
    n2.start(tok)
    wait_for(lambda: any(m["isLearner"] and n2.peer_url in m["peerURLs"] for m in etcd_members(n1)), 30,
             "n2's learner added", node=n2)
    learner = next(m for m in etcd_members(n1) if n2.peer_url in m["peerURLs"])
    time.sleep(6)  # twice joinerTimeout, and etcd has not started yet
    still = [m for m in etcd_members(n1) if n2.peer_url in m["peerURLs"]]
    assert [(m["id"], m["name"]) for m in still] == [(learner["id"], "")], still
    cluster.wait_voters(n1, {"n1", "n2"}, 60)
    n2.wait_ready(30)
    assert next(m for m in etcd_members(n1) if m["name"] == "n2")["id"] == learner["id"]  # the same member
    assert "removed learner n2" not in n1.log(), n1.log()[-3000:]
    assert n2.log().count("join accepted") == 1
