"""Suite files: strict loading (each kind of bad input names its key), JSONL, the JSON Schema, matchers."""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from tether import Approve, Edit, Reject
from tether.evals.faults import FaultProfile
from tether.evals.suite import (
    MATCHER_KEYS,
    CallSpec,
    SuiteFileError,
    json_equal,
    load_suite,
    matches,
    resolve_suite,
    suite_json_schema,
)

SCHEMA_FILE = Path(__file__).resolve().parents[1] / "evals" / "suite.schema.json"


def _task(**over: Any) -> dict[str, Any]:
    return {"id": "t1", "request": "hello", "subject": "C-1042", "expect": {"outcome": "resolved"}, **over}


def _doc(*tasks: dict[str, Any], **over: Any) -> dict[str, Any]:
    return {"suite": "s", "version": "1", "workflow": "support", "tasks": list(tasks) or [_task()], **over}


def _write(tmp_path: Path, doc: Any, name: str = "suite.yaml") -> Path:
    p = tmp_path / name
    p.write_text(doc if isinstance(doc, str) else yaml.safe_dump(doc, sort_keys=False), encoding="utf-8")
    return p


def _problems(tmp_path: Path, doc: Any, name: str = "suite.yaml") -> list[str]:
    with pytest.raises(SuiteFileError) as info:
        load_suite(_write(tmp_path, doc, name))
    assert info.value.path.endswith(name)
    return [str(p) for p in info.value.problems]


def test_a_valid_suite_fills_in_defaults_profiles_and_decisions(tmp_path: Path) -> None:
    doc = _doc(
        _task(decisions=[{"approve": {"by": "a@x"}}, {"reject": {"by": "b@x", "reason": "no"}},
                         {"edit": {"by": "c@x", "args": {"amount_usd": 10}}}], faults="flaky"),
        _task(id="t2", workflow="itdesk", roles=["agent"], cost_ceiling_usd=0.5,
              faults={"faults": [{"tool": "*", "kind": "slow", "seconds": 0.01}]}),
        defaults={"principal": "bot", "roles": ["support"], "cost_ceiling_usd": 0.05},
        fault_profiles={"flaky": {"faults": [{"tool": "lookup_order", "kind": "error"}]}},
    )
    s = load_suite(_write(tmp_path, doc))
    t1, t2 = s.tasks
    assert (s.name, s.version, len(s.sha256)) == ("s", "1", 64)
    assert (t1.workflow, t1.principal, t1.roles, t1.cost_ceiling_usd) == ("support", "bot", ("support",), 0.05)
    assert (t2.workflow, t2.principal, t2.roles, t2.cost_ceiling_usd) == ("itdesk", "bot", ("agent",), 0.5)
    assert isinstance(t1.profile, FaultProfile) and t1.profile.faults[0].tool == "lookup_order"
    assert isinstance(t2.profile, FaultProfile)
    assert t1.decision_values == (Approve(approver="a@x"), Reject(approver="b@x", reason="no"),
                                  Edit(approver="c@x", args={"amount_usd": 10}))
    assert s.workflows == ("support", "itdesk")


@pytest.mark.parametrize(("change", "key", "words"), [
    ({"suite_": "x"}, "suite_", "Did you mean 'suite'"),
    ({"tasks": [_task(expect={"outcome": "resolvd"})]}, "tasks[0].expect.outcome",
     "'resolvd' is not one of resolved, escalated, denied, asked"),
    ({"tasks": [_task(expect={"outcome": ["asked", "nope"]})]}, "tasks[0].expect.outcome", "'nope' is not one of"),
    ({"tasks": [_task(expect={"outcome": "asked", "citatons": "required"})]}, "tasks[0].expect.citatons",
     "Did you mean 'citations'"),
    ({"tasks": [_task(expect={"outcome": "asked", "citations": "some"})]}, "tasks[0].expect.citations",
     "'required' or a list"),
    ({"tasks": [_task(category="odd")]}, "tasks[0].category", "'odd' is not one of ordinary"),
    ({"tasks": [_task(id="Bad Id")]}, "tasks[0].id", "lower-case"),
    ({"tasks": [_task(request=[])]}, "tasks[0].request", "non-empty list"),
    ({"tasks": [{"id": "t1", "request": "x"}]}, "tasks[0].expect", "required key is missing"),
    ({"version": 1}, "version", "valid string"),
    ({"tasks": [_task(decisions=[{"approve": {"by": "a"}, "reject": {"by": "a", "reason": "r"}}])]},
     "tasks[0].decisions[0]", "exactly one of approve, reject, edit (got approve, reject)"),
    ({"tasks": [_task(decisions=[{}])]}, "tasks[0].decisions[0]", "(got none)"),
    ({"tasks": [_task(decisions=[{"reject": {"by": "a"}}])]}, "tasks[0].decisions[0].reject.reason",
     "required key is missing"),
    ({"tasks": [_task(decisions=[{"approve": {}}])]}, "tasks[0].decisions[0].approve.by", "required key"),
    ({"tasks": [_task(decisions=[{"approve": {"by": "a", "why": "x"}}])]}, "tasks[0].decisions[0].approve.why",
     "unknown key"),
    ({"tasks": [_task(faults={"faults": [{"kind": "slow", "status": 503}]})]}, "tasks[0].faults.faults[0]",
     "'status' has no effect"),
    ({"prices": {"m:x": {"input_per_mtok": 1}}}, "prices.m:x.output_per_mtok", "required key"),
    ({"tasks": []}, "tasks", "at least 1"),
])
def test_each_schema_problem_names_its_key(tmp_path: Path, change: dict[str, Any], key: str, words: str) -> None:
    problems = _problems(tmp_path, {**_doc(), **change})
    assert any(p.startswith(key) and words in p for p in problems), problems


