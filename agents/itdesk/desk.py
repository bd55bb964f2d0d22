"""The governed IT access desk, written only with tether's public names.

``WORKFLOW`` is its ``WorkflowSpec`` (installed under the entry point name ``itdesk``);
``itdesk_workflow(...)`` builds the ``Workflow``. A run acts for the requesting employee
(``Subject(id="P-1001")``); the agent runs as the ``helpdesk`` principal unless the run says
``security``.
"""

from __future__ import annotations

from pathlib import Path

from tether import (
    BuildContext,
    EscalationAction,
    Home,
    Ledger,
    ModelConfig,
    Policy,
    Route,
    RuntimeLimits,
    Workflow,
    WorkflowSpec,
    load_chat_model,
    load_prompt,
    with_routing,
)
from tether.agents.itdesk.corpus import itdesk_corpus
from tether.agents.itdesk.demo import SCENARIOS
from tether.agents.itdesk.knowledge import DeskKnowledge, shipped_knowledge
from tether.agents.itdesk.models import REASONING_ID, ROUTER_ID, register_offline_models
from tether.agents.itdesk.tools import ItDeskResources, build_itdesk_tools
from tether.agents.itdesk.world import connect_world, world_path

__all__ = ["DEFAULT_PRINCIPAL", "ITDESK_ROUTES", "POLICY_PATH", "WORKFLOW", "itdesk_workflow", "world_path"]

_HERE = Path(__file__).parent
POLICY_PATH = _HERE / "agent-policy.yaml"
ROUTING_EXAMPLES = _HERE / "routing-examples.yaml"
PROMPT = load_prompt(_HERE / "prompts" / "system.md")
PROMPT_VERSION = PROMPT.version
DEFAULT_PRINCIPAL = "helpdesk"
"""The least-privileged identity: what a run gets when its configuration names none."""
DESCRIPTION = ("IT access desk: group access for approved requests, MFA resets, recovery email, "
               "access reports, tickets and policy questions")
SYSTEM_PROMPT = PROMPT.text
_H = "handoff_to_human"
ITDESK_ROUTES: tuple[Route, ...] = (
    Route(name="access", description="grant or remove group access (vpn, wiki, prod-db, payroll, ...)",
          tools=("verify_identity", "get_access_request", "get_ticket", "search_policy", "grant_group",
                 "revoke_group", _H)),
    Route(name="mfa", description="reset multi-factor authentication after a lost or new device",
          tools=("verify_identity", "lookup_person", "get_ticket", "search_policy", "reset_mfa",
                 "update_recovery_email", _H)),
    Route(name="account", description="change the requester's recovery email, or mail them their access report",
          tools=("verify_identity", "lookup_person", "update_recovery_email", "send_report", _H)),
    Route(name="ticket", description="the status of one of the requester's service tickets",
          tools=("get_ticket", "lookup_person", "search_policy", "send_report", _H)),
    Route(name="policy", description="questions about the IT policies and procedures",
          tools=("search_policy", "send_report", _H)),
    Route(name="lookup", description="questions about the requester's own directory entry",
          tools=("lookup_person", "send_report", _H)),
    Route(name="other", description="anything else", tools=(_H,)),
)
CLOSINGS = {
    EscalationAction.HANDOFF_TO_HUMAN: "I've handed this to an IT engineer who will follow up.",
    EscalationAction.HALT: "I had to stop here.",
    EscalationAction.ASK_USER: "I need more information from you to continue.",
}


def itdesk_workflow(
    *,
    home: Home,
    ledger: Ledger,
    policy: Policy | None = None,
    models: ModelConfig | None = None,
    world: Path | None = None,
) -> Workflow:
    """The IT desk as a ``Workflow``. Compile it with any LangGraph checkpointer.

    Rate-limit state lives at ``home.limits_url`` (``limits.sqlite`` by default); call ``Workflow.close()`` when
    done (``Session`` does): it closes the limits store and the directory connection.
    """
    register_offline_models()
    models = models or ModelConfig()
    policy = policy or Policy.from_yaml(POLICY_PATH)
    router, reasoning = models.router or ROUTER_ID, models.reasoning or REASONING_ID
    return with_routing(Workflow(
        name="itdesk",
        description=DESCRIPTION,
        policy=policy,
        tools=build_itdesk_tools(),
        routes=ITDESK_ROUTES,
        router_model=load_chat_model(router, base_url=models.base_url),
        router_model_id=router,
        model=load_chat_model(reasoning, base_url=models.base_url),
        model_id=reasoning,
        ledger=ledger,
        resources=_resources(home, world or world_path(home)),
        requires_subject=True,
        closings=CLOSINGS,
        system_prompt=SYSTEM_PROMPT,
        prompt_version=PROMPT_VERSION,
        prices=models.prices,
        principal=DEFAULT_PRINCIPAL,
        limits=RuntimeLimits.open(policy, home.limits_url),
    ), models, examples=ROUTING_EXAMPLES)


def _resources(home: Home, world: Path) -> ItDeskResources:
    db = connect_world(world)
    knowledge = DeskKnowledge(shipped=shipped_knowledge(home), db=db, cache=world.parent / "itdesk-documents")
    return ItDeskResources(db=db, knowledge=knowledge)


def _build(ctx: BuildContext) -> Workflow:
    return itdesk_workflow(home=ctx.home, ledger=ctx.ledger, policy=ctx.policy, models=ctx.models)


WORKFLOW = WorkflowSpec(
    name="itdesk",
    description=DESCRIPTION,
    build=_build,
    policy_path=POLICY_PATH,
    scenarios=SCENARIOS,
    corpus=itdesk_corpus,
    reasoning_model=REASONING_ID,
    suite=_HERE / "suite.yaml",
)
