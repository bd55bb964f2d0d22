"""The support desk cites evidence whichever retrieval backend serves its knowledge base."""

from __future__ import annotations

import sqlite3

import pytest
from helpers import REFUND_EVIDENCE

from tether import KnowledgeStore
from tether.agents.support.desk import KB_DIR, SupportDesk, open_knowledge_base, world_path
from tether.config import Home
from tether.errors import ConfigError
from tether.models import ModelConfig

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("kind", ["vector", "hybrid"])
def test_refund_cites_policy_retrieved_from_chroma(
    home: Home, kind: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TETHER_RETRIEVAL", kind)
    with SupportDesk(home=home, models=ModelConfig()) as desk:
        r = desk.run(
            "I need a refund of $18 for the damaged kettle in order O-20417",
            customer_id="C-1042",
            thread_id=kind,
        )
        executed = [
            e for e in desk.ledger.events(kind) if e.event == "executed" and e.tool == "search_policy"
        ]
    assert r.status == "resolved"
    assert executed and all(c.startswith("KB-") for c in executed[0].evidence)
    assert (home.root / "kb" / "support" / "chroma").is_dir()  # embedded, persistent Chroma in $TETHER_HOME
    with sqlite3.connect(world_path(home)) as db:
        (cited,) = db.execute(
            "SELECT evidence FROM refunds WHERE idempotency_key LIKE ?", (f"{kind}:%",)
        ).fetchone()
    assert cited.startswith("KB-REFUND@v3#")


def test_semantic_search_finds_what_keywords_miss(home: Home) -> None:
    kb = open_knowledge_base("vector", home)
    hits = kb.search("my package went missing")
    assert hits and hits[0].doc_id == "KB-SHIP"


def test_the_desk_kb_is_the_shipped_files_ingested_on_first_use(home: Home) -> None:
    kb = open_knowledge_base("bm25", home)
    assert isinstance(kb, KnowledgeStore) and kb.mode == "bm25"
    assert kb.last_report is not None and kb.last_report.documents_added == len(list(KB_DIR.glob("*.md")))
    assert {d.doc_id for d in kb.documents()} == {"KB-REFUND", "KB-SHIP", "KB-WARRANTY", "KB-PRIVACY"}
    [hit, *_] = kb.search("refund for a damaged item")
    assert hit.evidence_id == REFUND_EVIDENCE and hit.source == "refund-policy.md" and hit.trust == "internal"
    again = open_knowledge_base("bm25", home)
    assert again.last_report is not None and not again.last_report.changed


def test_unknown_retrieval_setting_is_refused(home: Home, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TETHER_RETRIEVAL", "grep")
    with pytest.raises(ConfigError, match="TETHER_RETRIEVAL"):
        SupportDesk(home=home, models=ModelConfig())
