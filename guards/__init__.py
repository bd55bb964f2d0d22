"""Guards: the policy file, decisions and budgets."""

from tether.guards.budgets import BudgetExceeded, Budgets, Usage
from tether.guards.decisions import (
    Allow,
    Decision,
    Deny,
    Escalate,
    EscalationAction,
    RequireApproval,
    RuleMatch,
)
from tether.guards.policy import ActionRequest, Policy, ToolRule

__all__ = [
    "ActionRequest",
    "Allow",
    "BudgetExceeded",
    "Budgets",
    "Decision",
    "Deny",
    "Escalate",
    "EscalationAction",
    "Policy",
    "RequireApproval",
    "RuleMatch",
    "ToolRule",
    "Usage",
]
