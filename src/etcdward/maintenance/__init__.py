"""etcd maintenance: defragmentation (one member at a time, the etcd leader last after a leadership
move), alarms, NOSPACE recovery. Used by the CLI (`etcdward etcd defrag|alarm`), the API endpoint
that defragments a controller's own member, and the reconciler leader (reconcile/maintain.py).

    plan.py      pure: fragmentation figures, candidates, order, "is it safe now"
    figures.py   the db figures each controller publishes in its liveness key, read back
    lock.py      one defrag at a time, cluster-wide (a lease-bound key)
    remote.py    HTTPS client of other controllers' maintenance endpoint (client certificate)
    defrag.py    defragmenting this member, several members, NOSPACE recovery, the record
"""
