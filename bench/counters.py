"""Deterministic counters per request: fdatasync/fsync calls and bytes written (by file), and the
serialized checkpoint bytes, for the governed workflow and its bare twin on the same checkpointer.

A child process runs one warm-up request of every type (so every file exists and is open), then
the measured request between two markers, under ``strace -f``; the parent counts the system calls
between the markers. Needs ``strace`` (Debian package ``strace``).

    python bench/counters.py [--saver sqlite] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import sqlite3
import subprocess
import sys
import tempfile
from collections import Counter
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
_SYNC = re.compile(r"\b(fsync|fdatasync)\((\d+)<([^>]*)>")
_WRITE = re.compile(r"\b(pwrite64|write|pwritev)\((\d+)<([^>]*)>.*\)\s+=\s+(\d+)$")


def strace_path() -> str | None:
    return shutil.which("strace")


def _checkpoint_bytes(path: Path) -> int:
    if not path.exists():
        return 0
    with sqlite3.connect(path) as db:
        a = db.execute("SELECT coalesce(sum(length(checkpoint)) + sum(length(metadata)), 0) FROM checkpoints")
        b = db.execute("SELECT coalesce(sum(length(value)), 0) FROM writes")
        return int(a.fetchone()[0]) + int(b.fetchone()[0])


def child(governed: bool, kind: str, saver: str, root: Path) -> None:
    sys.path.insert(0, str(HERE))
    from workload import KINDS, Side

    side = Side(governed=governed, saver=saver, root=root)  # type: ignore[arg-type]
    for k in KINDS:
        if saver != "none" or k != "approval":
            side.request(k)
    side.reset()
    before = _checkpoint_bytes(root / "checkpoints.sqlite")
    os.write(2, b"=== MARK\n")
    status = side.request(kind)  # type: ignore[arg-type]
    os.write(2, b"=== END\n")
    after = _checkpoint_bytes(root / "checkpoints.sqlite")
    side.close()
    print(json.dumps({"status": status, "checkpoint_bytes": after - before}))


def _parse(trace: Path, root: Path) -> dict[str, Any]:
    syncs: Counter[str] = Counter()
    written: Counter[str] = Counter()
    order: list[str] = []  # "sync FILE" / "write FILE", in the order they happened
    on = False
    for line in trace.read_text(errors="replace").splitlines():
        if "=== MARK" in line:
            on = True
        elif "=== END" in line:
            on = False
        elif on and (m := _SYNC.search(line)):
            syncs[_label(m.group(3), root)] += 1
            order.append("sync " + _label(m.group(3), root))
        elif on and (w := _WRITE.search(line)) and w.group(3).startswith(str(root)):
            written[_label(w.group(3), root)] += int(w.group(4))
            order.append("write " + _label(w.group(3), root))
    return {"fdatasync": sum(syncs.values()), "fdatasync_by_file": dict(syncs),
            "bytes_written": sum(written.values()), "bytes_by_file": dict(written), "order": order}


def _label(path: str, root: Path) -> str:
    return path.removeprefix(str(root) + "/") if path.startswith(str(root)) else path


def measure(governed: bool, kind: str, saver: str = "sqlite") -> dict[str, Any]:
    """Counters of one request (``kind``) on one side, in a fresh data directory."""
    tracer = strace_path()
    if tracer is None:
        raise RuntimeError("strace is not installed (apt-get install strace); counters need it")
    with tempfile.TemporaryDirectory() as tmp:
        root, trace = Path(tmp) / "home", Path(tmp) / "trace"
        cmd = [tracer, "-f", "-y", "-qq", "-e", "trace=fsync,fdatasync,write,pwrite64,pwritev", "-o", str(trace),
               sys.executable, str(Path(__file__).resolve()), "--child", "1" if governed else "0", kind, saver,
               str(root)]
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=300, check=False)
        if out.returncode != 0:
            raise RuntimeError(f"counter child failed ({out.returncode}): {out.stderr[-2000:]}")
        facts = json.loads(out.stdout.strip().splitlines()[-1])
        return {**facts, **_parse(trace, root)}


def table(saver: str = "sqlite", kinds: tuple[str, ...] = ("read", "write", "approval")) -> dict[str, Any]:
    """Governed vs bare counters per request type, and what governance adds."""
    rows: dict[str, Any] = {}
    for kind in kinds:
        g, b = measure(True, kind, saver), measure(False, kind, saver)
        rows[kind] = {"governed": g, "bare": b, "added_fdatasync": g["fdatasync"] - b["fdatasync"]}
    return rows


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--child", nargs=4, metavar=("GOVERNED", "KIND", "SAVER", "ROOT"))
    ap.add_argument("--saver", default="sqlite", choices=["none", "memory", "sqlite"])
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args()
    if a.child:
        gov, kind, saver, root = a.child
        child(gov == "1", kind, saver, Path(root))
        return
    rows = table(a.saver, ("read", "write") if a.saver == "none" else ("read", "write", "approval"))
    if a.json:
        print(json.dumps(rows, indent=2))
        return
    for kind, r in rows.items():
        g, b = r["governed"], r["bare"]
        print(f"{kind:9} fdatasync governed {g['fdatasync']:3} bare {b['fdatasync']:3} added {r['added_fdatasync']:+d}"
              f" | bytes written {g['bytes_written']:>8} vs {b['bytes_written']:>8}"
              f" | checkpoint bytes {g['checkpoint_bytes']:>7} vs {b['checkpoint_bytes']:>7}")


if __name__ == "__main__":
    main()
