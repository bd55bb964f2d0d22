"""Graph factories for LangGraph Studio / ``langgraph dev`` (see ``langgraph.json``).

The server supplies its own checkpointer, so the graph is compiled without one; the ledger
lives in ``$TETHER_HOME``. Input: ``{"messages": [{"role": "user", "content": "..."}],
"subject": {"id": "C-1042"}}``. Approvals arrive as interrupts carrying an
``ApprovalRequest``; resume with ``{"kind": "approve", "approver": "you"}``, ``{"kind":
"reject", "approver": "you", "reason": "..."}`` or ``{"kind": "edit", "approver": "you",
"args": {...}}``. Anything else is refused with the accepted shapes, and a decision that
differs from one already recorded (say, from ``tether approve``) is refused too.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from tether.checkpoints.ledger import Ledger
from tether.config import Home
from tether.graphs.registry import BuildContext, find_workflow
from tether.models import ModelConfig

__all__ = ["studio_factory"]


def studio_factory(workflow: str) -> Callable[[], Awaitable[Any]]:
    """An async graph factory for the named workflow, for a ``langgraph.json`` entry."""

    def build() -> Any:
        spec = find_workflow(workflow)
        home = Home.from_env().ensure()
        ctx = BuildContext(home=home, ledger=Ledger.open(home.ledger_url), policy=spec.load_policy(),
                           models=ModelConfig.from_env())
        return spec.build(ctx).compile()

    async def make_graph() -> Any:
        # opening files is blocking work: keep it off the server's event loop
        return await asyncio.to_thread(build)

    return make_graph
