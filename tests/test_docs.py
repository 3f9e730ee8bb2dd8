"""README.md and docs/ARCHITECTURE.md name only models, files and modules that exist."""

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", ROOT / "docs" / "ARCHITECTURE.md"]
DBT = ROOT / "dbt_project"

_MODEL = re.compile(r"\b(?:stg|int|fct|dim)_[a-z0-9_]*[a-z0-9]\b")
_PLACEHOLDER_MODEL = re.compile(r"\b(?:stg|int|fct|dim)_[a-z0-9_]*_<")
_PATH = re.compile(
    r"(?<![\w./-])((?:orchestration|integrations|dbt_project|tests|scripts|benchmarks|docs)"
    r"/[\w./<>-]*[\w/>])"
)
_MODULE = re.compile(r"\b((?:orchestration|integrations)(?:\.[a-z_][a-z0-9_]*)+)")


def _dbt_nodes() -> set[str]:
    models = [*(DBT / "models").rglob("*.sql"), *(DBT / "models").rglob("*.py")]
    files = [*models, *(DBT / "seeds").glob("*.csv")]
    return {f.stem for f in files}


def _exists(path: str) -> bool:
    """A file, or a folder with a file in it that is not a leftover of Python's cache; a
    `<name>` in the path stands for any name, and at least one must exist."""
    if "<" in path:
        pattern = re.sub(r"<[^>]*>", "*", path.rstrip("/"))
        return any(_exists(str(m.relative_to(ROOT))) for m in ROOT.glob(pattern))
    target = ROOT / path.rstrip("/")
    if target.is_file():
        return True
    return target.is_dir() and any(
        f.is_file() and "__pycache__" not in f.parts for f in target.rglob("*")
    )


def _module_exists(dotted: str) -> bool:
    """`a.b.c` names a package, a module, or something inside one (c a function)."""
    parts = dotted.split(".")
    for n in range(len(parts), 1, -1):
        base = ROOT.joinpath(*parts[:n])
        if base.with_suffix(".py").exists() or (base / "__init__.py").exists():
            return True
    return False


def _repository_map(text: str) -> list[str]:
    """Paths in the README's repository map: a code block where indentation is nesting."""
    block = text.split("## Repository layout", 1)[-1].split("```", 2)[1]
    paths, stack = [], []
    for line in block.splitlines():
        if not line.strip():
            continue
        depth = (len(line) - len(line.lstrip())) // 2
        name = line.split()[0]
        if "/" not in name and "." not in name:
            continue  # a word of a wrapped description
        stack[depth:] = [name.rstrip("/")]
        paths.append("/".join(stack))
    return paths


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: p.name)
def test_docs_name_only_dbt_models_that_exist(doc):
    text = doc.read_text()
    nodes = _dbt_nodes()
    missing = sorted({m for m in _MODEL.findall(text) if m not in nodes})
    placeholders = sorted(set(_PLACEHOLDER_MODEL.findall(text)))
    assert not missing, f"{doc.name} names dbt models that do not exist: {missing}"
    assert not placeholders, f"{doc.name} names a family of models by pattern: {placeholders}"


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: p.name)
def test_docs_name_only_files_and_modules_that_exist(doc):
    text = doc.read_text()
    paths = sorted({p for p in _PATH.findall(text) if "*" not in p and not _exists(p)})
    modules = sorted({m for m in _MODULE.findall(text) if not _module_exists(m)})
    assert not paths, f"{doc.name} names files that do not exist: {paths}"
    assert not modules, f"{doc.name} names modules that do not exist: {modules}"


def test_readme_repository_map_names_only_what_exists():
    paths = _repository_map((ROOT / "README.md").read_text())
    assert len(paths) > 10
    missing = [p for p in paths if not _exists(p)]
    assert not missing, f"README's repository map names paths that do not exist: {missing}"


def test_the_checks_themselves_see_a_missing_name(tmp_path):
    assert "int_usage_lines_rated_" in "".join(
        _PLACEHOLDER_MODEL.findall("x int_usage_lines_rated_<model> y")
    )
    assert not _module_exists("orchestration.no_such_module")
    assert _exists("dbt_project/macros/charge_model_<name>.sql")
    assert not _exists("dbt_project/macros/no_such_<name>.sql")
    assert _module_exists("orchestration.billing.month.BillingMonth")
    block = "## Repository layout\n\n```\norchestration/\n  nothing_here.py   x\n```\n"
    assert _repository_map(block) == ["orchestration", "orchestration/nothing_here.py"]
