"""Finding workflows by name: registered in-process, installed through an entry point, or
named as ``module:factory``.

A package adds its workflows with an entry point in the ``tether.workflows`` group whose
value is a ``WorkflowSpec`` (or a function returning one)::

    [project.entry-points."tether.workflows"]
    helpdesk = "my_package.helpdesk:WORKFLOW"

``find_workflow("helpdesk")`` then finds it, and so do ``tether run helpdesk ...``,
``tether workflows`` and ``Session.open("helpdesk")``.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

from tether.checkpoints.ledger import Ledger
from tether.config import Home
from tether.errors import WorkflowError
from tether.graphs.state import Approve, Edit, Reject
from tether.graphs.workflow import Workflow
from tether.guards.policy import Policy
from tether.models import ModelConfig

__all__ = [
    "ENTRY_POINT_GROUP",
    "BuildContext",
    "Scenario",
    "WorkflowSpec",
    "find_workflow",
    "list_workflows",
    "register_workflow",
]

ENTRY_POINT_GROUP = "tether.workflows"


Check = Callable[[Any, list[Any]], "str | None"]
"""``(RunResult, ledger rows) -> None`` when as documented, else what went wrong."""


@dataclass(frozen=True, kw_only=True, slots=True)
class Scenario:
    """One documented behaviour of a workflow."""

    key: str
    title: str
    request: str | Sequence[str]
    """The user's text; several requests play one after another on the same thread."""
    expect: Check
    """Returns ``None`` when the outcome is as documented, else what went wrong."""
    subject: str | None = None
    principal: str | None = None
    roles: tuple[str, ...] = ()
    decisions: tuple[Approve | Reject | Edit, ...] = ()
    """The decision to give at each approval, in order; a pause with none left stays paused."""
    in_new_process: bool = False
    """Give the decisions with the ``tether`` command line in a new process."""




@dataclass(frozen=True, kw_only=True, slots=True)
class BuildContext:
    """What a workflow factory gets: where state lives, the ledger, the policy, the models."""

    home: Home
    ledger: Ledger
    policy: Policy
    """The policy to enforce: the spec's own file, or the one the caller chose."""
    models: ModelConfig
    """Model ids the caller chose; ``None`` fields mean the workflow's defaults."""


@dataclass(frozen=True, kw_only=True, slots=True)
class WorkflowSpec:
    """A named, buildable workflow."""

    name: str
    description: str
    build: Callable[[BuildContext], Workflow]
    policy_path: Path | None = None
    """The policy file used when the caller gives none."""
    scenarios: tuple[Scenario, ...] = ()
    """Documented behaviours, played by ``tether demo`` and ``run_eval``."""
    corpus: Callable[[], Sequence[Any]] | None = None
    """The adversarial corpus (``tether.evals.injection.InjectionCase`` values), for
    ``bench/injection.py`` and the injection tests."""
    reasoning_model: str | None = None
    """The workflow's default reasoning model id (wrapped by the compromised model in the corpus)."""
    suite: Path | None = None
    """The workflow's regression suite file (``tether eval run <workflow name>`` runs it)."""

    def load_policy(self, policy: Policy | str | Path | None = None) -> Policy:
        if isinstance(policy, Policy):
            return policy
        path = policy if policy is not None else self.policy_path
        if path is None:
            raise WorkflowError(workflow=self.name, reason="has no default policy file; pass a policy")
        return Policy.from_yaml(path)


_REGISTERED: dict[str, WorkflowSpec] = {}


def register_workflow(spec: WorkflowSpec) -> WorkflowSpec:
    """Make ``spec`` findable by name in this process (returns it, so it can decorate a value)."""
    _REGISTERED[spec.name] = spec
    return spec


def _as_spec(value: Any, where: str) -> WorkflowSpec:
    if callable(value) and not isinstance(value, WorkflowSpec):
        value = value()
    if not isinstance(value, WorkflowSpec):
        raise WorkflowError(workflow=where, reason=f"is a {type(value).__name__}, not a WorkflowSpec")
    return value


def _installed() -> dict[str, Any]:
    return {ep.name: ep for ep in entry_points(group=ENTRY_POINT_GROUP)}


def list_workflows() -> list[WorkflowSpec]:
    """Every workflow this process can find: registered, then installed, by name."""
    found = dict(_REGISTERED)
    for name, ep in _installed().items():
        if name not in found:
            found[name] = _as_spec(ep.load(), f"{ENTRY_POINT_GROUP}:{name}")
    return [found[k] for k in sorted(found)]


def find_workflow(name: str) -> WorkflowSpec:
    """A workflow by registered or installed name, or by ``module:attribute``."""
    if name in _REGISTERED:
        return _REGISTERED[name]
    installed = _installed()
    if name in installed:
        return _as_spec(installed[name].load(), name)
    if ":" in name:
        module, _, attr = name.partition(":")
        try:
            value = getattr(importlib.import_module(module), attr)
        except (ImportError, AttributeError) as exc:
            raise WorkflowError(workflow=name, reason=f"cannot be imported: {exc}") from None
        return _as_spec(value, name)
    known = sorted({*_REGISTERED, *installed})
    raise WorkflowError(
        workflow=name,
        reason=f"unknown; available: {', '.join(known) or 'none'} (or give module:factory)",
    )
