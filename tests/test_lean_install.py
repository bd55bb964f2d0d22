"""``pip install .`` with no extras: the demo and the command line work, nothing heavy comes along.

The wheel is built from a copy of the tree and installed into a fresh virtualenv from the
machine's package index (pip's usual configuration), with no extras. That environment must
hold no torch, no database driver, no Chroma; ``tether demo``, ``tether --help`` and a full
request with an approval (``run`` -> ``approvals list`` -> ``approve`` -> ``ledger verify``)
run from it, BM25 knowledge bases work, and every feature that needs an extra says which one.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow

# Distributions that only an extra may bring (names as normalised by packaging).
HEAVY = {
    "torch", "sentence-transformers", "transformers", "chromadb", "onnxruntime",
    "llama-index-vector-stores-chroma", "llama-index-embeddings-huggingface",
    "psycopg", "psycopg-binary", "psycopg-pool", "psycopg2", "psycopg2-binary",
    "langgraph-checkpoint-postgres", "opentelemetry-sdk", "mcp", "langchain-mcp-adapters",
    "langchain", "langgraph-cli", "matplotlib", "kubernetes", "grpcio",
}
# The lean install measured 269 MB of site-packages; the bound catches a heavy package sneaking in.
MAX_SITE_PACKAGES_BYTES = 400 * 1024 * 1024


@dataclass(frozen=True, kw_only=True, slots=True)
class LeanEnv:
    python: Path
    tether: Path
    site_packages: Path
    env: dict[str, str]

    def run(self, *args: str, cwd: Path, timeout: int = 300) -> subprocess.CompletedProcess[str]:
        return subprocess.run(list(args), cwd=cwd, env=self.env, capture_output=True, text=True,
                              timeout=timeout, check=False)

    def cli(self, *args: str, cwd: Path, timeout: int = 300) -> subprocess.CompletedProcess[str]:
        proc = self.run(str(self.tether), *args, cwd=cwd, timeout=timeout)
        assert proc.returncode == 0, f"tether {' '.join(args)}: {proc.stdout[-2000:]}{proc.stderr[-2000:]}"
        return proc


def _build_wheel(work: Path) -> Path:
    src = work / "src"
    shutil.copytree(REPO, src, ignore=shutil.ignore_patterns(
        ".venv", "build", "dist", "*.egg-info", "__pycache__", ".git", ".hypothesis", ".mypy_cache",
        ".ruff_cache", ".tether", ".pytest_cache"))
    out = work / "dist"
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(out),
         str(src)],
        capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    (whl,) = out.glob("tether-*.whl")
    return whl


@pytest.fixture(scope="module")
def lean(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LeanEnv]:
    work = tmp_path_factory.mktemp("lean")
    wheel = _build_wheel(work)
    venv = work / "venv"
    # no pip inside the new venv: the running interpreter's pip installs into it (--python)
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    python = venv / "bin" / "python"
    env = {k: v for k, v in os.environ.items() if k not in {"PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME"}}
    env |= {"PIP_DISABLE_PIP_VERSION_CHECK": "1", "PYTHONSAFEPATH": "1", "LANGSMITH_TRACING": "false",
            "TETHER_HOME": str(work / "home"), "PATH": f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}"}
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "--python", str(python), "install", "-q", "--no-compile", str(wheel)],
        env=env, capture_output=True, text=True, timeout=900, check=False)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    (site,) = (venv / "lib").glob("python3*/site-packages")
    yield LeanEnv(python=python, tether=venv / "bin" / "tether", site_packages=site, env=env)


def _installed(lean: LeanEnv, tmp_path: Path) -> set[str]:
    script = ("import json, re\nfrom importlib import metadata\n"
              "print(json.dumps(sorted({re.sub(r'[-_.]+', '-', d.metadata['Name']).lower() "
              "for d in metadata.distributions()})))")
    proc = lean.run(str(lean.python), "-c", script, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    return set(json.loads(proc.stdout))


def test_no_extras_pulls_no_torch_no_database_driver_no_chroma(lean: LeanEnv, tmp_path: Path) -> None:
    installed = _installed(lean, tmp_path)
    assert {"tether", "langgraph", "langgraph-checkpoint-sqlite", "llama-index-retrievers-bm25"} <= installed
    assert sorted(installed & HEAVY) == []
    size = sum(f.stat().st_size for f in lean.site_packages.rglob("*") if f.is_file() and not f.is_symlink())
    assert size < MAX_SITE_PACKAGES_BYTES, f"site-packages holds {size / 2**20:.0f} MiB"


def test_help_lists_the_commands(lean: LeanEnv, tmp_path: Path) -> None:
    out = lean.cli("--help", cwd=tmp_path).stdout
    for command in ("demo", "run", "approvals", "approve", "ledger", "kb", "versions", "eval"):
        assert re.search(rf"^\s+{command}\s", out, re.M), command
    workflows = json.loads(lean.cli("workflows", "--json", cwd=tmp_path).stdout)
    assert {"support", "itdesk"} <= {w["name"] for w in workflows}


def test_demo_plays_every_scenario_as_documented(lean: LeanEnv, tmp_path: Path) -> None:
    proc = lean.cli("demo", cwd=tmp_path, timeout=600)
    done = re.search(r"^(\d+)/(\d+) scenarios as documented", proc.stdout, re.M)
    assert done is not None, proc.stdout[-2000:]
    assert done.group(1) == done.group(2) and int(done.group(1)) > 0
    assert proc.stdout.count("check: OK") == int(done.group(1))
    assert "check: FAIL" not in proc.stdout


def test_a_request_pauses_is_approved_and_the_ledger_verifies(lean: LeanEnv, tmp_path: Path) -> None:
    text = "Please refund $40 for order O-20417, the kettle arrived damaged"
    first = json.loads(lean.cli("run", "support", "--json", "--subject", "C-1042", text, cwd=tmp_path).stdout)
    assert first["status"] == "awaiting_approval"
    (pending,) = first["waiting_for"]
    assert pending["tool"] == "issue_refund" and pending["args"]["amount_usd"] == 40.0
    listed = lean.cli("approvals", "list", cwd=tmp_path).stdout
    assert pending["approval_id"] in listed
    lean.cli("approve", pending["approval_id"], "--as", "alice", "--json", cwd=tmp_path)
    verified = lean.cli("ledger", "verify", cwd=tmp_path).stdout
    assert verified.startswith("OK:") and "chain intact" in verified
    shown = lean.cli("ledger", "show", first["thread_id"], cwd=tmp_path).stdout
    assert "executed" in shown and "issue_refund" in shown and "alice" in shown


def test_bm25_knowledge_base_without_the_embeddings_extra(lean: LeanEnv, tmp_path: Path) -> None:
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "returns.md").write_text("---\nid: KB-RET\n---\n# Returns\n\nItems may be returned within 30 days.\n")
    ingest = lean.cli("kb", "ingest", str(docs), cwd=tmp_path)  # hybrid by default: falls back, and says why
    assert "1 added" in ingest.stdout
    assert "using BM25 only" in ingest.stderr and "'embeddings' extra" in ingest.stderr
    found = lean.cli("kb", "search", "how many days to return an item", cwd=tmp_path).stdout
    assert "KB-RET@v1#" in found


FEATURES = """
import json
from tether import Ledger, OtelExporter, VectorKnowledgeBase, Passage, mcp_toolset, open_checkpointer
from tether.errors import MissingExtra
from tether.guards.policy import Policy
from importlib.resources import files
policy = Policy.from_yaml(files("tether.agents.support") / "agent-policy.yaml")
attempts = {
    "TetherMiddleware": lambda: __import__("tether").TetherMiddleware,
    "Ledger.open(postgresql)": lambda: Ledger.open("postgresql://u@127.0.0.1:9/db"),
    "open_checkpointer(postgresql)": lambda: open_checkpointer("postgresql://u@127.0.0.1:9/db").__enter__(),
    "OtelExporter": lambda: OtelExporter(),
    "mcp_toolset": lambda: mcp_toolset({"s": {"transport": "stdio", "command": "true", "args": []}}, policy),
    "VectorKnowledgeBase": lambda: VectorKnowledgeBase(
        [Passage(evidence_id="KB-A@v1#p1", doc_id="KB-A", version=1, title="A", text="a")], persist_dir="vec"),
}
out = {}
for name, attempt in attempts.items():
    try:
        attempt()
        out[name] = "worked"
    except MissingExtra as exc:
        out[name] = [exc.extra, str(exc)]
print(json.dumps(out))
"""


def test_each_feature_behind_an_extra_names_it(lean: LeanEnv, tmp_path: Path) -> None:
    proc = lean.run(str(lean.python), "-c", FEATURES, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    got = json.loads(proc.stdout)
    assert {name: extra for name, (extra, _) in got.items()} == {
        "TetherMiddleware": "langchain",
        "Ledger.open(postgresql)": "postgres",
        "open_checkpointer(postgresql)": "postgres",
        "OtelExporter": "tracing",
        "mcp_toolset": "mcp",
        "VectorKnowledgeBase": "embeddings",
    }
    for name, (extra, message) in got.items():
        assert f"[{extra}]" in message, name  # the message says what to install
