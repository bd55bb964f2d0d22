"""Entry point for LangGraph Studio / ``langgraph dev`` (see ``langgraph.json``).

The server supplies its own checkpointer, so the graph is compiled without one. Inputs:
``{"messages": [{"role": "user", "content": "..."}], "customer_id": "C-1042"}``. Approvals
arrive as interrupts carrying an ``ApprovalRequest``; resume with
``{"kind": "approve", "approver": "you"}``, ``{"kind": "reject", "approver": "you",
"reason": "..."}`` or ``{"kind": "edit", "approver": "you", "args": {"amount_usd": 20}}``.
"""

from __future__ import annotations

import asyncio
from typing import Any

from tether.agents.models import ModelConfig
from tether.agents.support.desk import support_workflow
from tether.checkpoints.ledger import Ledger
from tether.config import Home

__all__ = ["make_graph"]


def _build() -> Any:
    home = Home.from_env().ensure()
    ledger = Ledger.open(home.ledger_url)
    return support_workflow(home=home, ledger=ledger, models=ModelConfig.from_env()).compile()


async def make_graph() -> Any:
    """Graph factory for the LangGraph server: the support desk over ``$TETHER_HOME``.

    Opening files is blocking work, so it runs in a worker thread, off the server's event loop.
    """
    return await asyncio.to_thread(_build)