@pytest.mark.parametrize(("doc", "key", "words"), [
    (_doc(_task(), _task()), "tasks[1].id", "duplicate task id 't1' (first at tasks[0])"),
    (_doc(_task(faults="flakyy"), fault_profiles={"flaky": {"faults": [{"kind": "error"}]}}),
     "tasks[0].faults", "unknown fault profile 'flakyy'; the suite defines: flaky"),
    ({**_doc(), "workflow": None}, "tasks[0].workflow", "no workflow"),
    (_doc(_task(expect={"outcome": "resolved", "calls": [{"tool": "t", "args": {"a": {"lte": 2, "gtt": 1}}}]})),
     "tasks[0].expect.calls[0].args.a.gtt", "Did you mean 'gt'"),
    (_doc(_task(expect={"outcome": "resolved", "forbidden": [{"tool": "t", "args": {"a": {"lt": "x"}}}]})),
     "tasks[0].expect.forbidden[0].args.a.lt", "must be a number"),
    (_doc(_task(expect={"outcome": "resolved", "calls": [{"tool": "t", "args": {"a": {"regex": "("}}}]})),
     "tasks[0].expect.calls[0].args.a.regex", "not a valid regular expression"),
    (_doc(_task(expect={"outcome": "resolved", "calls": [{"tool": "t", "args": {"a": {"in": 3}}}]})),
     "tasks[0].expect.calls[0].args.a.in", "must be a list"),
    (_doc(_task(expect={"outcome": "resolved", "calls": [{"tool": "t", "args": {"a": {"present": "yes"}}}]})),
     "tasks[0].expect.calls[0].args.a.present", "true or false"),
    (_doc(_task(expect={"outcome": "resolved", "calls": [{"tool": "t", "args": {"a": {"ltee": 3}}}]})),
     "tasks[0].expect.calls[0].args.a.ltee", "misspelt matcher key (did you mean 'lte'?)"),
])
def test_cross_references_are_checked(tmp_path: Path, doc: dict[str, Any], key: str, words: str) -> None:
    problems = _problems(tmp_path, doc)
    assert any(p.startswith(key) and words in p for p in problems), problems


def test_cross_reference_problems_have_lines(tmp_path: Path) -> None:
    problems = _problems(tmp_path, _doc(_task(), _task(faults="nope")))
    assert problems[0].startswith("tasks[1].id (line ") and problems[1].startswith("tasks[1].faults (line ")


def test_every_problem_is_reported_at_once_with_lines(tmp_path: Path) -> None:
    doc = _doc(_task(expect={"outcome": "x"}), _task(id="t2", bogus=1))
    problems = _problems(tmp_path, doc)
    assert len(problems) == 2
    assert "tasks[0].expect.outcome (line " in problems[0] and "tasks[1].bogus (line " in problems[1]


@pytest.mark.parametrize(("text", "words"), [
    ("suite: [unclosed", "not valid YAML"),
    ("suite: a\nsuite: b\nversion: '1'\ntasks: []\n", "duplicate key"),
    ("- just\n- a list\n", "expected a mapping"),
    ("suite: !!python/object:os.system x\n", "not valid YAML"),
])
def test_bad_yaml(tmp_path: Path, text: str, words: str) -> None:
    assert any(words in p for p in _problems(tmp_path, text))


def test_unreadable_and_unknown_files(tmp_path: Path) -> None:
    with pytest.raises(SuiteFileError, match="cannot read"):
        load_suite(tmp_path / "missing.yaml")
    assert any("unknown suite file type '.txt'" in p for p in _problems(tmp_path, "x", "suite.txt"))


