"""`[tool.ect]` configuration: loading, defaults and strict validation.

Every key is checked: an unknown key or a value of the wrong type is a one-line
`ConfigError` naming the key. Sections owned by other parts of ect (`model`,
`review`, `stages`, `metrics`, `fix`, `lsp`) are kept as raw tables here and
validated by their owners with `check_table`.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ect.errors import ConfigError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

DEFAULT_RUN_ALL = [
    "pyproject.toml",
    "setup.cfg",
    "setup.py",
    "requirements*.txt",
    "conftest.py",
    "tox.ini",
    "pytest.ini",
    "ect.toml",
]
DEFAULT_IGNORE = [
    "*.md",
    "*.rst",
    "docs/**",
    "LICENSE*",
    "COPYING*",
    ".gitignore",
    ".gitattributes",
    ".github/**",
    ".pre-commit-config.yaml",
    ".pre-commit-hooks.yaml",
]
OWNED_SECTIONS = ("model", "review", "stages", "metrics", "fix", "lsp", "hooks")

# key -> (type name, default). Type names: str, bool, int, list[str], dict[str,list[str]], auto-bool.
SCHEMA: dict[str, tuple[str, Any]] = {
    "source_roots": ("list[str]", None),
    "package_dirs": ("dict[str,str]", None),
    "test_paths": ("list[str]", None),
    "test_patterns": ("list[str]", ["test_*.py", "*_test.py"]),
    "run_all": ("list[str]", DEFAULT_RUN_ALL),
    "ignore": ("list[str]", DEFAULT_IGNORE),
    "data_deps": ("dict[str,list[str]]", {}),
    "state_dir": ("str", ".ect"),
    "ruff": ("auto-bool", "auto"),
    "mypy": ("bool", False),
    "ruff_args": ("list[str]", []),
    "mypy_args": ("list[str]", []),
    "pytest_args": ("list[str]", []),
    "xdist": ("bool", False),
    "exclude": ("list[str]", [".venv/**", "venv/**", "build/**", "dist/**", ".tox/**", ".nox/**"]),
    "python": ("str", "auto"),
    "pytest_autoload": ("auto-bool", "auto"),
    "pytest_plugins": ("list[str]", []),
    "test_timeout": ("float", 0),
    "max_file_size": ("int", 1_000_000),
}


@dataclass
class Config:
    """Resolved configuration for one repository."""

    root: Path
    source_roots: list[str]
    package_dirs: dict[str, str]
    test_paths: list[str]
    test_patterns: list[str]
    run_all: list[str]
    ignore: list[str]
    data_deps: dict[str, list[str]]
    state_dir: str
    ruff: bool
    mypy: bool
    ruff_args: list[str]
    mypy_args: list[str]
    pytest_args: list[str]
    xdist: bool
    exclude: list[str]
    python: str = "auto"  # the interpreter the tests run with ("auto": the project's venv, else ect's)
    pytest_autoload: bool | str = "auto"  # pytest plugin autoloading ("auto": only in the project's env)
    pytest_plugins: list[str] = field(default_factory=list)  # `-p` plugins when autoloading is off
    test_timeout: float = 0  # seconds one test may run (0: no limit)
    max_file_size: int = 1_000_000  # bytes; larger Python files are not parsed (treated as opaque)
    origin: Path | None = None  # the real repository when `root` is a temporary checkout of a commit
    source: str = "defaults"
    sections: dict[str, dict[str, Any]] = field(default_factory=dict)

    @property
    def state_path(self) -> Path:
        return self.root / self.state_dir

    def section(self, name: str) -> dict[str, Any]:
        """A raw sub-table (e.g. `[tool.ect.review]`), empty when absent."""
        return self.sections.get(name, {})


def _type_ok(kind: str, value: Any) -> bool:
    if kind == "str":
        return isinstance(value, str)
    if kind == "bool":
        return isinstance(value, bool)
    if kind == "auto-bool":
        return isinstance(value, bool) or value == "auto"
    if kind == "int":
        return isinstance(value, int) and not isinstance(value, bool)
    if kind == "float":
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if kind == "list[str]":
        return isinstance(value, list) and all(isinstance(v, str) for v in value)
    if kind == "dict[str,list[str]]":
        return isinstance(value, dict) and all(
            isinstance(v, list) and all(isinstance(x, str) for x in v) for v in value.values()
        )
    if kind == "dict[str,str]":
        return isinstance(value, dict) and all(isinstance(v, str) for v in value.values())
    if kind == "table":
        return isinstance(value, dict)
    if kind == "list[table]":
        return isinstance(value, list) and all(isinstance(v, dict) for v in value)
    raise AssertionError(kind)


def check_table(
    prefix: str, table: dict[str, Any], schema: dict[str, tuple[str, Any]], where: str = "config"
) -> dict[str, Any]:
    """Validate `table` against `schema`; return it merged over the defaults."""
    out = {key: default for key, (_, default) in schema.items()}
    for key, value in table.items():
        name = f"{prefix}.{key}" if prefix else key
        if key not in schema:
            known = ", ".join(sorted(schema))
            raise ConfigError(f"{where}: unknown key '{name}' (known: {known})")
        kind = schema[key][0]
        if not _type_ok(kind, value):
            expected = 'true, false or "auto"' if kind == "auto-bool" else kind
            raise ConfigError(f"{where}: '{name}' must be {expected}, got {type(value).__name__} {value!r}")
        out[key] = value
    return out


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as fh:
            data: dict[str, Any] = tomllib.load(fh)
            return data
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path.name}: invalid TOML: {exc}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path.name}: not valid UTF-8") from None
    except OSError as exc:
        raise ConfigError(f"{path.name}: cannot read: {exc.strerror}") from None


def load_config(root: Path) -> Config:
    """Load `ect.toml` (top-level keys) or `[tool.ect]` from `pyproject.toml` under `root`."""
    raw: dict[str, Any] = {}
    source = "defaults"
    pyproject: dict[str, Any] = {}
    if (root / "pyproject.toml").is_file():
        pyproject = _read_toml(root / "pyproject.toml")
    if (root / "ect.toml").is_file():
        raw = _read_toml(root / "ect.toml")
        raw = raw.get("tool", {}).get("ect", raw) if "tool" in raw else raw
        source = "ect.toml"
    else:
        tool = pyproject.get("tool", {})
        ect_table = tool.get("ect", {}) if isinstance(tool, dict) else {}
        if not isinstance(ect_table, dict):
            raise ConfigError("pyproject.toml: [tool.ect] must be a table")
        if ect_table:
            raw = ect_table
            source = "pyproject.toml [tool.ect]"
    where = source if source != "defaults" else "config"
    sections = {k: raw[k] for k in OWNED_SECTIONS if k in raw}
    for name, value in sections.items():
        if not isinstance(value, dict) and name != "stages":
            raise ConfigError(f"{where}: '{name}' must be a table")
    plain = {k: v for k, v in raw.items() if k not in OWNED_SECTIONS}
    values = check_table("", plain, SCHEMA, where)

    if values["source_roots"] is None:
        values["source_roots"] = ["src"] if (root / "src").is_dir() else ["."]
    if values["package_dirs"] is None:
        values["package_dirs"] = _setuptools_package_dirs(pyproject)
    if values["test_paths"] is None:
        values["test_paths"] = _pytest_testpaths(root, pyproject)
    if values["test_timeout"] < 0:
        raise ConfigError(
            f"{where}: 'test_timeout' must be >= 0 (0: no limit), got {values['test_timeout']!r}"
        )
    if values["max_file_size"] < 1:
        raise ConfigError(f"{where}: 'max_file_size' must be a positive number of bytes")
    ruff = values["ruff"]
    if ruff == "auto":
        ruff = _ruff_configured(root, pyproject)
    values["ruff"] = bool(ruff)
    for key in ("source_roots", "test_paths", "package_dirs"):
        for rel in values[key].values() if key == "package_dirs" else values[key]:
            if os.path.isabs(rel) or ".." in Path(rel).parts:
                raise ConfigError(f"{where}: '{key}' entry {rel!r} must be a path inside the repository")
    return Config(root=root, source=source, sections=sections, **values)


def _setuptools_package_dirs(pyproject: dict[str, Any]) -> dict[str, str]:
    """`[tool.setuptools.package-dir]`'s mapped packages (`"pkg.sub" = "folder"`); the root entry is
    a source root, not a mapping."""
    tool = pyproject.get("tool")
    table = tool.get("setuptools", {}).get("package-dir", {}) if isinstance(tool, dict) else {}
    if not isinstance(table, dict):
        return {}
    return {k: v.rstrip("/") for k, v in table.items() if k and isinstance(v, str) and v.strip("/.")}


def _pytest_testpaths(root: Path, pyproject: dict[str, Any]) -> list[str]:
    ini = pyproject.get("tool", {}).get("pytest", {}).get("ini_options", {})
    paths = ini.get("testpaths") if isinstance(ini, dict) else None
    if isinstance(paths, list) and paths and all(isinstance(p, str) for p in paths):
        return [p.rstrip("/") or "." for p in paths]
    if isinstance(paths, str) and paths.strip():
        return paths.split()
    return ["."]


def _ruff_configured(root: Path, pyproject: dict[str, Any]) -> bool:
    if isinstance(pyproject.get("tool"), dict) and "ruff" in pyproject["tool"]:
        return True
    return (root / "ruff.toml").is_file() or (root / ".ruff.toml").is_file()
