"""README.md runs as written.

Every ```python block executes in a fresh interpreter, in an empty directory with
``TETHER_HOME`` inside it, and must exit 0 (the blocks assert their own results). A block whose
first line is ``# continues the example above`` runs after the block before it, as one script.
Every ```yaml block that holds an ``agent:`` section loads as a policy. Command lines quote
arguments holding ``$`` in single quotes: in double quotes the shell expands ``$40`` to ``0``.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from tether import Policy

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
CONTINUES = "# continues the example above"
FENCE = re.compile(r"^```([A-Za-z0-9_+-]*)[ \t]*\n(.*?)^```[ \t]*$", re.S | re.M)


def blocks(lang: str | None = None) -> list[tuple[str, str, int]]:
    """(language, source, line) of every fenced block, in order."""
    text = README.read_text(encoding="utf-8")
    found = []
    for m in FENCE.finditer(text):
        if lang is None or m.group(1) == lang:
            found.append((m.group(1), m.group(2), text.count("\n", 0, m.start()) + 1))
    return found


def scripts() -> list[tuple[str, int]]:
    """Each Python block with the blocks it continues prepended."""
    out: list[tuple[str, int]] = []
    for _, src, line in blocks("python"):
        if src.startswith(CONTINUES):
            assert out, f"README.md:{line} continues a block, but no Python block comes before it"
            src = out[-1][0] + "\n" + src
        out.append((src, line))
    return out


SCRIPTS = scripts()


def test_readme_has_python_blocks() -> None:
    assert len(SCRIPTS) >= 3


@pytest.mark.parametrize(("source", "line"), SCRIPTS, ids=[f"line{line}" for _, line in SCRIPTS])
def test_python_block_runs(source: str, line: int, tmp_path: Path) -> None:
    script = tmp_path / "block.py"
    script.write_text(source, encoding="utf-8")
    env = {**os.environ, "TETHER_HOME": str(tmp_path / "tether-home")}
    for name in ("TETHER_MODEL", "TETHER_ROUTER_MODEL", "TETHER_LEDGER_URL", "TETHER_CHECKPOINT_URL",
                 "TETHER_RETRIEVAL", "TETHER_OPENAI_BASE_URL"):
        env.pop(name, None)  # the blocks document the offline defaults
    proc = subprocess.run([sys.executable, str(script)], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=300, check=False)
    assert proc.returncode == 0, f"README.md:{line} failed\n{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}"


@pytest.mark.parametrize(("source", "line"), [(s, n) for _, s, n in blocks("yaml")],
                         ids=[f"line{n}" for _, _, n in blocks("yaml")])
def test_yaml_policy_blocks_load(source: str, line: int) -> None:
    if not re.search(r"^agent:", source, re.M):
        pytest.skip("not a policy")
    policy = Policy.from_text(source, source=f"README.md:{line}")
    assert policy.tools


def _command_lines() -> list[tuple[str, int]]:
    lines = []
    for lang, src, start in blocks():
        if lang not in ("", "bash", "sh", "shell", "console"):
            continue
        for i, raw in enumerate(src.splitlines(), start=start + 1):
            text = raw.strip().removeprefix("$ ")
            if text.startswith("tether ") or " tether " in f" {text.split('#')[0]}":
                lines.append((text, i))
    return lines


def _double_quoted_dollar(line: str) -> bool:
    """Whether a ``$`` sits inside double quotes (outside single quotes) on the line."""
    quote: str | None = None
    for ch in line:
        if quote is None and ch in "'\"":
            quote = ch
        elif ch == quote:
            quote = None
        elif ch == "$" and quote == '"':
            return True
    return False


def test_yaml_suite_blocks_load(tmp_path: Path) -> None:
    """Every ```yaml block that holds ``tasks:`` loads as an eval suite."""
    from tether.evals.suite import load_suite

    found = [(src, line) for _, src, line in blocks("yaml") if re.search(r"^tasks:", src, re.M)]
    assert found, "README.md shows no suite file"
    for src, line in found:
        path = tmp_path / f"suite-{line}.yaml"
        path.write_text(src, encoding="utf-8")
        suite = load_suite(path)
        assert suite.tasks, f"README.md:{line}: the suite has no tasks"


def test_yaml_price_blocks_load(tmp_path: Path) -> None:
    """Every ```yaml block that holds ``prices:`` loads as a price-table override file."""
    from tether.models import load_prices

    found = [(src, line) for _, src, line in blocks("yaml") if re.search(r"^prices:", src, re.M)]
    assert found, "README.md shows no price file"
    for src, line in found:
        path = tmp_path / f"prices-{line}.yaml"
        path.write_text(src, encoding="utf-8")
        assert load_prices(path).version, f"README.md:{line}"


def test_readme_documents_command_lines() -> None:
    assert len(_command_lines()) >= 10


@pytest.mark.parametrize(("line", "where"), _command_lines(), ids=[f"line{n}" for _, n in _command_lines()])
def test_command_line_quotes_dollars_in_single_quotes(line: str, where: int) -> None:
    assert not _double_quoted_dollar(line), f"README.md:{where}: put arguments holding $ in single quotes: {line}"
    code = line.split(" #")[0]
    try:
        shlex.split(code)
    except ValueError as exc:  # an unbalanced quote
        raise AssertionError(f"README.md:{where}: {exc}: {line}") from None


def test_double_quoted_dollar_is_caught() -> None:
    assert _double_quoted_dollar('tether run support "Refund $40" --subject C-1042')
    assert not _double_quoted_dollar("tether run support 'Refund $40' --subject C-1042")
    assert not _double_quoted_dollar("""tether approve A-1 --edit '{"amount_usd": 20}'""")


def test_readme_opens_with_the_two_make_targets() -> None:
    head = README.read_text(encoding="utf-8").splitlines()[:6]
    assert head[0] == "# tether"
    assert head[2] == "```" and head[5] == "```"
    assert head[3].startswith("make demo") and head[4].startswith("make test")


def test_public_names_are_documented() -> None:
    import tether

    text = README.read_text(encoding="utf-8")
    section = text.split("## Public names", 1)[1].split("\n## ", 1)[0]
    missing = [n for n in tether.__all__ if n != "__version__" and f"`{n}`" not in section]
    assert not missing, f"README.md 'Public names' does not list {missing}"
