"""``tether versions``: everything that defines an agent's behaviour, with content hashes.

    tether versions [WORKFLOW] [--policy FILE] [--json]
    tether versions [WORKFLOW] --diff OTHER

For each workflow: the system prompt (version, sha256), every tool schema (name, schema_version,
sha256), the policy (version, sha256, path), the routes, the model ids and their prices — the
values the ledger (``policy_version``) and ``tether eval run`` results (``versions``) record.
``--diff OTHER`` compares with an eval results file, a file written by ``tether versions --json``,
or a directory holding such a ``versions.json`` (e.g. another checkout after
``tether versions --json > versions.json``). A changed hash under an unchanged version is
called out: bump the version.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from tether.errors import ConfigError
from tether.evals.versions import flatten_versions

__all__ = ["add_versions_command", "cmd_versions", "current_versions", "diff_versions", "read_versions"]


def current_versions(workflow: str | None = None, *, policy: str | None = None) -> dict[str, Any]:
    """The ``versions`` block (as in eval results) of one workflow, or of every installed one."""
    from importlib.metadata import version

    from tether.config import Home
    from tether.evals.versions import workflow_versions
    from tether.graphs.registry import find_workflow, list_workflows
    from tether.graphs.session import Session

    names = [workflow] if workflow else [w.name for w in list_workflows()]
    out: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="tether-versions-") as tmp:
        for name in names:
            spec = find_workflow(name)
            with Session.open(name, home=Home(root=Path(tmp) / name), policy=policy) as s:
                out[name] = workflow_versions(s.workflow, policy or spec.policy_path)
    return {"tether": version("tether"), "langgraph": version("langgraph"), "workflows": out}


def read_versions(other: str | Path) -> dict[str, Any]:
    """The ``versions`` block of an eval results file, a ``tether versions --json`` file, or DIR/versions.json."""
    p = Path(other)
    if p.is_dir():
        p = p / "versions.json"
        if not p.is_file():
            raise ConfigError(setting="--diff", reason=f"{p} does not exist; in that checkout run "
                              "`tether versions --json > versions.json`, or pass an eval results file")
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(setting="--diff", reason=f"{p}: cannot read: {exc.strerror or exc}") from None
    except json.JSONDecodeError as exc:
        raise ConfigError(setting="--diff", reason=f"{p}: not JSON ({exc}); pass an eval results file "
                          "or the output of `tether versions --json`") from None
    block = data.get("versions") if isinstance(data, dict) and "schema_version" in data else data
    if not isinstance(block, dict) or not isinstance(block.get("workflows"), dict):
        raise ConfigError(setting="--diff", reason=f"{p}: has no versions block with 'workflows'; pass an eval "
                          "results file or the output of `tether versions --json`")
    return block


def diff_versions(current: Mapping[str, Any], other: Mapping[str, Any],
                  workflow: str | None = None) -> dict[str, Any]:
    """Keys whose values differ (``changed``), and hashes that changed under an unchanged version.

    Without ``workflow`` the workflows both blocks describe are compared; ``only_here`` and
    ``only_other`` name the rest.
    """
    here, there = set(current.get("workflows") or {}), set(other.get("workflows") or {})
    names = {workflow} if workflow else here & there

    def flat(block: Mapping[str, Any]) -> dict[str, str]:
        keep = {k: v for k, v in (block.get("workflows") or {}).items() if k in names}
        return flatten_versions({"tether": block.get("tether"), "langgraph": block.get("langgraph"), "workflows": keep})
    a, b = flat(other), flat(current)
    keys = {k for k in a.keys() | b.keys() if a.get(k) != b.get(k)}
    changed = [{"key": k, "other": a.get(k), "current": b.get(k)} for k in sorted(keys)]
    unbumped = sorted(k.removesuffix(".sha256") for k in keys
                      if k.endswith(".sha256") and k.removesuffix(".sha256").rsplit(".", 1)[-1] in ("prompt", "policy")
                      and k.removesuffix("sha256") + "version" not in keys and a.get(k) and b.get(k))
    unbumped += sorted(k.removesuffix(".sha256") for k in keys if ".tools." in k and k.endswith(".sha256")
                       and k.removesuffix("sha256") + "schema_version" not in keys and a.get(k) and b.get(k))
    return {"changed": changed, "unbumped": unbumped, "only_here": sorted(here - names),
            "only_other": sorted(there - names)}


def _human(block: Mapping[str, Any]) -> str:
    from tether.cli import table

    parts = [f"tether {block['tether']}, langgraph {block['langgraph']}"]
    for name, v in block["workflows"].items():
        rows = [["prompt", v["prompt"]["version"], v["prompt"]["sha256"][:16], ""],
                ["policy", v["policy"]["version"], (v["policy"]["sha256"] or "-")[:16], v["policy"]["path"] or ""]]
        rows += [["model", role, mid, ""] for role, mid in v["models"].items()]
        rows += [["price", mid, f"in {p['input_per_mtok']} out {p['output_per_mtok']} $/Mtok",
                  f"max out {p['max_output_tokens']}"] for mid, p in v.get("prices", {}).items()]
        rows += [["tool", t, d["sha256"][:16], f"schema {d['schema_version']}"] for t, d in v["tools"].items()]
        rows += [["route", r, d["sha256"][:16], ", ".join(d["tools"])] for r, d in v.get("routes", {}).items()]
        parts.append(f"\n{name}\n" + table(rows, ["what", "name/version", "sha256/value", "detail"]))
    return "\n".join(parts)


def cmd_versions(args: argparse.Namespace) -> int:
    """Print the versions block; with ``--diff`` what differs from OTHER."""
    cur = current_versions(args.workflow, policy=args.policy)
    if args.diff is None:
        print(json.dumps(cur, indent=2) if args.json else _human(cur))
        return 0
    d = diff_versions(cur, read_versions(args.diff), args.workflow)
    if args.json:
        print(json.dumps({"other": args.diff, **d}, indent=2))
        return 0
    from tether.cli import table

    for key, where in (("only_here", "here only"), ("only_other", f"in {args.diff} only")):
        if d[key]:
            print(f"not compared ({where}): {', '.join(d[key])}")
    if not d["changed"]:
        print(f"no differences from {args.diff}")
        return 0
    print(table([[c["key"], c["other"] or "(absent)", c["current"] or "(absent)"] for c in d["changed"]],
                ["key", f"in {args.diff}", "here"]))
    for k in d["unbumped"]:
        print(f"warning: {k} changed but its version did not; bump the version")
    return 0


def add_versions_command(subparsers: Any) -> None:
    """Add ``versions`` to the ``tether`` command's subparsers."""
    v: argparse.ArgumentParser = subparsers.add_parser(
        "versions", help="prompt, tools, policy, routes, models and prices, with hashes")
    v.add_argument("workflow", nargs="?", help="one workflow (default: every installed one)")
    v.add_argument("--policy", help="the policy file to enforce (default: the workflow's)")
    v.add_argument("--diff", metavar="OTHER", help="an eval results file, a `tether versions --json` file, "
                   "or a directory with versions.json (written by `tether versions --json > versions.json`)")
    v.add_argument("--json", action="store_true", help="machine-readable output")
    v.set_defaults(fn=cmd_versions)
