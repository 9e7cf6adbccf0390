"""The top-level command list and `etcdward --help`, without click: the fast path (fastpath.py)
prints the top-level help from here, and app.py's group lists the lazy commands from here.
tests/test_cli_fastpath.py checks that top_help() is what click prints, at several widths."""

from __future__ import annotations

# Subcommands live in their own modules and are imported only when used: a joining controller
# is CPU-bound at start-up (several start at once on small machines), and the store, records and
# table-printing imports of the other commands would delay its first join request.
LAZY_COMMANDS: dict[str, tuple[str, ...]] = {
    # admin_cmds adds `etcd leave` to the group, maintenance_cmds `etcd defrag` and `etcd alarm`
    "etcd": ("etcd_cmds:etcd_group", "admin_cmds", "maintenance_cmds"),
    "token": ("token_cmds:token_group",),
    "get": ("record_cmds:get_group",),
    "delete": ("record_cmds:delete_group",),
    "patch": ("record_cmds:patch_group",),
    "kubeconfig": ("kubeconfig_cmd:kubeconfig",),
    "reset": ("admin_cmds:reset",),
    "status": ("status_cmd:status",),
    "up": ("playground_cmd:up",),
    "backup": ("backup_cmds:backup_group",),
    "restore": ("restore_cmds:restore",),
    "recover": ("restore_cmds:recover_cmd",),
    "install": ("install_cmds:install_group",),
    "uninstall": ("install_cmds:uninstall",),
    "certs": ("certs_cmds:certs_group",),
}


# The one-line help of the lazy commands, so that `etcdward --help` lists them without importing
# them (tests/test_cli_startup.py checks that each is the command's own first line). A lazy
# command missing here is imported to list it.
LAZY_HELP: dict[str, str] = {
    "etcd": "Manage the etcd cluster membership.",
    "token": "Manage join tokens.",
    "get": "Display EtcdMember records (like kubectl get).",
    "delete": "Delete EtcdMember records (like kubectl delete).",
    "patch": "Update fields of an EtcdMember record (like kubectl patch).",
    "kubeconfig": "Print a kubeconfig with a client certificate for USER signed by the cluster CA (the key is only "
                  "in the output: keep it like a password).",
    "reset": "Remove this node's local state (etcd data, state/, pki/) so that it can join again.",
    "status": "Cluster health: members, leaders, raft and db figures, records, backups, and why it is degraded.",
    "up": "Run N controllers on 127.0.0.x: the first bootstraps, the rest join in parallel.",
    "backup": "Back up this node's etcd, CAs and config into one archive (its controller must run).",
    "restore": "Restore a backup ARCHIVE (or - for stdin) into an empty data dir, as the one member of a new "
               "cluster.",
    "recover": "Quorum-loss recovery: make this surviving node (controller stopped) the only member of its cluster, "
               "keeping all its data, when a majority of the members is gone for good.",
    "install": "Install etcdward as a systemd service.",
    "uninstall": "Remove the etcdward systemd service (refused while it runs).",
    "certs": "Check and renew this node's certificates (pki/ in the data dir).",
}


# The eager commands' (app.py) one-line help, for the same listing.
EAGER_HELP: dict[str, str] = {
    "controller": "Run a control-plane node (etcd + join API + reconciler) in the foreground.",
    "config": "Work with config files.",
}
GROUP_HELP = "etcdward: etcd control-plane membership manager."
OPTIONS_HELP = (("--version", "Show the version and exit."), ("-h, --help", "Show this message and exit."))


def top_help(columns: int) -> str:
    """`etcdward --help` as click formats it for a terminal `columns` wide (click's HelpFormatter:
    width min(columns, 80) - 2, at least 50; definition lists with a 2-space gutter; short help
    cut at the first sentence, then to the width with "...")."""
    import textwrap

    width = max(min(columns, 80) - 2, 50)

    def fill(text: str, width: int, indent: str = "", rest: str = "") -> str:
        return textwrap.TextWrapper(width, initial_indent=indent, subsequent_indent=rest,
                                    replace_whitespace=False).fill(text.expandtabs())

    def dl(rows: list[tuple[str, str]]) -> list[str]:
        first = min(max(len(a) for a, _ in rows), 30) + 2
        out = []
        for term, text in rows:
            head = f"  {term}" + (" " * (first - len(term)) if len(term) <= first - 2 else "\n" + " " * (first + 2))
            lines = fill(text, max(width - first - 2, 10)).splitlines() or [""]
            out.append(head + lines[0])
            out.extend(" " * (first + 2) + line for line in lines[1:])
        return out

    names = sorted({*LAZY_HELP, *EAGER_HELP})
    limit = width - 6 - max(map(len, names))
    helps = {**LAZY_HELP, **EAGER_HELP}
    lines = [fill("[OPTIONS] COMMAND [ARGS]...", width, "Usage: etcdward ", " " * len("Usage: etcdward ")), "",
             fill(GROUP_HELP, width, "  ", "  "), "", "Options:", *dl(list(OPTIONS_HELP)), "", "Commands:",
             *dl([(n, short_help(helps[n], limit)) for n in names])]
    return "\n".join(lines)


def short_help(text: str, limit: int) -> str:
    """click's default short help: the first paragraph up to its first sentence, shortened to `limit`."""
    words = text.partition("\n\n")[0].split()
    for i, word in enumerate(words):
        if word.endswith(".") and (i == len(words) - 1 or not words[i + 1][0].islower()):
            words = words[:i + 1]
            break
    joined = " ".join(words)
    if len(joined) <= limit:
        return joined
    if limit < 3:
        return "..."
    import textwrap

    return textwrap.shorten(joined, limit, placeholder="...", break_on_hyphens=False)
