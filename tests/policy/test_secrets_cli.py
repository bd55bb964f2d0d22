"""Secret references and redaction; the `tether policy explain|diff` commands."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from tether.cli import main
from tether.errors import ConfigError, PolicyFileError
from tether.guards.policy import Policy
from tether.guards.secret_refs import MASK, SecretError, SecretRef, SecretResolver, redact, redact_tool_data

ROOT = Path(__file__).resolve().parents[2]
SUPPORT = ROOT / "agents" / "support" / "agent-policy.yaml"
SUPPORT_TEXT = SUPPORT.read_text()

# ---------------------------------------------------------------- secrets


def test_secret_refs_resolve_from_env_and_file(tmp_path: Path) -> None:
    f = tmp_path / "token"
    f.write_text("file-s3cret\n")
    r = SecretResolver(env={"CRM_TOKEN": "env-s3cret"})
    assert r.resolve({"secret": "env:CRM_TOKEN"}) == "env-s3cret"
    assert r.resolve(SecretRef.parse(f"file:{f}")) == "file-s3cret"
    assert r.resolved == {"env-s3cret", "file-s3cret"}
    for bad in ({"secret": "env:MISSING"}, {"secret": "vault:x"}, {"nope": 1}, f"file:{tmp_path}/none"):
        with pytest.raises(SecretError) as info:
            r.resolve(bad)  # type: ignore[arg-type]
        assert isinstance(info.value, ConfigError) and "s3cret" not in str(info.value)


def test_redact_masks_sensitive_fields_and_secrets_in_dicts_and_strings() -> None:
    data = {"email": "ana@example.com", "nested": [{"phone": "+1-555"}], "note": "token env-s3cret used", "n": 3}
    out = redact(data, fields=("email", "phone"), secrets=("env-s3cret",))
    assert out == {"email": MASK, "nested": [{"phone": MASK}], "note": f"token {MASK} used", "n": 3}
    assert data["email"] == "ana@example.com"  # a copy
    text = 'update email=ana@example.com phone: +1-555 {"email": "ana@example.com"} key env-s3cret'
    masked = redact(text, fields=("email", "phone"), secrets=("env-s3cret",))
    for leaked in ("ana@example.com", "+1-555", "env-s3cret"):
        assert leaked not in masked
    assert "update" in masked and "email" in masked


def test_policy_sensitive_fields_and_credentials() -> None:
    text = SUPPORT_TEXT.replace(
        '    allowed_fields: ["email", "phone", "shipping_address"]\n',
        '    allowed_fields: ["email", "phone", "shipping_address"]\n'
        "    sensitive_fields: [email, phone]\n"
        '    credentials: {api_token: {secret: "env:CRM_TOKEN"}}\n',
    )
    p = Policy.from_text(text)
    resolver = SecretResolver(env={"CRM_TOKEN": "tok-123"})
    creds = resolver.resolve_all(p.tools["update_crm_record"].credentials)
    assert creds == {"api_token": "tok-123"}
    assert "tok-123" not in json.dumps(p.to_dict())
    out = redact_tool_data(p, "update_crm_record", {"fields": {"email": "a@b.c"}, "err": "auth tok-123"},
                           resolver=resolver)
    assert out == {"fields": {"email": MASK}, "err": f"auth {MASK}"}
    with pytest.raises(PolicyFileError) as info:
        Policy.from_text(text.replace("env:CRM_TOKEN", "plain-token"))
    assert info.value.key == "tools.update_crm_record.credentials.api_token.secret"


# ---------------------------------------------------------------- CLI


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_explain_prints_decision_and_every_matched_rule(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "policy", "explain", str(SUPPORT), "--tool", "issue_refund",
                       "--args", '{"amount_usd": 80, "order_id": "O-20417"}', "--customer", "C-1042", "--json")
    assert code == 0
    data = json.loads(out)
    assert data["decision"]["kind"] == "deny"
    assert [m["rule_id"] for m in data["decision"]["matched"]] == [
        "tools.issue_refund.max_amount_usd", "tools.issue_refund.require_citation",
        "tools.issue_refund.require_approval_over_usd",
    ]
    code, out, _ = run(capsys, "policy", "explain", str(SUPPORT), "--tool", "issue_refund",
                       "--args", '{"amount_usd": 40, "citation_ids": ["KB-1"]}')
    assert code == 0 and "require_approval" in out and "tools.issue_refund.require_approval_over_usd" in out


def test_explain_with_roles_and_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    f = tmp_path / "rbac.yaml"
    f.write_text(SUPPORT_TEXT + "roles:\n  analyst: {tools: [run_sql_query]}\n")
    code, out, _ = run(capsys, "policy", "explain", str(f), "--tool", "lookup_order", "--as", "analyst", "--json")
    assert code == 0 and json.loads(out)["decision"]["rule_id"] == "roles.analyst.tools"
    code, _, err = run(capsys, "policy", "explain", str(f), "--tool", "x", "--args", "[1]")
    assert code == 1 and "JSON object" in err
    code, _, err = run(capsys, "policy", "explain", str(tmp_path / "none.yaml"), "--tool", "x")
    assert code == 1 and "cannot read" in err


def _ledger(path: Path) -> None:
    db = sqlite3.connect(path)
    db.execute("CREATE TABLE ledger_events (seq INTEGER PRIMARY KEY, thread_id TEXT, event TEXT, tool TEXT,"
               " args_json TEXT, decision TEXT, rule_id TEXT, customer_id TEXT, principal TEXT, evidence TEXT)")
    rows = [
        ("t1", "executed", "search_policy", "{}", None, None, "C-1042", '["KB-1"]'),
        ("t1", "proposed", "issue_refund", '{"amount_usd": 40, "citation_ids": ["KB-1"]}', "require_approval",
         "tools.issue_refund.require_approval_over_usd", "C-1042", "[]"),
        ("t1", "proposed", "issue_refund", '{"amount_usd": 20, "citation_ids": ["KB-1"]}', "allow",
         "tools.issue_refund.allowed", "C-1042", "[]"),
        ("t2", "proposed", "issue_refund", '{"amount_usd": 20, "citation_ids": ["KB-1"]}', "deny",
         "tools.issue_refund.require_citation", "C-7", "[]"),  # KB-1 never retrieved in t2
        ("t2", "proposed", "lookup_order", "{}", "invalid", "schema.lookup_order", "C-7", "[]"),
    ]
    db.executemany("INSERT INTO ledger_events (thread_id, event, tool, args_json, decision, rule_id, customer_id,"
                   " evidence, principal) VALUES (?, ?, ?, ?, ?, ?, ?, ?, 'tether-agent')", rows)
    db.commit()
    db.close()


def test_diff_lists_changes_and_replays_a_ledger(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    new = tmp_path / "new.yaml"
    new.write_text(SUPPORT_TEXT.replace("max_amount_usd: 50", "max_amount_usd: 30"))
    ledger = tmp_path / "ledger.sqlite"
    _ledger(ledger)
    before = ledger.read_bytes()
    code, out, _ = run(capsys, "policy", "diff", str(SUPPORT), str(new), "--replay", str(ledger), "--json")
    assert code == 0
    data = json.loads(out)
    assert data["changes"] == [{"key": "tools.issue_refund.max_amount_usd", "change": "changed",
                                "old": 50.0, "new": 30.0}]
    assert data["replay"]["replayed"] == 3
    [flip] = data["replay"]["flips"]
    assert (flip["old"]["kind"], flip["new"]["kind"]) == ("require_approval", "deny")
    assert flip["args"]["amount_usd"] == 40 and flip["recorded"] == "require_approval"
    assert ledger.read_bytes() == before  # read-only
    code, out, _ = run(capsys, "policy", "diff", str(SUPPORT), str(new))
    assert code == 0 and "tools.issue_refund.max_amount_usd  50.0" in out and "30.0" in out


def test_diff_errors_exit_non_zero(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(SUPPORT_TEXT.replace("max_amount_usd", "max_amout_usd"))
    code, _, err = run(capsys, "policy", "diff", str(SUPPORT), str(bad))
    assert code == 1 and "Did you mean 'max_amount_usd'?" in err
    code, _, err = run(capsys, "policy", "diff", str(SUPPORT), str(SUPPORT), "--replay", str(tmp_path / "x.db"))
    assert code == 1 and "no such file" in err
    (tmp_path / "empty.db").write_bytes(b"")
    code, _, err = run(capsys, "policy", "diff", str(SUPPORT), str(SUPPORT), "--replay", str(tmp_path / "empty.db"))
    assert code == 1 and "ledger_events" in err
