"""Packaging with the repo root as the ``tether`` package (``package-dir = {"tether" = "."}``).

Known traps: a sub-package missing from the explicit list is silently dropped from the wheel;
the root's folders could leak as top-level packages (``agents``, ``tools``); data files could
be left out. A wheel is built from a copy of the tree and inspected, then used on its own.
"""

from __future__ import annotations

import configparser
import os
import shutil
import subprocess
import sys
import tomllib
import zipfile
from importlib import metadata
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
NOT_PACKAGE = {"tests", "notebooks", "bench", "build", "dist", ".venv", "__pycache__"}
EXPECTED_FOLDERS = {
    "agents", "agents/support", "agents/itdesk", "checkpoints", "evals", "graphs", "guards",
    "retrieval", "tools",
}
TOP_LEVEL_LEAKS = ("agents", "tools", "evals", "tests", "notebooks", "guards", "graphs",
                   "checkpoints", "retrieval", "bench")


def _skip_dir(name: str) -> bool:
    return name in NOT_PACKAGE or name.startswith(".") or name.endswith(".egg-info")


def package_folders() -> dict[str, list[str]]:
    """Folders of the package (relative, '' is the root) -> the .py files directly inside."""
    out: dict[str, list[str]] = {}
    for here, dirs, filenames in os.walk(REPO):
        dirs[:] = sorted(d for d in dirs if not _skip_dir(d))
        rel = Path(here).relative_to(REPO).as_posix()
        py = sorted(f for f in filenames if f.endswith(".py"))
        if py:
            out["" if rel == "." else rel] = py
    return out


def package_data() -> set[str]:
    support = REPO / "agents" / "support"
    files = {"py.typed"}
    files |= {f"agents/support/{p.name}" for p in support.glob("*.yaml")}
    files |= {f"agents/support/kb/{p.name}" for p in (support / "kb").glob("*.md")}
    files |= {f"agents/itdesk/kb/{p.name}" for p in (support.parent / "itdesk" / "kb").glob("*.md")}
    files |= {f"agents/itdesk/{p.name}" for p in (REPO / "agents" / "itdesk").glob("*.yaml")}
    for desk in ("support", "itdesk"):
        files |= {f"agents/{desk}/{p.name}" for p in (REPO / "agents" / desk).glob("*.jsonl")}
        files |= {f"agents/{desk}/prompts/{p.name}" for p in (REPO / "agents" / desk / "prompts").glob("*.md")}
    files |= {f"agents/support/canary/{p.name}" for p in (support / "canary").glob("*") if p.is_file()}
    files |= {f"evals/{p.name}" for p in (REPO / "evals").glob("*.json")}
    return files


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    work = tmp_path_factory.mktemp("wheel")
    src = work / "src"
    shutil.copytree(
        REPO,
        src,
        ignore=shutil.ignore_patterns(
            ".venv", "build", "dist", "*.egg-info", "__pycache__", ".git", ".hypothesis",
            ".mypy_cache", ".ruff_cache", ".tether", ".pytest_cache",
        ),
    )
    out = work / "dist"
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
         "-w", str(out), str(src)],
        capture_output=True, text=True, timeout=300, check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    (whl,) = out.glob("tether-*.whl")
    return whl


@pytest.fixture(scope="module")
def names(wheel: Path) -> set[str]:
    with zipfile.ZipFile(wheel) as z:
        return set(z.namelist())


def dist_info(names: set[str]) -> str:
    (d,) = {n.split("/")[0] for n in names if n.split("/")[0].endswith(".dist-info")}
    return d


def test_discovery_finds_the_package_folders() -> None:
    found = set(package_folders())
    assert found >= EXPECTED_FOLDERS
    assert "" in found  # the root is the package itself


def test_every_package_folder_and_module_is_in_the_wheel(names: set[str]) -> None:
    missing = [
        f"tether/{folder + '/' if folder else ''}{py}"
        for folder, pys in package_folders().items()
        for py in pys
        if f"tether/{folder + '/' if folder else ''}{py}" not in names
    ]
    assert missing == []


