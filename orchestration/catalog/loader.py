"""Read every `catalog/*.yaml`, merge them, and report every mistake at once.

Each list entry remembers the file, its name (code or id) and its lines, so an error in the
merged catalog is reported as the user wrote it: the file, the line and the path, the entry
named by its code (`plans[pro].versions[0]...`; lists inside an entry keep their position).
A file that is not valid YAML is reported once: what other files refer to in it is unknown,
so cross-references are checked only when every file parsed.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

import jinja2
import yaml
from pydantic import ValidationError

from orchestration.catalog.models import DUNNING_TEMPLATES, DUNNING_TEMPLATES_DIR, Catalog

LIST_SECTIONS = (
    "exclusions",
    "meters",
    "plans",
    "customers",
    "subscriptions",
    "credit_grants",
    "features",
    "alerts",
)
SECTIONS = ("settings", *LIST_SECTIONS)
# the field that names an entry of each section in paths; exclusions have none (position)
NAMED_BY = {
    "meters": "code",
    "plans": "code",
    "customers": "id",
    "subscriptions": "id",
    "credit_grants": "id",
    "features": "code",
    "alerts": "code",
}
_PLAIN_NAME = re.compile(r"[\w.:@/+-]+")


@dataclass(frozen=True)
class CatalogIssue:
    file: str
    path: str
    line: int | None
    message: str
    column: int | None = None

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line else self.file
        where += f":{self.column}" if self.line and self.column else ""
        if not self.path and self.column:  # a YAML syntax error: no path to give
            return f"{where}: {self.message}"
        return f"{where}: {self.path or '(top level)'}: {self.message}"


class CatalogError(Exception):
    """The catalog has mistakes; `issues` lists every one of them."""

    def __init__(self, issues: list[CatalogIssue]):
        self.issues = issues
        super().__init__(f"{len(issues)} catalog error(s):\n" + "\n".join(f"  {i}" for i in issues))


class _DecimalLoader(getattr(yaml, "CSafeLoader", yaml.SafeLoader)):
    """YAML floats become exact Decimals (0.1 stays 0.1); every node keeps its line.

    libyaml's parser when PyYAML has it: the pure-Python one takes seconds on a catalog of
    ten thousand customers."""


def _construct_decimal(loader: yaml.SafeLoader, node: yaml.ScalarNode) -> Any:
    text = loader.construct_scalar(node)
    try:
        return Decimal(text.replace("_", ""))
    except InvalidOperation:  # .inf / .nan: let validation reject them by type
        return yaml.SafeLoader.construct_yaml_float(loader, node)


_DecimalLoader.add_constructor("tag:yaml.org,2002:float", _construct_decimal)


@dataclass
class _Origin:
    file: str
    index: int | None  # index within the file's own list, None for settings
    lines: dict[tuple, int]  # local path -> line, inside this entry
    name: str | None = None  # the entry's code or id, when it has a usable one


class _Name(str):
    """An entry's code or id in a path: `plans[pro]`, not `plans[1]`."""


def _entry_name(section: str, item: Any) -> str | None:
    value = item.get(NAMED_BY.get(section, "")) if isinstance(item, dict) else None
    return value if isinstance(value, str) and value else None


def _line_map(node: yaml.Node, prefix: tuple = ()) -> dict[tuple, int]:
    lines = {prefix: node.start_mark.line + 1}
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            key = key_node.value
            lines[(*prefix, key)] = key_node.start_mark.line + 1
            lines.update(_line_map(value_node, (*prefix, key)))
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            lines.update(_line_map(item, (*prefix, i)))
    return lines


