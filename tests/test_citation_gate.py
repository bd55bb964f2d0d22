"""The citation gate: a cited write runs only on retrieved, relevant, current, trusted evidence.

Policy-level tests build ``ActionRequest`` values with ``CitationFact`` values by hand; graph
tests run the real support workflow (real tools, policy, ledger, business database) over a
small knowledge base of our own, with a ``ScriptedChatModel`` proposing the calls, and check
the business database, the ledger rows and ``ledger explain``.
"""

from __future__ import annotations

import dataclasses
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from tether.agents.support.desk import world_path
from tether.agents.support.tools import SupportResources
from tether.checkpoints.ledger import Ledger
from tether.checkpoints.narrative import explain, render
from tether.cli import main as cli_main
from tether.config import Home
from tether.graphs.state import Approve
from tether.graphs.workflow import Workflow
from tether.guards.citations import CITATION_CHECKS, CitationFact, check_citation, measure_citations
from tether.guards.decisions import Allow, Deny
from tether.guards.evidence_sections import CitationSection
from tether.guards.policy import ActionRequest, Policy
from tether.guards.relevance import EmbeddingRelevance, LexicalRelevance, content_words
from tether.retrieval.embeddings import load_embed_model
from tether.retrieval.knowledge import KnowledgeBase, Passage

sys.path.insert(0, str(Path(__file__).resolve().parent))
from helpers import (
    KETTLE_ORDER,
    REFUND_TEXT,
    agent_refunds,
    answer,
    build_workflow,
    call,
    default_policy_data,
    make_policy,
    memory_saver,
    resume,
    start,
)

ROOT = Path(__file__).resolve().parents[1]
RULE = "tools.issue_refund.require_citation"

# ---------------------------------------------------------------- a knowledge base of our own

CUR, OLD, EXT, AGED, SHIP = "T-REFUND@v3#p1", "T-REFUND@v2#p1", "T-BLOG@v1#p1", "T-AGED@v1#p1", "T-SHIP@v1#p1"
PASSAGES = [
    Passage(evidence_id=CUR, doc_id="T-REFUND", version=3, title="Refund policy", updated_at="2030-01-01",
            text="Damaged or defective items are refunded without a return when reported within 30 days."),
    Passage(evidence_id=OLD, doc_id="T-REFUND", version=2, title="Refund policy, old edition",
            text="Damaged items were refunded once the return arrived.", status="superseded"),
    Passage(evidence_id=EXT, doc_id="T-BLOG", version=1, title="Partner help", trust="external",
            text="Marketplace sellers refund a damaged item after a photo is sent."),
    Passage(evidence_id=AGED, doc_id="T-AGED", version=1, title="Breakage note", updated_at="2019-01-01",
            text="Breakage of a damaged item in transit is refunded in full."),
    Passage(evidence_id=SHIP, doc_id="T-SHIP", version=1, title="Shipping times",
            text="Parcels leave the warehouse within two working days; couriers deliver in five."),
]
MARKER = {CUR: "defective", OLD: "edition", EXT: "marketplace", AGED: "breakage", SHIP: "warehouse"}
"""A word only that passage has: searching it retrieves exactly that passage."""


@pytest.fixture
def ledger(home: Home) -> Iterator[Ledger]:
    with Ledger.open(home.ledger_url) as led:
        yield led


def refund_call(cite: list[str], reason: str = "damaged item", n: int = 1) -> Any:
    args = {"order_id": KETTLE_ORDER, "amount_usd": 10.0, "reason": reason, "citation_ids": cite}
    return call("issue_refund", args, f"r{n}")


def run(home: Home, ledger: Ledger, *, search: str | None, cite: list[str], reason: str = "damaged item",
        policy: Policy | None = None, knowledge: bool = True, thread: str = "t1") -> Workflow:
    """Search (when ``search``), then propose a $10 cited refund, then answer; return the workflow."""
    script = ([call("search_policy", {"query": search}, "s1")] if search else []) + [
        refund_call(cite, reason), answer("done")]
    wf = build_workflow(home, ledger, policy=policy, script=script)
    kb = KnowledgeBase(PASSAGES)
    wf = dataclasses.replace(wf, resources=SupportResources(db=wf.resources.db, kb=kb),
                             knowledge=kb if knowledge else None)
    try:
        start(wf.compile(checkpointer=memory_saver()), REFUND_TEXT, thread)
    finally:
        wf.close()
    return wf


