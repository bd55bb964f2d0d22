"""Every tool of one or more MCP servers as tether tool contracts.

    from tether import Policy, mcp_toolset

    policy = Policy.from_yaml("agent-policy.yaml")   # effect and traits of each tool live here
    tools = mcp_toolset({"billing": {"transport": "stdio", "command": "python",
                                     "args": ["billing_server.py"]}}, policy)

The tools are listed through ``langchain-mcp-adapters`` (``MultiServerMCPClient``) and wrapped
with ``tether.tools.adapters.from_langchain``: arguments from each tool's input schema, results
as ``ToolOutput`` (text and ``structuredContent``), ``effect`` and ``traits`` from the policy, and
the run's idempotency key passed in an ``idempotency_key`` argument when the tool has one (see
``tether.tools.adapters`` for what that means on a crash).

MCP tools are coroutines. The workflow runs each call from its synchronous ``act`` node (in a
worker thread, with the tool timeout) on an event loop of its own, created and closed for that
call; every call opens its own session (for stdio: starts the server, calls, stops it), so no
loop, session or process outlives the call. Listing the tools does the same, once.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from tether.errors import ConfigError, MissingExtra
from tether.tools.adapters import from_langchain, run_coroutine
from tether.tools.base import Toolset

if TYPE_CHECKING:
    from langchain_core.tools import BaseTool

    from tether.guards.policy import Policy

__all__ = ["mcp_tools", "mcp_toolset"]


def _connections(servers: Mapping[str, Any]) -> dict[str, Any]:
    if "transport" in servers:  # one connection, not a mapping of them
        return {"server": dict(servers)}
    out: dict[str, Any] = {}
    for name, conn in servers.items():
        if not isinstance(conn, Mapping) or "transport" not in conn:
            raise ConfigError(setting=f"mcp server {name!r}", reason=(
                "expected a connection mapping with 'transport' (stdio: command, args; "
                "streamable_http / sse: url), e.g. {'transport': 'stdio', 'command': 'python', 'args': [...]}"))
        out[str(name)] = dict(conn)
    if not out:
        raise ConfigError(setting="mcp servers", reason="no server given; pass {name: connection}")
    return out


def mcp_tools(servers: Mapping[str, Any], *, tool_name_prefix: bool = False) -> list[BaseTool]:
    """The LangChain tools of the servers (``servers``: ``{name: connection}`` or one connection)."""
    try:
        from langchain_mcp_adapters.client import MultiServerMCPClient
    except ImportError:
        raise MissingExtra(extra="mcp", feature="MCP tools") from None
    client = MultiServerMCPClient(_connections(servers), tool_name_prefix=tool_name_prefix)  # type: ignore[arg-type]
    try:
        tools: list[BaseTool] = run_coroutine(client.get_tools)
    except Exception as exc:
        raise ConfigError(setting="mcp servers", reason=(
            f"could not list the tools: {type(exc).__name__}: {str(exc)[:300]}; check the connection "
            "(command and args for stdio, url for http) and that the server starts on its own")) from None
    return tools


def mcp_toolset(servers: Mapping[str, Any], policy: Policy, *, tool_name_prefix: bool = False) -> Toolset:
    """Every tool of the servers, wrapped; effect and traits come from ``policy``.

    ``tool_name_prefix=True`` names tools ``<server>_<tool>`` (the names the policy lists).
    Raises ``PolicyFileError`` for an allowed tool without ``effect`` or a trait naming an
    argument the tool does not have; a tool the policy does not list is wrapped and denied.
    """
    return Toolset(tools=[from_langchain(t, policy) for t in mcp_tools(servers, tool_name_prefix=tool_name_prefix)])