def _read_file(path: Path, rel: str, issues: list[CatalogIssue]) -> tuple[dict | None, dict, bool]:
    """The file's data (None when it cannot be read), its line map, and whether it has a
    backslash: YAML refuses a raw NUL, so only an escape in a double-quoted string can put
    one in."""
    try:
        text = path.read_text(encoding="utf-8")
        loader = _DecimalLoader(text)
        try:
            node = loader.get_single_node()  # parsed once: lines from the nodes, data too
            data = loader.construct_document(node) if node is not None else None
        finally:
            loader.dispose()
    except UnicodeDecodeError as exc:
        issues.append(CatalogIssue(rel, "", None, f"not UTF-8 text ({exc.reason})"))
        return None, {}, False
    except yaml.YAMLError as exc:
        issues.append(_yaml_issue(rel, exc))
        return None, {}, False
    if data is None:
        return {}, {}, False
    if not isinstance(data, dict):
        issues.append(CatalogIssue(rel, "", 1, "the file must be a mapping of sections"))
        return {}, {}, False
    return data, _line_map(node), "\\" in text


def _yaml_issue(rel: str, exc: yaml.YAMLError) -> CatalogIssue:
    """One line: where the parser stopped, what it expected, and where the open construct
    began (PyYAML's own text spans four lines with a pointer under the column)."""
    mark = getattr(exc, "problem_mark", None)
    problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
    context, opened = getattr(exc, "context", None), getattr(exc, "context_mark", None)
    message = f"invalid YAML: {problem}"
    if context:
        message += f" ({context}" + (f" at line {opened.line + 1})" if opened else ")")
    line, column = (mark.line + 1, mark.column + 1) if mark else (None, None)
    return CatalogIssue(rel, "", line, message, column)


def _merge_file(data, lines, rel, merged, origins, issues) -> None:
    entries = _by_entry(lines)
    for key, value in data.items():
        line = lines.get((key,))
        if key not in SECTIONS:
            issues.append(
                CatalogIssue(
                    rel, str(key), line, f"unknown section (expected one of {', '.join(SECTIONS)})"
                )
            )
        elif key == "settings":
            if not isinstance(value, dict):
                issues.append(CatalogIssue(rel, key, line, "must be a mapping"))
                continue
            for name, setting in value.items():
                if name in merged["settings"]:
                    first = origins["settings"][name].file
                    issues.append(
                        CatalogIssue(
                            rel,
                            f"settings.{name}",
                            lines.get((key, name)),
                            f"already set in {first}",
                        )
                    )
                merged["settings"][name] = setting
                origins["settings"][name] = _Origin(rel, None, entries.get((key, name), {}))
        elif value is not None:
            if not isinstance(value, list):
                issues.append(CatalogIssue(rel, key, line, "must be a list"))
                continue
            for i, item in enumerate(value):
                merged[key].append(item)
                name = _entry_name(key, item)
                origins[key].append(_Origin(rel, i, entries.get((key, i), {}), name))


def _by_entry(lines: dict[tuple, int]) -> dict[tuple, dict[tuple, int]]:
    """The line map split by (section, entry), each keyed by the path inside the entry.

    One pass: a catalog with tens of thousands of customers must load in a blink."""
    entries: dict[tuple, dict[tuple, int]] = {}
    for path, line in lines.items():
        if len(path) >= 2:
            entries.setdefault(path[:2], {})[path[2:]] = line
    return entries


class _Locator:
    """Maps a path in the merged catalog back to (file, path in that file, line)."""

    def __init__(self, origins: dict[str, Any], default_file: str):
        self.origins = origins
        self.default_file = default_file

    def where(self, loc: tuple) -> str:
        """`file:line` of an entry, for a message that points at a second one."""
        found = self.issue(loc, "")
        return f"{found.file}:{found.line}" if found.line else found.file

    def issue(self, loc: tuple, message: str) -> CatalogIssue:
        loc = tuple(loc)
        if not loc:
            return CatalogIssue(self.default_file, "", None, message)
        section, rest = loc[0], loc[1:]
        if section == "settings" and rest and rest[0] in self.origins["settings"]:
            origin = self.origins["settings"][rest[0]]
            # nearest: a missing field is reported on the line of the setting that lacks it
            line = _nearest_line(origin.lines, rest[1:])
            return CatalogIssue(origin.file, _fmt(loc), line, message)
        if section in LIST_SECTIONS and rest and isinstance(rest[0], int):
            entries = self.origins[section]
            if rest[0] < len(entries):
                origin = entries[rest[0]]
                label = origin.index if origin.name is None else _Name(origin.name)
                local = (section, label, *rest[1:])
                return CatalogIssue(
                    origin.file, _fmt(local), _nearest_line(origin.lines, rest[1:]), message
                )
        return CatalogIssue(self.default_file, _fmt(loc), None, message)


