"""Errors of the kube API as `meta/v1` `Status` objects, so that kubectl prints its usual lines
(`Error from server (NotFound): etcdmembers.etcd.etcdward.io "x" not found`).

KubeError is a Permanent error: the CLI turns it into the same one line kubectl would print.
"""

from __future__ import annotations

import json
from typing import Any

from ..errors import Permanent

GROUP = "etcd.etcdward.io"
VERSION = "v1beta1"
PLURAL = "etcdmembers"
RESOURCE = f"{PLURAL}.{GROUP}"
KIND = "EtcdMember"


class KubeError(Permanent):
    def __init__(self, code: int, reason: str, message: str, *, name: str = "",
                 causes: list[dict[str, str]] | None = None, kind: str = PLURAL) -> None:
        super().__init__(message)
        self.code, self.reason, self.message, self.name, self.kind = code, reason, message, name, kind
        self.causes = causes or []

    def status(self) -> dict[str, Any]:
        details: dict[str, Any] = {"group": GROUP, "kind": self.kind}
        if self.name:
            details["name"] = self.name
        if self.causes:
            details["causes"] = self.causes
        return {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                "message": self.message, "reason": self.reason, "details": details, "code": self.code}

    def cli_line(self) -> str:
        """What kubectl prints for this error."""
        return f"Error from server ({self.reason}): {self.message}"


def not_found(name: str) -> KubeError:
    return KubeError(404, "NotFound", f'{RESOURCE} "{name}" not found', name=name)


def conflict(name: str, why: str) -> KubeError:
    return KubeError(409, "Conflict", f'Operation cannot be fulfilled on {RESOURCE} "{name}": {why}', name=name)


STALE = "the object has been modified; please apply your changes to the latest version and try again"


def invalid(name: str, field: str, why: str, value: Any = None) -> KubeError:
    shown = "" if value is None else f"Invalid value: {_short(value)}: "
    return KubeError(422, "Invalid", f'{KIND}.{GROUP} "{name}" is invalid: '
                                     f"{field}: {shown}{why}", name=name,
                     causes=[{"reason": "FieldValueInvalid", "message": f"{shown}{why}", "field": field}],
                     kind=KIND)  # kube's Invalid names the kind (kubectl: `The EtcdMember "x" is invalid`)


def bad_request(message: str) -> KubeError:
    return KubeError(400, "BadRequest", message)


def unauthorized(why: str = "Unauthorized") -> KubeError:
    return KubeError(401, "Unauthorized", why)


def forbidden(user: str, verb: str, resource: str, name: str, why: str) -> KubeError:
    return KubeError(403, "Forbidden", f'{RESOURCE} "{name}" is forbidden: User "{user}" cannot {verb} resource '
                                       f'"{resource}" in API group "{GROUP}" at the cluster scope: {why}', name=name)


def method_not_allowed(message: str) -> KubeError:
    return KubeError(405, "MethodNotAllowed", message)


def unsupported_media_type(content_type: str, accepted: list[str]) -> KubeError:
    return KubeError(415, "UnsupportedMediaType",
                     f"the body of the request was in an unknown format - accepted media types include: "
                     f"{', '.join(accepted)}" + (f" (got {content_type!r})" if content_type else ""))


def expired(message: str) -> KubeError:
    return KubeError(410, "Expired", message)


def unavailable(message: str) -> KubeError:
    return KubeError(503, "ServiceUnavailable", message)


def _short(value: Any) -> str:
    text = json.dumps(value)
    return text if len(text) <= 80 else text[:77] + "..."
