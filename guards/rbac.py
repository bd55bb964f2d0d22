"""Identities and roles: which tools a run may call, deny by default.

Active only when the policy has a ``roles:`` section. The run's roles come from the run
configuration (``ActionRequest.roles`` / ``principal`` or ``evaluate(role=..., principal=...)``),
never from model output. A principal named in ``principals:`` (by key or ``id``) brings its
roles. Rule ids: ``roles.<role>.tools`` (granted: allow; not granted: deny) and
``default.role_not_granted`` (no role, or an unknown one).
"""

from __future__ import annotations

from collections.abc import Mapping

from tether.guards.decisions import RuleMatch
from tether.guards.policy_sections import PrincipalSection, RoleSection

__all__ = ["NOT_GRANTED", "resolve_principal", "role_matches", "run_roles"]

NOT_GRANTED = "default.role_not_granted"


def resolve_principal(
    principals: Mapping[str, PrincipalSection] | None, who: str | None
) -> tuple[str, PrincipalSection] | None:
    """Find a principal by its key or its ``id``."""
    if who is None or not principals:
        return None
    if who in principals:
        return who, principals[who]
    for key, p in principals.items():
        if p.id == who:
            return key, p
    return None


def run_roles(
    principals: Mapping[str, PrincipalSection] | None,
    *,
    roles: tuple[str, ...],
    principal: str | None,
    role: str | None = None,
) -> tuple[str, ...]:
    """The roles a run holds: an explicit ``role``, else the request's, else its principal's."""
    if role is not None:
        return (role,)
    if roles:
        return roles
    found = resolve_principal(principals, principal)
    return found[1].roles if found else ()


def role_matches(
    tool: str, section: Mapping[str, RoleSection], roles: tuple[str, ...], *, principal: str | None
) -> list[RuleMatch]:
    if not roles:
        who = f"principal {principal!r} has no role in principals:" if principal else "no principal or role"
        return [RuleMatch(rule_id=NOT_GRANTED, effect="deny", reason=f"{who}; roles deny by default")]
    granted = [r for r in roles if r in section and tool in section[r].tools]
    if granted:
        return [
            RuleMatch(rule_id=f"roles.{r}.tools", effect="allow", reason=f"role {r} grants '{tool}'")
            for r in granted
        ]
    out = [
        RuleMatch(rule_id=f"roles.{r}.tools", effect="deny", reason=f"role {r} does not grant '{tool}'")
        for r in roles
        if r in section
    ]
    unknown = [r for r in roles if r not in section]
    if unknown:
        out.append(
            RuleMatch(
                rule_id=NOT_GRANTED,
                effect="deny",
                reason=f"role(s) {', '.join(unknown)} are not defined in roles:; denied by default",
            )
        )
    return out
