"""The cluster-wide join queue: a client that went away never gets a learner; FIFO order holds."""

from __future__ import annotations

import threading
import time

import httpx

from tests.cluster import Cluster, wait_for
from tests.join_helpers import api_client, bearer_of, etcd_members, phantom_peer_url, remove_member

MEMBERS = "/v1beta1/etcd/members"


def test_abandoned_request_adds_no_learner_and_fifo_holds(cluster: Cluster) -> None:
    n1 = cluster.bootstrap("n1", extra_config={"spec": {"reconciler": {"learnerStartTimeout": 600}}})
    bearer = bearer_of(n1.token())
    blocker = phantom_peer_url()
    with api_client(n1, bearer) as c:
        assert c.post(MEMBERS, json={"node": "blocker", "peerAddress": blocker}).status_code == 200
    blocker_id = next(m["id"] for m in etcd_members(n1) if blocker in m["peerURLs"])

    # A queued request whose client gives up after 1 s (a joiner killed while waiting).
    gone = phantom_peer_url()
    with api_client(n1, bearer, timeout=1.0) as c:
        try:
            c.post(MEMBERS, json={"node": "gone", "peerAddress": gone})
        except httpx.TimeoutException:
            pass
    # Two more in line, in this order.
    order: list[str] = []
    firsts = [phantom_peer_url(), phantom_peer_url()]

    def ask(name: str, url: str) -> None:
        with api_client(n1, bearer) as c:
            r = c.post(MEMBERS, json={"node": name, "peerAddress": url})
            if r.status_code == 200:
                order.append(name)

    t1 = threading.Thread(target=ask, args=("first", firsts[0]))
    t1.start()
    time.sleep(0.5)
    t2 = threading.Thread(target=ask, args=("second", firsts[1]))
    t2.start()
    time.sleep(0.5)
    remove_member(n1, blocker_id)  # the line moves: "gone" was ahead but its client is gone
    wait_for(lambda: order == ["first"], 20, "the first waiting request served")
    urls = {u for m in etcd_members(n1) for u in m["peerURLs"]}
    assert gone not in urls, "a learner was added for a client that had gone away"
    assert firsts[0] in urls and firsts[1] not in urls  # one learner at a time, FIFO
    first_id = next(m["id"] for m in etcd_members(n1) if firsts[0] in m["peerURLs"])
    remove_member(n1, first_id)
    t1.join(30)
    t2.join(40)
    assert order == ["first", "second"]
    assert gone not in {u for m in etcd_members(n1) for u in m["peerURLs"]}
