"""The EtcdMember records as a Kubernetes API (group etcd.etcdward.io, version v1beta1), so that
the real kubectl and the official Python client work against every voting controller.

    resource.py   the one implementation of get/list/delete/patch/update (CAS), also used by the CLI
    status.py     errors as meta/v1 Status objects
    patch.py      JSON merge patch (RFC 7386) and JSON patch (RFC 6902), pure
    selectors.py  labelSelector and fieldSelector
    table.py      printer columns: meta/v1 Table, and the CLI's table
    watch.py      the watch event stream, on an etcd watch
    discovery.py  /version, /api, /apis (legacy and aggregated), OpenAPI v3
    tlsauth.py    client-certificate authentication (user = CN)
    kubeconfig.py a kubeconfig with a client certificate signed by the cluster CA
    routes.py     the HTTP handlers mounted into the API listener (api.py)
"""