def _nearest_line(lines: dict[tuple, int], path: tuple) -> int | None:
    for cut in range(len(path), -1, -1):
        if path[:cut] in lines:
            return lines[path[:cut]]
    return None


def _fmt(loc: tuple) -> str:
    out = ""
    for part in loc:
        if isinstance(part, _Name):
            plain = _PLAIN_NAME.fullmatch(part) and not part.isdigit()
            out += f"[{part}]" if plain else f"[{str(part)!r}]"  # never read as a position
        elif isinstance(part, int):
            out += f"[{part}]"
        elif not str(part).isprintable():
            out += f"[{str(part)!r}]"  # a NUL or newline in a key must not break the report
        else:
            out += f".{part}" if out else str(part)
    return out


def _pydantic_issues(exc: ValidationError, locator: _Locator) -> list[CatalogIssue]:
    issues = []
    for err in exc.errors():
        # pydantic adds the name of the union member or validator to the location; drop it
        loc = tuple(p for p in err["loc"] if not (isinstance(p, str) and p.startswith("function-")))
        message = err["msg"].removeprefix("Value error, ")
        issues.append(locator.issue(loc, message))
    return issues


def _nul_paths(value: Any, loc: tuple = ()) -> Iterator[tuple[tuple, str]]:
    """Where a string (or a mapping key) holds a NUL. YAML lets one in through a "\\0"
    escape; SQL literals, file names and most tools downstream cannot take it."""
    if isinstance(value, str):
        if "\x00" in value:
            yield loc, "contains a NUL character (\\0)"
    elif isinstance(value, dict):
        for key, item in value.items():
            if isinstance(key, str) and "\x00" in key:
                yield (*loc, key), "the key contains a NUL character (\\0)"
            else:
                yield from _nul_paths(item, (*loc, key))
    elif isinstance(value, list):
        for i, item in enumerate(value):
            yield from _nul_paths(item, (*loc, i))


def _without_nul_paths(found: list[CatalogIssue], nul: list[CatalogIssue]) -> list[CatalogIssue]:
    # a NUL also breaks a pattern or a property-name rule there: one report per place is enough
    places = {(i.file, i.path) for i in nul}
    return [i for i in found if (i.file, i.path) not in places]


def catalog_files(catalog_dir: Path) -> list[Path]:
    return sorted(catalog_dir.glob("*.yaml")) + sorted(catalog_dir.glob("*.yml"))


def dunning_template_files(catalog_dir: Path) -> list[Path]:
    """The files of catalog/templates/dunning/ (none when the folder is absent); hidden files
    (an editor's swap file, .DS_Store) are not the catalog's."""
    folder = catalog_dir.joinpath(*DUNNING_TEMPLATES_DIR)
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if not p.name.startswith("."))