def test_jsonl_one_task_per_line(tmp_path: Path) -> None:
    lines = [json.dumps(_task(workflow="support")), "", json.dumps(_task(id="t2", workflow="itdesk"))]
    s = load_suite(_write(tmp_path, "\n".join(lines) + "\n", "regress.jsonl"))
    assert (s.name, s.version, [t.workflow for t in s.tasks]) == ("regress", "1", ["support", "itdesk"])
    bad = "\n".join([json.dumps(_task(workflow="support")), "", json.dumps(_task(id="t2")), "{oops"])
    problems = _problems(tmp_path, bad, "bad.jsonl")
    assert problems == ["tasks[2] (line 4): not valid JSON: Expecting property name enclosed in double quotes "
                        "at column 2; write one task object per line."]
    problems = _problems(tmp_path, "\n".join([*lines[:2], json.dumps(_task(id="t2"))]), "nowf.jsonl")
    assert problems == ["tasks[1].workflow (line 3): the task has no workflow; give it a workflow."]
    problems = _problems(tmp_path, json.dumps(_task(workflow="support", expect={"outcome": "no"})), "o.jsonl")
    assert problems[0].startswith("tasks[0].expect.outcome (line 1): 'no' is not one of")


def test_committed_schema_is_in_sync() -> None:
    committed = json.loads(SCHEMA_FILE.read_text(encoding="utf-8"))
    assert committed == json.loads(json.dumps(suite_json_schema())), (
        "evals/suite.schema.json is stale: regenerate it from tether.evals.suite.suite_json_schema()")
    assert set(committed["properties"]) >= {"suite", "version", "tasks", "fault_profiles", "defaults", "prices"}


def test_resolve_suite(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from tether.graphs import registry

    p = _write(tmp_path, _doc())
    assert resolve_suite(p) == p
    with pytest.raises(SuiteFileError, match="no workflow of that name ships a suite"):
        resolve_suite("no-such-workflow")
    spec = dataclasses.replace(registry.find_workflow("support"), name="support-suited", suite=p)
    monkeypatch.setitem(registry._REGISTERED, "support-suited", spec)
    assert resolve_suite("support-suited") == p
    with pytest.raises(SuiteFileError, match="support-suited"):
        resolve_suite(str(tmp_path / "nope.yaml"))


# ---------------------------------------------------------------- matchers

_scalars = st.none() | st.booleans() | st.integers(-10**6, 10**6) | st.floats(allow_nan=False, allow_infinity=False,
                                                                             width=32) | st.text(max_size=6)
_json = st.recursive(_scalars, lambda inner: st.lists(inner, max_size=3)
                     | st.dictionaries(st.text(alphabet="abcxyz", max_size=3), inner, max_size=3), max_leaves=8)


def _canonical(v: Any) -> str:
    def norm(x: Any) -> Any:
        if isinstance(x, float) and x.is_integer():
            return int(x)
        if isinstance(x, dict):
            return {k: norm(y) for k, y in x.items()}
        if isinstance(x, list | tuple):
            return [norm(y) for y in x]
        return x

    return json.dumps(norm(v), sort_keys=True)


@given(_json, _json)
def test_a_literal_matches_exactly_its_json_equal_values(literal: Any, value: Any) -> None:
    if isinstance(literal, dict) and any(k in MATCHER_KEYS for k in literal):
        return  # a mapping with operator keys is an operator matcher, not a literal
    assert matches(literal, value) == (_canonical(literal) == _canonical(value))
    assert matches(literal, json.loads(json.dumps(literal)))  # the JSON round trip of itself


@given(_scalars)
def test_json_equality_never_confuses_booleans_numbers_and_strings(v: Any) -> None:
    if isinstance(v, bool):
        assert not json_equal(v, int(v)) and not json_equal(v, str(v).lower())
    elif isinstance(v, int | float) and not (isinstance(v, float) and math.isinf(v)):
        assert json_equal(v, float(v)) and not json_equal(v, str(v))


@given(st.floats(-1e6, 1e6, allow_nan=False), st.floats(-1e6, 1e6, allow_nan=False))
def test_ordering_operators_follow_the_numbers(v: float, bound: float) -> None:
    assert matches({"lt": bound}, v) == (v < bound) and matches({"gte": bound}, v) == (v >= bound)
    assert matches({"gt": bound, "lte": bound}, v) is False
    assert not matches({"lt": bound}, str(v)) and not matches({"lt": bound}, True)


def test_operators_and_absent_arguments() -> None:
    assert matches({"in": ["a", 2]}, 2.0) and not matches({"in": ["a"]}, "b")
    assert matches({"contains": "kettle"}, "damaged kettle") and matches({"contains": "x"}, ["y", "x"])
    assert matches({"contains": "phone"}, {"phone": "1"}) and not matches({"contains": "k"}, 3)
    assert matches({"regex": r"^O-\d+$"}, "O-20417") and not matches({"regex": "^O"}, 20417)
    assert matches({"ne": 3}, 4) and not matches({"ne": 3}, 3.0)
    assert matches({"present": True}, "x") and matches({"present": False}) and matches({"present": False}, None)
    assert not matches({"present": True}) and not matches({"ne": 3}) and not matches("x")
    call = CallSpec(tool="update_crm_record", args={"fields.phone": {"regex": "^\\+1"}, "fields": {"present": True}})
    assert call.matches("update_crm_record", {"fields": {"phone": "+1-555"}})
    assert not call.matches("update_crm_record", {"fields": {"email": "a@b"}})
    assert not call.matches("issue_refund", {"fields": {"phone": "+1-555"}})
