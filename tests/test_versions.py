"""Prompt files with versions, and ``tether versions``: the values the ledger and eval results record."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tether import Home, Session, load_prompt, load_suite, resolve_suite, run_suite
from tether.cli import main
from tether.graphs.prompts import PromptFileError

REPO = Path(__file__).parent.parent
CANARY = REPO / "agents" / "support" / "canary"


@pytest.fixture(scope="module")
def results(tmp_path_factory: pytest.TempPathFactory) -> Any:
    work = tmp_path_factory.mktemp("eval")
    return run_suite(load_suite(resolve_suite("support")), work_dir=work, tasks=["refund-kettle-18"])


def _versions(capsys: pytest.CaptureFixture[str], *argv: str) -> Any:
    capsys.readouterr()
    assert main(["versions", *argv, "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def test_shipped_prompts_load_with_their_versions() -> None:
    from tether.agents.itdesk import desk as itdesk
    from tether.agents.support import desk as support

    for desk, version in ((support, "support-v1"), (itdesk, "itdesk-v1")):
        p = load_prompt(REPO / "agents" / desk.WORKFLOW.name / "prompts" / "system.md")
        assert p.version == version == desk.PROMPT_VERSION and p.text == desk.SYSTEM_PROMPT
        assert not p.text.endswith("\n") and len(p.sha256) == 64


@given(st.text(min_size=1).filter(lambda t: t.strip() and "\r" not in t))
def test_prompt_text_round_trips(text: str) -> None:
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "p.md"
        path.write_text(f"---\nversion: v9\n---\n{text}\n", encoding="utf-8", newline="")
        p = load_prompt(path)
    assert p.text == text and p.version == "v9" and p.path == str(path)


@pytest.mark.parametrize(("content", "words"), [
    ("just text\n", "no front matter"),
    ("---\ndescription: x\n---\nhello\n", "no 'version'"),
    ("---\nversion: 2\n---\nhello\n", "quote numbers"),
    ("---\nversion: v1\ncolour: red\n---\nhello\n", "unknown front matter keys ['colour']"),
    ("---\nversion: v1\n---\n\n", "empty"),
    ("---\nversion: [v1\n---\nhello\n", "not YAML"),
])
def test_bad_prompt_files_name_the_file(tmp_path: Path, content: str, words: str) -> None:
    path = tmp_path / "bad.md"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(PromptFileError, match=str(path)) as err:
        load_prompt(path)
    assert words in str(err.value)
    with pytest.raises(PromptFileError, match="cannot read"):
        load_prompt(tmp_path / "missing.md")


def test_versions_equal_the_eval_results_and_the_ledger(results: Any, tmp_path: Path,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    cur = _versions(capsys, "support")
    assert set(cur["workflows"]) == {"support"}
    v = cur["workflows"]["support"]
    recorded = json.loads(json.dumps(results.versions))
    assert v == recorded["workflows"]["support"] and cur["tether"] == recorded["tether"]
    assert v["routes"]["refund"]["tools"][-1] == "handoff_to_human"
    assert v["prices"]["offline:support-v1"]["input_per_mtok"] > 0
    with Session.open("support", home=Home(root=tmp_path)) as s:
        s.run("Refund $18 on order O-20417", thread_id="t1", subject="C-1042")
        rows = s.events("t1")
    assert {r.policy_version for r in rows if r.event == "proposed"} == {v["policy"]["version"]}
    assert set(_versions(capsys)["workflows"]) >= {"support", "itdesk"}
    capsys.readouterr()
    assert main(["versions", "support"]) == 0
    human = capsys.readouterr().out
    assert "support-v1" in human and v["policy"]["version"] in human and "issue_refund" in human


def test_diff_shows_a_changed_policy_and_prompt(results: Any, tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    res = tmp_path / "results.json"
    res.write_text(json.dumps(results.to_json()), encoding="utf-8")
    assert _versions(capsys, "support", "--diff", str(res)) == {"other": str(res), "changed": [], "unbumped": [],
                                                             "only_here": [], "only_other": []}
    d = _versions(capsys, "support", "--policy", str(CANARY / "loose-policy.yaml"), "--diff", str(res))
    keys = {c["key"] for c in d["changed"]}
    assert {"workflows.support.policy.version", "workflows.support.policy.sha256"} <= keys
    assert all(k.startswith("workflows.support.policy.") for k in keys)
    other = _versions(capsys, "support")
    other["workflows"]["support"]["prompt"]["sha256"] = "0" * 64  # the text changed, the version did not
    checkout = tmp_path / "checkout"
    checkout.mkdir()
    (checkout / "versions.json").write_text(json.dumps(other), encoding="utf-8")
    d = _versions(capsys, "--diff", str(checkout))
    assert [c["key"] for c in d["changed"]] == ["workflows.support.prompt.sha256"]
    assert d["unbumped"] == ["workflows.support.prompt"] and d["only_here"] == ["itdesk"]
    capsys.readouterr()
    assert main(["versions", "--diff", str(checkout)]) == 0
    out = capsys.readouterr().out
    assert "workflows.support.prompt.sha256" in out and "bump the version" in out and "itdesk" in out


def test_diff_bad_input_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "bad.json").write_text("{not json", encoding="utf-8")
    (tmp_path / "other.json").write_text('{"hello": 1}', encoding="utf-8")
    for arg, words in ((tmp_path, "versions.json does not exist"), (tmp_path / "bad.json", "not JSON"),
                       (tmp_path / "other.json", "has no versions block"), (tmp_path / "nope.json", "cannot read")):
        capsys.readouterr()
        assert main(["versions", "support", "--diff", str(arg)]) == 1
        assert words in capsys.readouterr().err
    assert main(["versions", "no-such-desk"]) == 1
    assert "no-such-desk" in capsys.readouterr().err