def _template_issues(catalog_dir: Path) -> list[CatalogIssue]:
    """Dunning templates are catalog too (SPEC 11): a misspelt name or a Jinja syntax error is
    reported with the YAML's mistakes, before anything runs, not when a reminder is due."""
    issues = []
    syntax = jinja2.Environment(autoescape=True)  # parses only: nothing is rendered here
    for path in dunning_template_files(catalog_dir):
        rel = path.relative_to(catalog_dir.parent).as_posix()
        where = "dunning template"
        if path.name not in DUNNING_TEMPLATES or not path.is_file():
            known = ", ".join(DUNNING_TEMPLATES)
            issues.append(CatalogIssue(rel, where, None, f"not a dunning template name ({known})"))
            continue
        try:
            syntax.parse(path.read_text(encoding="utf-8"))
        except UnicodeDecodeError as exc:
            issues.append(CatalogIssue(rel, where, None, f"not UTF-8 text ({exc.reason})"))
        except jinja2.TemplateSyntaxError as exc:
            issues.append(CatalogIssue(rel, where, exc.lineno, f"invalid template: {exc.message}"))
    return issues


# catalog folder -> (digest of its files, the catalog loaded from them)
_LOADED: dict[Path, tuple[str, Catalog]] = {}


def load_catalog_cached(catalog_dir: Path) -> Catalog:
    """`load_catalog`, parsed again only when a file's name or bytes changed.

    A close's steps each need the catalog; at ten thousand customers one parse takes
    seconds. The key is the files' content, not their mtime: two writes within one clock
    tick of the file system would share an mtime.
    """
    digest = hashlib.sha256()
    for path in catalog_files(catalog_dir) + dunning_template_files(catalog_dir):
        name = path.relative_to(catalog_dir).as_posix()
        digest.update(
            name.encode() + b"\0" + (path.read_bytes() if path.is_file() else b"") + b"\0"
        )
    key, stamp = catalog_dir.resolve(), digest.hexdigest()
    known = _LOADED.get(key)
    if known is not None and known[0] == stamp:
        return known[1]
    catalog = load_catalog(catalog_dir)  # errors are raised, never kept
    _LOADED[key] = (stamp, catalog)
    return catalog


def _cross_issues(catalog: Catalog, locator: _Locator) -> list[CatalogIssue]:
    from orchestration.catalog.validation import cross_check  # noqa: PLC0415 (cycle)

    found = []
    for loc, message, *first in cross_check(catalog):
        if first:  # a second definition: point at the first one, file and line
            message += f" (first at {locator.where(first[0])})"
        found.append(locator.issue(loc, message))
    return found


def load_catalog(catalog_dir: Path) -> Catalog:
    """The merged, validated catalog; raises CatalogError listing every mistake."""
    files = catalog_files(catalog_dir)
    if not files:
        raise CatalogError(
            [CatalogIssue(str(catalog_dir), "", None, "no *.yaml file in the catalog folder")]
        )
    merged: dict[str, Any] = {"settings": {}, **{k: [] for k in LIST_SECTIONS}}
    origins: dict[str, Any] = {"settings": {}, **{k: [] for k in LIST_SECTIONS}}
    issues: list[CatalogIssue] = []
    escaped = unreadable = False
    for path in files:
        rel = path.relative_to(catalog_dir.parent).as_posix()
        data, lines, has_backslash = _read_file(path, rel, issues)
        escaped = escaped or has_backslash
        unreadable = unreadable or data is None
        _merge_file(data or {}, lines, rel, merged, origins, issues)
    locator = _Locator(origins, files[0].relative_to(catalog_dir.parent).as_posix())
    # walking every string of a big catalog costs; without an escape there is nothing to find
    nul = [locator.issue(loc, msg) for loc, msg in _nul_paths(merged)] if escaped else []
    issues += nul
    try:
        catalog = Catalog.model_validate(merged)
    except ValidationError as exc:
        found = _without_nul_paths(_pydantic_issues(exc, locator), nul)
        raise CatalogError(issues + found + _template_issues(catalog_dir)) from None
    if not unreadable:  # else every reference into the unread file would be "unknown"
        issues += _without_nul_paths(_cross_issues(catalog, locator), nul)
    issues += _template_issues(catalog_dir)
    if issues:
        raise CatalogError(issues)
    return catalog
