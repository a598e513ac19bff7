"""Saved credentials for the ``pooldrop`` command and for apps: a JSON file of named profiles.

The file is ``$POOLDROP_CONFIG``, else ``$XDG_CONFIG_HOME/pooldrop/config.json``, else
``~/.config/pooldrop/config.json``. It holds secrets, so it is written with mode 0600 (its directory
0700), atomically (a temporary file renamed over it), and never world-readable even briefly::

    {"profiles": {"default": {"server": "http://127.0.0.1:8000", "token": "...",
                              "username": "ada"},
                  "sensor-7": {"server": "...", "api_key": "pdk_...", "pool_id": "..."}}}

A profile holds one credential: ``login`` stores a user's access token, ``enroll`` a pool key.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

DEFAULT_PROFILE = "default"


def config_path() -> Path:
    """Where the configuration lives (see the module docstring)."""
    explicit = os.environ.get("POOLDROP_CONFIG")
    if explicit:
        return Path(explicit).expanduser()
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "pooldrop" / "config.json"


@dataclass
class Profile:
    """A server and the credential to use on it."""

    server: str | None = None
    token: str | None = None
    username: str | None = None
    api_key: str | None = None
    key_id: str | None = None
    pool_id: str | None = None
    role: str | None = None

    @property
    def credential(self) -> str | None:
        return self.api_key or self.token


@dataclass
class Config:
    """All profiles in the configuration file."""

    profiles: dict[str, Profile] = field(default_factory=dict)
    path: Path = field(default_factory=config_path)

    @classmethod
    def load(cls, path: Path | None = None) -> Config:
        """Read the file; a missing file is an empty configuration."""
        path = path or config_path()
        try:
            raw = json.loads(path.read_text())
        except FileNotFoundError:
            return cls(path=path)
        known = Profile.__dataclass_fields__
        profiles = {
            name: Profile(**{k: v for k, v in values.items() if k in known})
            for name, values in (raw.get("profiles") or {}).items()
            if isinstance(values, dict)
        }
        return cls(profiles=profiles, path=path)

    def profile(self, name: str = DEFAULT_PROFILE) -> Profile:
        """The named profile (an empty one if it does not exist yet)."""
        return self.profiles.setdefault(name, Profile())

    def save(self) -> Path:
        """Write the file atomically with mode 0600."""
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        body: dict[str, Any] = {
            "profiles": {
                name: {k: v for k, v in asdict(p).items() if v is not None}
                for name, p in sorted(self.profiles.items())
            }
        }
        # mkstemp creates the file 0600, so the secret is never readable by others.
        fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=".config-", suffix=".tmp")
        try:
            with os.fdopen(fd, "w") as f:
                json.dump(body, f, indent=2)
                f.write("\n")
                f.flush()
                os.fsync(f.fileno())
            os.chmod(tmp, 0o600)
            os.replace(tmp, self.path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return self.path
