"""The MDS replay's operators: each provider's MDS version (and its media type), auth mode and
volumes, the four operators served by default, the emulator's default settings, and its clock
setting parsed. What the endpoints do with them is in ``mds.py``."""

from __future__ import annotations

import datetime as _dt
import random

from civic_pipelines.replay.mds_data import SALT, _uuid
from civic_pipelines.replay.seeds import seed_for

MEDIA = {
    "0.4": "application/vnd.mds.provider+json",
    "1.2": "application/vnd.mds+json",
    "2.0": "application/vnd.mds+json",
}
PAYLOAD_VERSION = {"0.4": "0.4.1", "1.2": "1.2.0", "2.0": "2.0.0"}

# Four operators the contract names; their versions and auth modes here are the replay's choice
# (the contract documents Voi's OAuth2 and 2.0 / 0.4 / 1.2 endpoints, Lyft's 2.0 Accept header).
DEFAULT_PROVIDERS = {
    "voi": {
        "version": "2.0",
        "auth": "oauth2",
        "client_id": "replay-voi-client",
        "client_secret": "replay-voi-secret",
        "voi_quirks": True,
    },
    "lyft": {"version": "2.0", "auth": "bearer", "token": "replay-lyft-token"},
    "bolt": {"version": "1.2", "auth": "bearer", "token": "replay-bolt-token"},
    "dott": {
        "version": "0.4",
        "auth": "oauth2",
        "client_id": "replay-dott-client",
        "client_secret": "replay-dott-secret",
    },
}
DEFAULTS = {
    "trips_per_hour": 3,
    "events_per_hour": 4,
    "page_size": 50,
    "fleet_size": 25,
    "invalid_share": 0.0,
    "token_ttl_seconds": 900,
    "token_max_uses": None,
}


def parse_now(value) -> _dt.datetime | None:
    if value is None:
        return None
    if isinstance(value, _dt.datetime):
        moment = value
    else:
        try:
            moment = _dt.datetime.fromisoformat(str(value).replace("Z", "+00:00"))
        except ValueError:
            raise ValueError(f"now must be an ISO date-time or null, not {value!r}") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=_dt.UTC)


# what GET /_replay/config shows of a provider: its settings, not its credentials
_DESCRIBED = ("version", "auth", "voi_quirks", "trips_per_hour", "events_per_hour")


class MdsProvider:
    """One operator: name, MDS version, auth and volumes."""

    def __init__(self, name: str, config: dict) -> None:
        version = str(config.get("version", "2.0"))
        if version not in MEDIA:
            raise ValueError(f"provider {name}: version must be one of {sorted(MEDIA)}, not {version!r}")
        auth = config.get("auth", "bearer")
        if auth not in ("bearer", "oauth2", "none"):
            raise ValueError(f"provider {name}: auth must be bearer, oauth2 or none")
        self.name = name
        self.version = version
        self.auth = auth
        self.token = config.get("token") or f"replay-{name}-token"
        self.client_id = config.get("client_id") or f"replay-{name}-client"
        self.client_secret = config.get("client_secret") or f"replay-{name}-secret"
        self.voi_quirks = bool(config.get("voi_quirks", False))
        self.trips_per_hour = config.get("trips_per_hour")
        self.events_per_hour = config.get("events_per_hour")
        rng = random.Random(seed_for(SALT, "provider", name))
        self.provider_id = _uuid(rng)

    def describe(self) -> dict:
        """The provider's settings (its secrets left out)."""
        return {name: getattr(self, name) for name in _DESCRIBED}
