"""Load on the classroom hub: N students log in at once and each runs an exercise notebook.

    .venv/bin/python bench/classroom_load.py --students 30
    .venv/bin/python bench/classroom_load.py --students 100 --concurrency 20 --save

Starts the course's JupyterHub (classroom/jupyterhub_config.py, tools/classroom.py) on free
ports on localhost, then for every student, at most --concurrency at a time: log in through
the hub's REST API, start a server, open a kernel through the proxy (/user/<name>/api/sessions)
and run every code cell of --notebook (the solution, so that each cell does the real work)
over the kernel's websocket. It measures the time to a running server, the time to run the
notebook, and the memory of each student's processes (server and kernel, by /proc, while all
kernels are still alive), and prints a table; --save also writes bench/classroom.md.
Everything runs on this machine: the hub, every server and every kernel.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import json
import os
import platform
import statistics
import sys
import tempfile
import time
import uuid
from datetime import datetime, timezone
from pathlib import Path

from tornado.httpclient import HTTPRequest
from tornado.websocket import websocket_connect

ROOT = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("classroom_tool", ROOT / "tools" / "classroom.py")
classroom = importlib.util.module_from_spec(_spec)
sys.modules[_spec.name] = classroom
_spec.loader.exec_module(classroom)


def rss_mb(hub, user: str | None) -> float:
    """Resident memory of this hub's processes that belong to ``user`` (None: the hub's own)."""
    total = 0
    for pid in hub.processes():
        try:
            env = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
            owner = next((e.split(b"=", 1)[1].decode() for e in env
                          if e.startswith(b"JUPYTERHUB_USER=")), None)
            if owner == user:
                for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1])
        except (OSError, StopIteration):
            pass
    return total / 1024


async def run_notebook(user, cells: list[str], timeout: float) -> float:
    """Open a kernel in the user's server and run ``cells`` over its websocket; seconds taken."""
    loop = asyncio.get_running_loop()
    session = await loop.run_in_executor(None, lambda: user.server(
        "POST", "api/sessions", {"path": "load.ipynb", "type": "notebook", "name": "load.ipynb",
                                 "kernel": {"name": "python3"}}))
    kernel_id = session["kernel"]["id"]
    url = f"{user.hub_url.replace('http', 'ws', 1)}/user/{user.name}/api/kernels/{kernel_id}/channels"
    # a browser waits for a busy server; tornado's default of 20 s would count a slow handshake as a failure
    socket = await websocket_connect(HTTPRequest(url, headers={"Authorization": f"token {user.token}"},
                                                 connect_timeout=timeout, request_timeout=timeout))
    start = time.monotonic()
    try:
        for code in cells:
            msg_id = uuid.uuid4().hex
            await socket.write_message(json.dumps({
                "header": {"msg_id": msg_id, "msg_type": "execute_request", "username": user.name,
                           "session": uuid.uuid4().hex, "version": "5.3",
                           "date": datetime.now(timezone.utc).isoformat()},
                "parent_header": {}, "metadata": {}, "channel": "shell", "buffers": [],
                "content": {"code": code, "silent": False, "store_history": True,
                            "user_expressions": {}, "allow_stdin": False, "stop_on_error": True}}))
            while True:
                raw = await asyncio.wait_for(socket.read_message(), timeout)
                if raw is None:
                    raise RuntimeError(f"{user.name}: the kernel's websocket closed")
                msg = json.loads(raw)
                reply = msg["msg_type"] == "execute_reply"
                if reply and msg.get("parent_header", {}).get("msg_id") == msg_id:
                    if msg["content"]["status"] != "ok":
                        raise RuntimeError(f"{user.name}: a cell failed: {msg['content'].get('evalue')}")
                    break
    finally:
        socket.close()
    return time.monotonic() - start


async def student_session(hub, name: str, cells: list[str], gate: asyncio.Semaphore,
                          timeout: float) -> dict:
    loop = asyncio.get_running_loop()
    async with gate:
        t0 = time.monotonic()
        user = await loop.run_in_executor(None, hub.user, name)
        server_s = await loop.run_in_executor(None, user.start_server, timeout)
        run_s = await run_notebook(user, cells, timeout)
        return {"name": name, "server_s": server_s, "run_s": run_s, "total_s": time.monotonic() - t0}


def summary(values: list[float]) -> str:
    return f"{statistics.median(values):.1f} / {max(values):.1f}"


async def main_async(args) -> str:
    notebook = json.loads(Path(args.notebook).read_text(encoding="utf-8"))
    cells = ["".join(c["source"]) for c in notebook["cells"] if c["cell_type"] == "code"]
    students = [f"student{i}" for i in range(1, args.students + 1)]
    with tempfile.TemporaryDirectory(prefix="classroom-load-") as state:
        hub = classroom.Hub.on_free_ports(Path(state), students)
        try:
            hub_s = hub.start()
            hub_mb = rss_mb(hub, None)
            gate = asyncio.Semaphore(args.concurrency)
            t0 = time.monotonic()
            results = await asyncio.gather(*(student_session(hub, s, cells, gate, args.timeout)
                                             for s in students), return_exceptions=True)
            wall = time.monotonic() - t0
            failed = [f"{s}: {r!r}" for s, r in zip(students, results, strict=True)
                      if isinstance(r, BaseException)]
            sessions = [r for r in results if not isinstance(r, BaseException)]
            memory = [rss_mb(hub, s["name"]) for s in sessions]  # every kernel still holds its state
        finally:
            hub.stop()
    cpu = os.cpu_count()
    lines = [
        f"Measured by `bench/classroom_load.py` on {platform.system()} {platform.machine()}, "
        f"{cpu} CPU cores, "
        f"{datetime.now(timezone.utc):%Y-%m-%d}: {args.students} students, {args.concurrency} at a time, "
        f"each ran `{Path(args.notebook).relative_to(ROOT)}` in its own kernel; hub, proxy, formgrader, "
        "servers and kernels all on this machine.",
        "",
        "| what | median / max |",
        "|---|---:|",
        f"| hub and formgrader service start (s) | {hub_s:.1f} |",
        f"| log in to running server (s) | {summary([s['server_s'] for s in sessions])} |",
        f"| run the notebook in the student's kernel (s) | {summary([s['run_s'] for s in sessions])} |",
        f"| one student from log in to notebook done (s) | {summary([s['total_s'] for s in sessions])} |",
        f"| memory of one student: server + kernel (MB) | {summary(memory)} |",
        f"| memory of hub + proxy + formgrader (MB) | {hub_mb:.0f} |",
        f"| all {args.students} students done (s) | {wall:.1f} |",
        f"| memory of all students (MB) | {sum(memory):.0f} |",
        f"| students whose session failed | {len(failed)} |",
        *(f"\nfailed: {f}" for f in failed),
    ]
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--students", type=int, default=5)
    parser.add_argument("--concurrency", type=int, default=0, help="students at a time (default: all)")
    parser.add_argument("--notebook", type=lambda p: str(Path(p).resolve()),
                        default=str(ROOT / "solutions" / "00_warmup.ipynb"))
    parser.add_argument("--timeout", type=float, default=600, help="seconds for a server or a cell")
    parser.add_argument("--save", action="store_true", help="also write bench/classroom.md")
    args = parser.parse_args()
    args.concurrency = args.concurrency or args.students
    reason = classroom.missing()
    if reason:
        print(f"classroom_load: {reason}", file=sys.stderr)
        return 1
    report = asyncio.run(main_async(args))
    print(report)
    if args.save:
        (ROOT / "bench" / "classroom.md").write_text("# Classroom load\n\n" + report, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