def story(ledger: Ledger, thread: str = "t1") -> str:
    return render(explain(thread, ledger.events(thread)))


def proposed_refund(ledger: Ledger, thread: str = "t1") -> Any:
    (row,) = [e for e in ledger.events(thread) if e.event == "proposed" and e.tool == "issue_refund"]
    return row


# ---------------------------------------------------------------- through the compiled graph

FAILURES = [  # (check, search, cite, reason, policy overrides, knowledge base attached)
    ("missing", "defective", [], "damaged item", None, True),
    ("missing", "defective", ["T-NOPE@v9#p9"], "damaged item", None, True),
    ("missing", "defective", ["see the refund policy"], "damaged item", None, False),
    ("foreign", "defective", [SHIP], "damaged item", None, True),
    ("foreign", "defective", ["KB-MADE-UP#p9"], "damaged item", None, False),
    ("irrelevant", "defective", [CUR], "customer wants a loyalty discount code", None, True),
    ("stale", "edition", [OLD], "damaged item", None, True),
    ("stale", "breakage", [AGED], "damaged item", {"citation": {"max_age_days": 365}}, True),
    ("untrusted", "marketplace", [EXT], "damaged item", None, True),
]


@pytest.mark.parametrize(("check", "search", "cite", "reason", "override", "knowledge"), FAILURES,
                         ids=[f"{f[0]}-{i}" for i, f in enumerate(FAILURES)])
def test_a_failing_citation_blocks_the_write_and_is_recorded(
    home: Home, ledger: Ledger, check: str, search: str, cite: list[str], reason: str,
    override: dict[str, Any] | None, knowledge: bool,
) -> None:
    policy = make_policy(tools={"issue_refund": override}) if override else None
    run(home, ledger, search=search, cite=cite, reason=reason, policy=policy, knowledge=knowledge)
    assert agent_refunds(world_path(home)) == []  # the write never ran
    assert not [e for e in ledger.events("t1") if e.tool == "issue_refund" and e.event == "executing"]
    row = proposed_refund(ledger)
    assert row.decision == "deny" and row.rule_id == RULE
    assert f"citation check '{check}' failed" in (row.detail or "")
    if cite:
        assert row.citations is not None and [c["id"] for c in row.citations] == cite
        assert row.citations[0]["ok"] is False and row.citations[0]["failed"] == check
    text = story(ledger)
    assert f"by rule {RULE}" in text
    assert f"check '{check}' failed" in text


def test_a_valid_citation_executes_and_records_its_verdict(home: Home, ledger: Ledger) -> None:
    run(home, ledger, search="defective", cite=[CUR])
    assert [r[1:3] for r in agent_refunds(world_path(home))] == [(KETTLE_ORDER, 10.0)]
    row = proposed_refund(ledger)
    assert row.decision == "allow"
    (cited,) = row.citations
    assert cited["id"] == CUR and cited["ok"] is True and cited["failed"] is None
    assert cited["retrieved"] is True and cited["status"] == "current" and cited["trust"] == "internal"
    assert cited["relevance"] == 1.0  # "damaged item": both words are in the passage
    (executed,) = [e for e in ledger.events("t1") if e.event == "executed" and e.tool == "issue_refund"]
    assert executed.citations is not None and executed.citations[0]["ok"] is True
    text = story(ledger)
    assert "citations: 1 of 1 valid" in text and f"{CUR}: valid" in text