def test_only_tether_and_its_metadata_at_the_top(names: set[str]) -> None:
    tops = {n.split("/")[0] for n in names}
    assert tops == {"tether", dist_info(names)}
    for leak in TOP_LEVEL_LEAKS:
        assert not any(n.startswith(f"{leak}/") for n in names), leak
    for inside in ("tests", "notebooks", "bench", "build", ".ci"):
        assert not any(n.startswith(f"tether/{inside}/") for n in names), inside


def test_package_data_is_included_and_nothing_else(names: set[str]) -> None:
    data = {n.removeprefix("tether/") for n in names if n.startswith("tether/") and not n.endswith(".py")}
    expected = package_data()
    assert "agents/support/agent-policy.yaml" in expected
    assert len([f for f in expected if f.startswith("agents/support/kb/")]) >= 4
    assert data == expected


def test_console_script_is_declared(names: set[str], wheel: Path) -> None:
    with zipfile.ZipFile(wheel) as z:
        text = z.read(f"{dist_info(names)}/entry_points.txt").decode()
        top_level = z.read(f"{dist_info(names)}/top_level.txt").decode().split()
    ep = configparser.ConfigParser()
    ep.read_string(text)
    assert ep["console_scripts"]["tether"].strip() == "tether.cli:main"
    assert top_level == ["tether"]
    installed = metadata.entry_points(group="console_scripts", name="tether")
    assert [e.value for e in installed] == ["tether.cli:main"]
    assert callable(next(iter(installed)).load())


def test_the_wheel_works_on_its_own(wheel: Path, names: set[str], tmp_path: Path) -> None:
    site = tmp_path / "site"
    with zipfile.ZipFile(wheel) as z:
        z.extractall(site)
    script = f"""
import importlib, pkgutil, sys
from importlib.resources import files
from pathlib import Path
import tether
assert Path(tether.__file__).is_relative_to({str(site)!r}), tether.__file__
mods = [m.name for m in pkgutil.walk_packages(tether.__path__, "tether.")]
for m in mods:
    mod = importlib.import_module(m)
    assert Path(mod.__file__).is_relative_to({str(site)!r}), mod.__file__
from tether.guards.policy import Policy
from tether.retrieval.knowledge import KnowledgeBase
support = Path(str(files("tether.agents.support")))
Policy.from_yaml(support / "agent-policy.yaml")
assert KnowledgeBase.from_dir(support / "kb").get("KB-REFUND@v3#p1") is not None
print(len(mods))
"""
    env = {**os.environ, "PYTHONPATH": str(site), "PYTHONSAFEPATH": "1"}
    proc = subprocess.run(
        [sys.executable, "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True,
        timeout=300, check=False,
    )
    assert proc.returncode == 0, proc.stderr
    n_modules = len([n for n in names if n.endswith(".py")]) - 1  # every module but the root
    assert int(proc.stdout.split()[-1]) == n_modules


def test_no_top_level_packages_leak_into_the_environment(tmp_path: Path) -> None:
    names = ", ".join(repr(n) for n in TOP_LEVEL_LEAKS)
    script = (
        "import importlib.util, json\n"
        f"print(json.dumps({{n: importlib.util.find_spec(n) is not None for n in ({names},)}}))\n"
        "print(importlib.util.find_spec('tether') is not None)\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    proc = subprocess.run(
        [sys.executable, "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True,
        timeout=120, check=False,
    )
    assert proc.returncode == 0, proc.stderr
    found, tether_found = proc.stdout.splitlines()
    assert [n for n, hit in __import__("json").loads(found).items() if hit] == []
    assert tether_found == "True"


def test_installed_distribution_ships_only_tether() -> None:
    dist = metadata.distribution("tether")
    assert (dist.read_text("top_level.txt") or "").split() == ["tether"]
    for f in dist.files or ():
        top = f.parts[0]
        assert top not in TOP_LEVEL_LEAKS, f


def test_pyproject_package_list_matches_the_folders() -> None:
    config = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]
    assert config["package-dir"] == {"tether": "."}
    listed = set(config["packages"])
    assert len(listed) == len(config["packages"]), "duplicate entries"
    on_disk = {
        ".".join(["tether", *Path(folder).parts])
        for folder in package_folders()
        if (REPO / folder / "__init__.py").is_file()
    }
    assert listed == on_disk
    # and a folder with modules but no __init__.py would be neither importable nor listed
    assert {f for f in package_folders() if not (REPO / f / "__init__.py").is_file()} == set()

