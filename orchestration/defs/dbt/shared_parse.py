"""One parse of the dbt project shared by every warehouse of this checkout.

dbt re-parses the whole project (4-5 s) when the profile differs from the one of the parse it
is given, and the profile holds the warehouse's path: so each new workspace paid a full parse,
though nothing in the parse depends on the path. Every successful invocation leaves its parse
here, with the environment its profile was rendered from; an invocation whose warehouse has
no parse of its own starts from it, its profile hash rewritten to the one dbt computes for
this warehouse.

Rewritten only when that is provably what dbt would accept: the hash is dbt's own formula
(sha256 of its pretty-printed connection info) applied to the rendered profile, and it is
used only after it reproduces the hash stored in the shared parse from that parse's own
environment, and when the two profiles differ in the path alone (the database name, taken
from the file's name, and the settings equal). Otherwise nothing is given and dbt parses
everything, as before. dbt itself still checks its version, the vars and every file's
checksum.
"""

from __future__ import annotations

import hashlib
import json
import os
import pprint
import re
import shutil
from pathlib import Path

import msgpack
import yaml

from orchestration.workspace import DBT_PROJECT_DIR

PROFILE = DBT_PROJECT_DIR / "profiles.yml"
_ENV_VAR = re.compile(r"\{\{\s*env_var\('([A-Za-z0-9_]+)'(?:\s*,\s*'([^']*)')?\)\s*\}\}")
_SHARED = "shared_parse"
_PARSE = "partial_parse.msgpack"
_ENV = "profile_env.json"


def _default_output() -> dict:
    """The default target's output block of the profile, unrendered (the other targets,
    Spark's, are not this module's)."""
    profile = yaml.safe_load(PROFILE.read_text(encoding="utf-8"))["meterbook"]
    return profile["outputs"][profile["target"]]


def _texts(value) -> list[str]:
    if isinstance(value, dict):
        return [t for v in value.values() for t in _texts(v)]
    return [value] if isinstance(value, str) else []


def profile_env(environ=os.environ) -> dict[str, str | None]:
    """The environment variables the default target reads, as `environ` has them."""
    texts = _texts(_default_output())
    names = sorted({m.group(1) for text in texts for m in _ENV_VAR.finditer(text)})
    return {name: environ.get(name) for name in names}


def _connection_info(env: dict[str, str | None]) -> list | None:
    """The default target's connection info rendered with `env`, sorted as dbt sorts it;
    None when it is not one this module can render (other Jinja, not DuckDB)."""

    def value(match: re.Match) -> str:
        given = env.get(match.group(1))
        return given if given is not None else (match.group(2) or "")

    def render(item):
        if isinstance(item, dict):
            return {key: render(v) for key, v in item.items()}
        return _ENV_VAR.sub(value, item) if isinstance(item, str) else item

    output = render(_default_output())
    if any("{{" in text or "{%" in text for text in _texts(output)):
        return None
    if output.pop("type", None) != "duckdb":
        return None
    output.pop("threads", None)
    from dbt.adapters.duckdb.credentials import DuckDBCredentials  # noqa: PLC0415 (slow)

    credentials = DuckDBCredentials.from_dict({"schema": "main", **output})
    return sorted(credentials.connection_info())


def _hash(info: list) -> str:
    # dbt's ManifestLoader.build_manifest_state_check: FileHash.from_contents(pformat(...))
    return hashlib.sha256(pprint.pformat(info).encode("utf-8")).hexdigest()


def _without_path(info: list) -> list:
    return [item for item in info if item[0] != "path"]


def share_parse(target: Path, env: dict[str, str | None], under: Path) -> None:
    """Leave the parse an invocation made in `target` (with the profile rendered from `env`)
    for warehouses without one; renamed into place, the environment first."""
    made = target / _PARSE
    if not made.exists():
        return
    shared = under / _SHARED
    shared.mkdir(parents=True, exist_ok=True)
    scratch = shared / f".{os.getpid()}"
    scratch.write_text(json.dumps(env), encoding="utf-8")
    os.replace(scratch, shared / _ENV)
    shutil.copyfile(made, scratch)
    os.replace(scratch, shared / _PARSE)


def adopt_shared_parse(target: Path, env: dict[str, str | None], under: Path) -> bool:
    """Give `target` the shared parse with its profile hash rewritten for `env`, when dbt
    would accept it (module docstring); returns whether it was given."""
    shared = under / _SHARED
    try:
        donor_env = json.loads((shared / _ENV).read_text(encoding="utf-8"))
        manifest = msgpack.unpackb((shared / _PARSE).read_bytes(), strict_map_key=False)
    except (OSError, ValueError, msgpack.UnpackException):
        return False
    donor, wanted = _connection_info(donor_env), _connection_info(env)
    if donor is None or wanted is None or _without_path(donor) != _without_path(wanted):
        return False
    stored = manifest.get("state_check", {}).get("profile_hash", {})
    if stored.get("checksum") != _hash(donor):  # our formula is not dbt's, or a torn pair
        return False
    stored["checksum"] = _hash(wanted)
    target.mkdir(parents=True, exist_ok=True)
    (target / _PARSE).write_bytes(msgpack.packb(manifest))
    return True