def test_the_check_is_repeated_at_execution_time(home: Home, ledger: Ledger) -> None:
    """A call approved under one policy whose citation fails the policy in force when it runs
    is refused by act, and the execution-time verdict is recorded."""
    script = [call("search_policy", {"query": "defective"}, "s1"),
              call("issue_refund", {"order_id": KETTLE_ORDER, "amount_usd": 40.0, "reason": "damaged item",
                                    "citation_ids": [CUR]}, "r1"), answer("done")]
    wf = build_workflow(home, ledger, script=script)
    kb = KnowledgeBase(PASSAGES)
    wf = dataclasses.replace(wf, resources=SupportResources(db=wf.resources.db, kb=kb), knowledge=kb)
    saver = memory_saver()
    start(wf.compile(checkpointer=saver), REFUND_TEXT, "t1")
    assert proposed_refund(ledger).decision == "require_approval"
    strict = make_policy(tools={"issue_refund": {"citation": {"trust": ["external"]}}})
    later = dataclasses.replace(wf, policy=strict)
    try:
        resume(later.compile(checkpointer=saver), "t1", Approve(approver="lead"))
    finally:
        later.close()
    assert agent_refunds(world_path(home)) == []
    (failed,) = [e for e in ledger.events("t1") if e.event == "failed" and e.tool == "issue_refund"]
    assert failed.rule_id == RULE and "'untrusted'" in (failed.error or "")
    assert failed.citations is not None and failed.citations[0]["failed"] == "untrusted"
    assert "check 'untrusted' failed" in story(ledger)


def test_a_section_alone_turns_the_gate_on_under_its_own_rule_id(home: Home, ledger: Ledger) -> None:
    policy = make_policy(tools={"issue_refund": {"require_citation": False, "citation": {"min_relevance": 0.5}}})
    run(home, ledger, search="defective", cite=[CUR], reason="customer wants a loyalty discount code",
        policy=policy)
    row = proposed_refund(ledger)
    assert row.decision == "deny" and row.rule_id == "tools.issue_refund.citation"
    assert "'irrelevant'" in (row.detail or "")
    assert agent_refunds(world_path(home)) == []


