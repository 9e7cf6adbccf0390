"""`spec.pki`: certificate lifetimes.

    caLifetime: 87600h     lifetime of a CA created by etcdward (an existing CA is never touched)
    certLifetime: 8760h    lifetime of this node's leaf certificates (API, etcd server, peer, client)

Go-style durations (durations.py). The minimum is 1m, so that tests can watch several renewals
(a controller renews a leaf at 2/3 of its life, certrenewal.py); a real cluster wants months.
certLifetime must be shorter than caLifetime: a leaf never outlives the CA that signed it.
Kept out of config.py so that it stays small.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from .durations import parse_duration

MIN_LIFETIME = 60.0


class PkiSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True, strict=True)

    ca_lifetime: str = Field("87600h", alias="caLifetime")
    cert_lifetime: str = Field("8760h", alias="certLifetime")

    @field_validator("ca_lifetime", "cert_lifetime", mode="before")
    @classmethod
    def _duration(cls, v: Any) -> Any:
        if not isinstance(v, str):
            raise ValueError(f"{v!r} is not a duration: write one with a unit (\"8760h\", \"30d\")")
        parse_duration(v, minimum=MIN_LIFETIME)
        return v.strip()

    @model_validator(mode="after")
    def _leaf_shorter(self) -> PkiSpec:
        if self.cert_lifetime_td >= self.ca_lifetime_td:
            raise ValueError(f"certLifetime ({self.cert_lifetime}) must be shorter than caLifetime "
                             f"({self.ca_lifetime}): a certificate cannot outlive its CA")
        return self

    @property
    def ca_lifetime_td(self) -> dt.timedelta:
        return parse_duration(self.ca_lifetime, minimum=MIN_LIFETIME)

    @property
    def cert_lifetime_td(self) -> dt.timedelta:
        return parse_duration(self.cert_lifetime, minimum=MIN_LIFETIME)
