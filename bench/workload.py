"""One governed request and its bare twin, per request type and checkpointer, on fresh state.

Request types (the support desk, subject C-1042): ``read`` (a policy question), ``write`` (a
refund the policy allows) and ``approval`` (a refund that needs a lead's approval: the run pauses,
the decision is recorded and the thread resumes). ``Side`` builds either the governed workflow
or its bare twin (``bench/bare.py``) over one data directory and one checkpointer.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, Literal

from bare import bare_graph
from langchain_core.messages import HumanMessage
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.types import Command

from tether import (
    Approve,
    BuildContext,
    Home,
    Ledger,
    ModelConfig,
    Session,
    Subject,
    find_workflow,
    open_checkpointer,
)
from tether.checkpoints.checkpointer import serializer

Kind = Literal["read", "write", "approval"]
Saver = Literal["none", "memory", "sqlite", "postgres"]
KINDS: tuple[Kind, ...] = ("read", "write", "approval")
REQUESTS: dict[Kind, str] = {
    "read": "How long does standard shipping take? shipping policy",
    "write": "I need a refund of $18 for the damaged kettle in order O-20417",
    "approval": "Please refund $40 for order O-20417, the kettle arrived damaged",
}
SUBJECT = "C-1042"


def _needs_human(tool: str, args: Mapping[str, Any]) -> bool:
    """Where the support policy asks for a lead: the bare twin pauses at the same place."""
    return tool == "issue_refund" and float(args.get("amount_usd") or 0) > 25


@contextlib.contextmanager
def _saver(kind: Saver, home: Home, pg_url: str | None) -> Iterator[Any]:
    if kind == "none":
        yield None
    elif kind == "memory":
        yield InMemorySaver(serde=serializer())
    elif kind == "sqlite":
        with open_checkpointer(home.checkpoint_url) as s:
            yield s
    else:
        assert pg_url, "postgres needs a URL"
        with open_checkpointer(pg_url) as s:
            yield s


class Side:
    """A governed or bare app over a fresh data directory; ``request(kind)`` runs one request."""

    def __init__(self, *, governed: bool, saver: Saver, root: Path, pg_url: str | None = None) -> None:
        self.governed, self.saver_kind = governed, saver
        self._stack = contextlib.ExitStack()
        home = Home(root=root).ensure()
        ledger_url = pg_url if (pg_url and saver == "postgres") else home.ledger_url
        ledger = self._stack.enter_context(Ledger.open(ledger_url))
        spec = find_workflow("support")
        wf = spec.build(BuildContext(home=home, ledger=ledger, policy=spec.load_policy(None), models=ModelConfig()))
        self._stack.callback(wf.close)
        self.workflow = wf
        saver_obj = self._stack.enter_context(_saver(saver, home, pg_url))
        self.session: Session | None = None
        if governed and saver_obj is not None:
            self.session = Session(workflow=wf, checkpointer=saver_obj)
        elif governed:  # no checkpointer: no pausing either, on both sides
            self.app = wf.compile(checkpointer=None)
        else:
            self.app = bare_graph(wf, needs_human=_needs_human).compile(checkpointer=saver_obj)

    def close(self) -> None:
        self._stack.close()

    def reset(self) -> None:
        """Undo the refunds earlier requests issued (call it outside the timing): otherwise the
        order runs out of refundable money after a few requests and later "write" requests time
        a failing refund, which the two sides handle differently."""
        db = self.workflow.resources.db
        with db:
            db.execute("DELETE FROM refunds")

    def request(self, kind: Kind) -> str:
        """Run one request on a new thread; returns its final status."""
        thread = uuid.uuid4().hex[:12]
        if kind == "approval" and self.saver_kind == "none":
            raise ValueError("a request that pauses for approval needs a checkpointer")
        if self.governed and self.session is None:
            out = self.app.invoke({"messages": [HumanMessage(REQUESTS[kind])], "subject": Subject(id=SUBJECT),
                                   "designate": ()}, {"configurable": {"thread_id": thread}, "recursion_limit": 100})
            return "resolved" if out.get("outcome") is not None else "unfinished"
        if self.session is not None:
            r = self.session.run(REQUESTS[kind], thread_id=thread, subject=SUBJECT)
            if kind == "approval" and r.waiting_for:
                r = self.session.decide(r.waiting_for[0].approval_id, Approve(approver="lead@example.com"))
            return str(r.status)
        cfg: dict[str, Any] = {"configurable": {"thread_id": thread}, "recursion_limit": 100}
        durability = {} if self.saver_kind == "none" else {"durability": "sync"}
        out = self.app.invoke({"messages": [HumanMessage(REQUESTS[kind])], "subject": SUBJECT}, cfg, **durability)
        if kind == "approval":
            out = self.app.invoke(Command(resume=True), cfg, **durability)
        return "resolved" if out.get("messages") else "empty"