def test_the_commands_show_citation_validity(home: Home, ledger: Ledger, monkeypatch: pytest.MonkeyPatch,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    run(home, ledger, search="marketplace", cite=[EXT])
    monkeypatch.setenv("TETHER_HOME", str(home.root))
    assert cli_main(["ledger", "explain", "t1"]) == 0
    out = capsys.readouterr().out
    assert "citations: 0 of 1 valid" in out and f"{EXT}: INVALID, check 'untrusted' failed" in out
    policy = str(ROOT / "agents" / "support" / "agent-policy.yaml")
    args = '{"order_id": "O-20417", "amount_usd": 10, "reason": "damaged", "citation_ids": ["T-A@v1#p1"]}'
    assert cli_main(["policy", "explain", policy, "--tool", "issue_refund", "--args", args]) == 0
    out = capsys.readouterr().out
    assert "decision: allow" in out and "'irrelevant', 'stale' and 'untrusted'" in out and "not" in out


# ---------------------------------------------------------------- Policy.evaluate


def fact(i: str = CUR, **kw: Any) -> CitationFact:
    base: dict[str, Any] = {"evidence_id": i, "retrieved": True, "known": True, "doc_id": "T-REFUND",
                            "version": 3, "status": "current", "trust": "internal", "relevance": 0.9,
                            "age_days": 10.0}
    return CitationFact(**{**base, **kw})


def request(*facts: CitationFact, cited: tuple[str, ...] | None = None) -> ActionRequest:
    ids = tuple(f.evidence_id for f in facts) if cited is None else cited
    return ActionRequest(tool="issue_refund", amount_usd=10.0, citations=ids, citation_facts=facts,
                         retrieved_evidence=frozenset(f.evidence_id for f in facts if f.retrieved))


SUPPORT = make_policy()
AGED_POLICY = make_policy(tools={"issue_refund": {"citation": {"max_age_days": 30}}})


@pytest.mark.parametrize(("check", "action", "policy"), [
    ("missing", request(), SUPPORT),
    ("missing", request(fact(retrieved=False, known=False)), SUPPORT),
    ("foreign", request(fact(retrieved=False)), SUPPORT),
    ("irrelevant", request(fact(relevance=0.1)), SUPPORT),
    ("irrelevant", request(fact(relevance=None)), SUPPORT),
    ("stale", request(fact(status="superseded")), SUPPORT),
    ("stale", request(fact(status="retired")), SUPPORT),
    ("stale", request(fact(age_days=31.0)), AGED_POLICY),
    ("stale", request(fact(age_days=None)), AGED_POLICY),
    ("untrusted", request(fact(trust="external")), SUPPORT),
])
def test_policy_denies_each_failed_check(check: str, action: ActionRequest, policy: Policy) -> None:
    d = policy.evaluate(action)
    assert isinstance(d, Deny) and d.rule_id == RULE
    assert d.reason.startswith(f"citation check '{check}' failed")
    if action.citations:
        assert action.citations[0] in d.reason


def test_policy_allows_a_valid_citation_and_names_every_failure() -> None:
    assert isinstance(SUPPORT.evaluate(request(fact())), Allow)
    d = SUPPORT.evaluate(request(fact(), fact("T-X@v1#p1", trust="external"), fact("T-Y@v1#p1", status="retired")))
    assert isinstance(d, Deny)
    assert "'untrusted' failed for T-X@v1#p1" in d.reason and "also 'stale' for T-Y@v1#p1" in d.reason


def test_rule_ids_follow_what_turns_the_gate_on() -> None:
    data = default_policy_data()
    rule = data["tools"]["issue_refund"]
    rule.pop("require_citation")
    rule["risk"] = "financial"
    data["tiers"] = {"financial": {"require_citation": True}}
    tiered = Policy.from_text(yaml.safe_dump(data), source="<tier>")
    d = tiered.evaluate(request(fact(trust="external")))
    assert isinstance(d, Deny) and d.rule_id == "tiers.financial.require_citation"
    rule.pop("risk")
    data.pop("tiers")
    rule.pop("citation", None)
    assert isinstance(Policy.from_text(yaml.safe_dump(data)).evaluate(request(fact(trust="external"))), Allow)


def test_the_articles_policy_uses_the_section_defaults() -> None:
    article = Policy.from_yaml(ROOT / "tests" / "fixtures" / "article-agent-policy.yaml")
    gate = article.citation_gate("issue_refund")
    assert gate is not None and gate.rule_id == RULE and gate.section == CitationSection()
    assert isinstance(article.evaluate(request(fact(relevance=CitationSection().min_relevance))), Allow)
    d = article.evaluate(request(fact(relevance=0.0)))
    assert isinstance(d, Deny) and "'irrelevant'" in d.reason


def test_without_facts_only_retrieval_is_checked_as_before() -> None:
    legacy = ActionRequest(tool="issue_refund", amount_usd=10.0, citations=(CUR,), retrieved_evidence=frozenset({CUR}))
    assert isinstance(SUPPORT.evaluate(legacy), Allow)
    foreign = legacy.model_copy(update={"retrieved_evidence": frozenset()})
    d = SUPPORT.evaluate(foreign)
    assert isinstance(d, Deny) and "'foreign'" in d.reason


# ---------------------------------------------------------------- the property

SECTIONS = [
    CitationSection(),
    CitationSection(min_relevance=0.0),
    CitationSection(min_relevance=0.5, max_age_days=30, trust=("internal", "external")),
    CitationSection(min_relevance=0.25, trust=("external",)),
]
POLICIES = [make_policy(tools={"issue_refund": {"citation": s.model_dump(mode="json")}}) for s in SECTIONS]
IDS = ["T-A@v1#p1", "T-B@v2#p3", "T-C@v1#p2"]

facts_st = st.builds(
    CitationFact,
    evidence_id=st.sampled_from(IDS),
    retrieved=st.booleans(),
    known=st.booleans(),
    status=st.sampled_from(["current", "superseded", "retired", None]),
    trust=st.sampled_from(["internal", "external", None]),
    age_days=st.one_of(st.none(), st.floats(min_value=0, max_value=100)),
    relevance=st.one_of(st.none(), st.floats(min_value=0, max_value=1), st.sampled_from([0.0, 0.2, 0.25, 0.5])),
)


def passes(f: CitationFact, s: CitationSection) -> bool:
    """The five checks, written out independently of the implementation."""
    found = f.retrieved  # missing and foreign
    relevant = s.min_relevance == 0 or (f.relevance is not None and f.relevance >= s.min_relevance)
    current = f.status in ("current", None) and (
        s.max_age_days is None or (f.age_days is not None and f.age_days <= s.max_age_days))
    trusted = f.trust in s.trust
    return found and relevant and current and trusted


@settings(max_examples=300, deadline=None)
@given(st.lists(facts_st, max_size=3, unique_by=lambda f: f.evidence_id), st.integers(0, len(SECTIONS) - 1))
def test_allowed_iff_every_citation_passes_all_five_checks(facts: list[CitationFact], which: int) -> None:
    section, policy = SECTIONS[which], POLICIES[which]
    d = policy.evaluate(request(*facts))
    expected = bool(facts) and all(passes(f, section) for f in facts)
    assert isinstance(d, Allow) == expected, (d.reason, facts)
    if not expected:
        assert d.rule_id == RULE and any(f"citation check '{c}' failed" in d.reason for c in CITATION_CHECKS)
    for f in facts:
        assert check_citation(f, section).ok == passes(f, section)


# ---------------------------------------------------------------- measuring facts and relevance


def test_measure_tells_missing_from_foreign_and_reads_the_evidence() -> None:
    kb = KnowledgeBase(PASSAGES)
    found = kb.search("defective")
    facts = measure_citations([CUR, SHIP, "T-NOPE@v1#p1"], found, reason="damaged item",
                              scorer=LexicalRelevance(), knowledge=kb)
    cur, ship, nope = facts
    assert cur.retrieved and cur.relevance == 1.0 and cur.doc_id == "T-REFUND" and cur.age_days is not None
    assert not ship.retrieved and ship.known and not nope.known
    assert measure_citations([CUR], found, reason=None, scorer=LexicalRelevance())[0].relevance is None


WORDS = st.text(alphabet="abcdefghijklmnopqrstuvwxyz ", min_size=0, max_size=80)


@settings(max_examples=200, deadline=None)
@given(WORDS, WORDS)
def test_lexical_relevance_is_bounded_deterministic_and_one_on_itself(a: str, b: str) -> None:
    s = LexicalRelevance()
    x = s.score(a, b)
    assert 0.0 <= x <= 1.0 and x == s.score(a, b)
    if content_words(a):
        assert s.score(a, a) == 1.0
    if not content_words(a) & content_words(b):
        assert x == 0.0


def test_lexical_relevance_on_real_sentences() -> None:
    s = LexicalRelevance()
    passage = PASSAGES[0].text
    assert s.score("damaged item", passage) == 1.0  # "damaged"/"Damaged", "item"/"items"
    assert s.score("quarterly tax filing deadline", passage) == 0.0
    assert s.score("the", passage) == 0.0  # stop words only: nothing to support


# ---------------------------------------------------------------- the embedding scorer (bundled MiniLM)


@pytest.fixture(scope="module")
def embedding() -> EmbeddingRelevance:
    pytest.importorskip("llama_index.embeddings.huggingface")
    return EmbeddingRelevance(embed_model=load_embed_model())


def test_embedding_relevance_on_the_bundled_model(embedding: EmbeddingRelevance) -> None:
    passage = f"{PASSAGES[0].title}. {PASSAGES[0].text}"
    same = embedding.score(passage, passage)
    related = embedding.score("customer refund request for a damaged item", passage)
    unrelated = embedding.score("beans stale", passage)
    assert same == pytest.approx(1.0, abs=1e-3)
    assert unrelated < 0.1 < 0.3 < related <= 1.0
    assert embedding.score("beans stale", passage) == unrelated  # deterministic (and cached)
    assert embedding.score("", passage) == 0.0


def test_a_workflow_can_choose_the_embedding_scorer(home: Home, ledger: Ledger,
                                                    embedding: EmbeddingRelevance) -> None:
    wf = build_workflow(home, ledger, script=[call("search_policy", {"query": "defective"}, "s1"),
                                              refund_call([CUR], "customer refund request"), answer("done")])
    kb = KnowledgeBase(PASSAGES)
    wf = dataclasses.replace(wf, resources=SupportResources(db=wf.resources.db, kb=kb), knowledge=kb,
                             relevance=embedding)
    try:
        start(wf.compile(checkpointer=memory_saver()), REFUND_TEXT, "t1")
    finally:
        wf.close()
    (cited,) = proposed_refund(ledger).citations
    expected = embedding.score("customer refund request", f"{PASSAGES[0].title}. {PASSAGES[0].text}")
    assert cited["relevance"] == round(expected, 4) and cited["ok"] is True
    assert len(agent_refunds(world_path(home))) == 1
