"""Cost per request as a thread's history and the ledger grow (it must stay flat, never linear).

History: a thread is given N earlier messages (``update_state``), then one more request runs on
it, governed and bare, on the SQLite-file checkpointer. Ledger: the ledger is grown to N rows
(copies of real rows, by SQL; the hot path never scans it), then requests run on new threads.

    python bench/scaling.py [--scale tiny|full]
"""

from __future__ import annotations

import argparse
import json
import sqlite3
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from langchain_core.messages import AIMessage, HumanMessage

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from workload import REQUESTS, SUBJECT, Side  # noqa: E402

SIZES = {"tiny": {"history": (10, 100), "ledger": (1_000, 10_000), "reps": 2},
         "full": {"history": (100, 1_000, 10_000), "ledger": (10_000, 1_000_000), "reps": 5}}


def _history(n: int) -> list[Any]:
    out: list[Any] = []
    for i in range(n // 2):
        out += [HumanMessage(f"earlier question {i} about my order"), AIMessage(f"earlier answer {i}")]
    return out


def _timed_request(side: Side, thread: str) -> float:
    t0 = time.perf_counter()
    if side.session is not None:
        side.session.run(REQUESTS["read"], thread_id=thread, subject=SUBJECT)
    else:
        side.app.invoke({"messages": [HumanMessage(REQUESTS["read"])], "subject": SUBJECT},
                        {"configurable": {"thread_id": thread}}, durability="sync")
    return time.perf_counter() - t0


def history(scale: str = "full") -> dict[str, dict[str, float]]:
    """ms per request after N messages of history, per side."""
    cfg = SIZES[scale]
    out: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name in ("governed", "bare"):
            side = Side(governed=name == "governed", saver="sqlite", root=Path(tmp) / name)
            app = side.session.app if side.session is not None else side.app
            _timed_request(side, "warm")
            for n in cfg["history"]:
                times = []
                for r in range(cfg["reps"]):
                    thread = f"h{n}-{r}"
                    app.update_state({"configurable": {"thread_id": thread}}, {"messages": _history(n)},
                                     as_node="router" if name == "bare" else "respond")
                    times.append(_timed_request(side, thread))
                out.setdefault(f"{n} messages", {})[name] = statistics.median(times) * 1000
            side.close()
    return out


def _grow(path: Path, rows: int) -> None:
    """Copy the ledger's rows (with new ids) until it holds ``rows`` rows."""
    with sqlite3.connect(path) as db:
        cols = [r[1] for r in db.execute("PRAGMA table_info(ledger_events)")]
        while (have := db.execute("SELECT max(seq) FROM ledger_events").fetchone()[0]) < rows:
            tag = uuid.uuid4().hex[:6]
            picked = ", ".join(
                f"seq + {have}" if c == "seq" else f"{c} || '-{tag}'" if c in ("event_id", "prev_hash", "row_hash") else c
                for c in cols)
            db.execute(f"INSERT INTO ledger_events ({', '.join(cols)}) SELECT {picked} FROM ledger_events "
                       f"ORDER BY seq LIMIT {rows - have}")
        db.execute("UPDATE ledger_head SET seq = (SELECT max(seq) FROM ledger_events), row_hash = "
                   "(SELECT row_hash FROM ledger_events ORDER BY seq DESC LIMIT 1) WHERE id = 1")
        db.commit()


def ledger(scale: str = "full") -> dict[str, float]:
    """ms per governed request with a ledger of N rows."""
    cfg = SIZES[scale]
    out: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        side = Side(governed=True, saver="sqlite", root=Path(tmp) / "home")
        _timed_request(side, "seed")  # real rows to copy
        for n in cfg["ledger"]:
            side.close()
            _grow(Path(tmp) / "home" / "ledger.sqlite", n)
            side = Side(governed=True, saver="sqlite", root=Path(tmp) / "home")
            _timed_request(side, f"warm{n}")
            out[f"{n} rows"] = statistics.median(
                _timed_request(side, f"l{n}-{r}") for r in range(cfg["reps"])) * 1000
        side.close()
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--scale", default="full", choices=list(SIZES))
    a = ap.parse_args()
    print(json.dumps({"history_ms": history(a.scale), "ledger_ms": ledger(a.scale)}, indent=2))


if __name__ == "__main__":
    main()
