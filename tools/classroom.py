"""Start the course's JupyterHub on localhost and act in it as an instructor or a student.

    python tools/classroom.py serve             # what `make classroom` runs: the hub until Ctrl-C
    python tools/classroom.py serve --students 30 --port 8000

The hub runs classroom/jupyterhub_config.py with everything it writes under one folder
(classroom/run/ for `serve`). tests/classroom and bench/classroom_load.py use the same two
classes: ``Hub`` starts and stops a hub, ``HubUser`` is one person talking to it through the
proxy with an API token (the hub's REST API, their own Jupyter server's REST API, nbgrader's
assignment-list handlers that JupyterLab's Assignments panel calls, the formgrader's API).
Only the Python standard library: it runs from any interpreter.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CLASSROOM = ROOT / "classroom"
CONFIG = CLASSROOM / "jupyterhub_config.py"
PROXY = CLASSROOM / "node_modules" / ".bin" / "configurable-http-proxy"
COURSE_ID = "transformer-course"  # as in classroom/nbgrader_config.py and jupyterhub_config.py
DEFAULT_PORTS = {"port": 8000, "hub_port": 8081, "proxy_api_port": 8001, "service_port": 9999}


def missing() -> str | None:
    """Why a hub cannot start here (None when it can): jupyterhub or the proxy not installed."""
    try:
        import jupyterhub  # noqa: F401
    except ImportError:
        return "jupyterhub is not installed in this Python (run `make classroom-deps`)"
    if not PROXY.exists():
        return f"configurable-http-proxy is not installed at {PROXY} (run `make classroom-deps`)"
    return None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def port_in_use(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


class HubError(RuntimeError):
    pass


@dataclass
class Hub:
    """A JupyterHub with classroom/jupyterhub_config.py, its state in ``state``."""

    state: Path
    students: list[str]
    instructor: str = "instructor"
    ports: dict[str, int] = field(default_factory=lambda: dict(DEFAULT_PORTS))
    # students share one password; the instructor, a hub admin, has one of >= 32 characters
    student_password: str = field(default_factory=lambda: secrets.token_urlsafe(9))
    instructor_password: str = field(default_factory=lambda: secrets.token_urlsafe(24))
    python: str = sys.executable
    proc: subprocess.Popen | None = None

    @classmethod
    def on_free_ports(cls, state: Path, students: list[str], **kwargs) -> Hub:
        return cls(state, students, ports={k: free_port() for k in DEFAULT_PORTS}, **kwargs)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.ports['port']}"

    @property
    def log(self) -> Path:
        return self.state / "jupyterhub.log"

    @property
    def course_dir(self) -> Path:
        return self.state / "course"

    def env(self) -> dict[str, str]:
        """What jupyterhub_config.py reads, and the environment of nbgrader's own commands."""
        return {
            **os.environ,
            "CLASSROOM_DIR": str(self.state),
            "CLASSROOM_INSTRUCTOR": self.instructor,
            "CLASSROOM_STUDENTS": ",".join(self.students),
            "CLASSROOM_STUDENT_PASSWORD": self.student_password,
            "CLASSROOM_INSTRUCTOR_PASSWORD": self.instructor_password,
            "CLASSROOM_PORT": str(self.ports["port"]),
            "CLASSROOM_HUB_PORT": str(self.ports["hub_port"]),
            "CLASSROOM_PROXY_API_PORT": str(self.ports["proxy_api_port"]),
            "CLASSROOM_SERVICE_PORT": str(self.ports["service_port"]),
        }

    def grader_env(self) -> dict[str, str]:
        """The formgrader service's environment, for nbgrader commands the instructor runs."""
        return {**self.env(),
                "PATH": f"{Path(self.python).parent}{os.pathsep}{os.environ.get('PATH', '')}",
                "JUPYTER_CONFIG_PATH": os.pathsep.join([str(CLASSROOM / "jupyter" / "grader"),
                                                        str(CLASSROOM)])}

    def start(self, timeout: float = 120) -> float:
        """Start the hub and wait until its API and the formgrader service answer; seconds taken."""
        reason = missing()
        if reason:
            raise HubError(reason)
        busy = [f"{k}={p}" for k, p in self.ports.items() if port_in_use(p)]
        if busy:
            raise HubError(f"ports in use: {', '.join(busy)} (another hub running?)")
        self.state.mkdir(parents=True, exist_ok=True)
        start = time.monotonic()
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(
                [self.python, "-m", "jupyterhub", "-f", str(CONFIG)], cwd=self.state, env=self.env(),
                stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        service = f"{self.url}/services/{COURSE_ID}/api/status"
        while time.monotonic() - start < timeout:
            if self.proc.poll() is not None:
                raise HubError(f"jupyterhub exited with {self.proc.returncode}:\n{self.log_tail()}")
            # the API answers once the hub and the proxy are up; the service answers 302 (to
            # the hub's login) or 403 once the formgrader's server runs
            if _status(f"{self.url}/hub/api") == 200 and _status(service) in (302, 403):
                return time.monotonic() - start
            time.sleep(0.3)
        raise HubError(f"the hub did not answer within {timeout} s:\n{self.log_tail()}")

    def stop(self, timeout: float = 60) -> list[str]:
        """Stop the hub (which stops every server and the proxy), then anything it left behind.

        Returns what had to be killed, e.g. ["1234 python -m ipykernel_launcher ..."]: nothing
        when the hub cleaned up after itself.
        """
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        # Servers run in sessions of their own; a hub killed hard leaves them. Each carries
        # CLASSROOM_DIR=<this hub's state folder> in its environment, and so do their kernels.
        killed = []
        for pid in self.processes():
            try:
                cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()[:200]
                os.kill(pid, signal.SIGKILL)
                killed.append(f"{pid} {cmd}")
            except (OSError, ProcessLookupError):
                pass
        deadline = time.monotonic() + 15
        while self.processes() and time.monotonic() < deadline:
            time.sleep(0.2)
        return killed

    def processes(self) -> list[int]:
        """Live processes started for this hub (servers, kernels, the proxy), by CLASSROOM_DIR."""
        mark = f"CLASSROOM_DIR={self.state}".encode()
        found = []
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit() and int(entry.name) != os.getpid():
                try:
                    if mark in (entry / "environ").read_bytes().split(b"\0"):
                        if "\nState:\tZ" not in (entry / "status").read_text():  # not a zombie
                            found.append(int(entry.name))
                except OSError:
                    pass
        return found

    def log_tail(self, n: int = 4000) -> str:
        return self.log.read_text(errors="replace")[-n:] if self.log.exists() else "(no log)"

    def user(self, name: str) -> HubUser:
        password = self.instructor_password if name == self.instructor else self.student_password
        return HubUser(self.url, name, password)

    def nbgrader(self, *args: str, timeout: float = 600) -> subprocess.CompletedProcess:
        """An nbgrader command in the course directory, as the instructor in the service's terminal."""
        result = subprocess.run([self.python, "-m", "nbgrader", *args], cwd=self.course_dir,
                                env=self.grader_env(), capture_output=True, text=True, timeout=timeout)
        if result.returncode != 0:
            raise HubError(f"nbgrader {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}")
        return result


def _status(url: str) -> int | None:
    request = urllib.request.Request(url, method="GET")
    try:
        with _NO_REDIRECTS.open(request, timeout=5) as response:
            return response.status
    except urllib.error.HTTPError as err:
        return err.code
    except OSError:
        return None


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None


_NO_REDIRECTS = urllib.request.build_opener(_NoRedirect)


class HubUser:
    """One person in the hub, through the proxy, with an API token they got by logging in."""

    def __init__(self, hub_url: str, name: str, password: str):
        self.hub_url, self.name = hub_url, name
        # The hub's REST API logs a user in from the request body and hands out a token.
        reply = self._call("POST", f"/hub/api/users/{name}/tokens", token=None,
                           body={"auth": {"username": name, "password": password}, "note": "classroom",
                                 "expires_in": 3600})
        self.token = reply["token"]

    # -- HTTP --
    def _call(self, method: str, path: str, body=None, token: str | None = "", raw: bool = False,
              timeout: float = 600):
        data = None
        headers = {}
        if token is not None:
            headers["Authorization"] = f"token {token or self.token}"
        if body is not None:
            data = body if isinstance(body, bytes) else json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        request = urllib.request.Request(self.hub_url + path, data=data, method=method, headers=headers)
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                text = response.read().decode()
        except urllib.error.HTTPError as err:
            detail = err.read().decode()[:2000]
            raise HubError(f"{self.name}: {method} {path} -> {err.code}: {detail}") from None
        if raw:
            return text
        return json.loads(text) if text else None

    def hub(self, method: str, path: str, body=None):
        return self._call(method, f"/hub/api{path}", body)

    def server(self, method: str, path: str, body=None, **kwargs):
        """The user's own Jupyter server, through the proxy: /user/<name>/<path>."""
        return self._call(method, f"/user/{self.name}/{path.lstrip('/')}", body, **kwargs)

    def service(self, method: str, path: str, body=None, **kwargs):
        """The formgrader service, through the proxy: /services/<course_id>/<path>."""
        return self._call(method, f"/services/{COURSE_ID}/{path.lstrip('/')}", body, **kwargs)

    # -- the user's server --
    def request_server(self) -> None:
        """Ask the hub to start this user's server (returns at once; see wait_server)."""
        try:
            self.hub("POST", f"/users/{self.name}/server")
        except HubError as err:
            if "is already running" not in str(err):
                raise

    def wait_server(self, timeout: float = 180) -> None:
        start = time.monotonic()
        while time.monotonic() - start < timeout:
            server = self.hub("GET", f"/users/{self.name}")["servers"].get("", {})
            if server.get("ready"):
                return
            time.sleep(0.3)
        raise HubError(f"{self.name}'s server was not ready within {timeout} s")

    def start_server(self, timeout: float = 180) -> float:
        start = time.monotonic()
        self.request_server()
        self.wait_server(timeout)
        return time.monotonic() - start

    def stop_server(self) -> None:
        self._call("DELETE", f"/hub/api/users/{self.name}/server", raw=True)

    # -- files, through the Jupyter contents API --
    def read_notebook(self, path: str, where: str = "server") -> dict:
        model = getattr(self, where)("GET", f"api/contents/{_quote(path)}?content=1&type=notebook")
        return model["content"]

    def write_notebook(self, path: str, notebook: dict, where: str = "server") -> None:
        getattr(self, where)("PUT", f"api/contents/{_quote(path)}",
                             {"type": "notebook", "format": "json", "content": notebook})

    def make_folder(self, path: str, where: str = "server") -> None:
        getattr(self, where)("PUT", f"api/contents/{_quote(path)}", {"type": "directory"})

    def read_text(self, path: str, where: str = "server") -> str:
        query = "content=1&type=file&format=text"
        return getattr(self, where)("GET", f"api/contents/{_quote(path)}?{query}")["content"]

    def list_folder(self, path: str, where: str = "server") -> list[str]:
        model = getattr(self, where)("GET", f"api/contents/{_quote(path)}?content=1")
        return sorted(item["name"] for item in model["content"])

    # -- nbgrader's assignment list: what JupyterLab's Assignments panel calls --
    def assignments(self, course_id: str = COURSE_ID) -> list[dict]:
        reply = self.server("GET", f"assignments?course_id={course_id}")
        if not reply["success"]:
            raise HubError(f"{self.name}: listing assignments failed: {reply['value']}")
        return reply["value"]

    def assignment_action(self, action: str, assignment: str, course_id: str = COURSE_ID) -> list[dict]:
        """fetch, submit or fetch_feedback, as the panel's buttons do."""
        reply = self.server("POST", f"assignments/{action}",
                            {"course_id": course_id, "assignment_id": assignment})
        if not reply.get("success"):
            raise HubError(f"{self.name}: {action} {assignment} failed: {reply.get('value')}")
        return reply["value"]

    # -- the formgrader's API (its buttons), for the instructor --
    def formgrader(self, action: str, assignment: str, student: str | None = None) -> str:
        """generate (assign), release, collect, autograde, generate_feedback, release_feedback."""
        path = (f"formgrader/api/submission/{assignment}/{student}/autograde" if action == "autograde"
                else f"formgrader/api/assignment/{assignment}/{action}")
        reply = self.service("POST", path)
        if not reply.get("success"):
            raise HubError(f"formgrader {action} {assignment} {student or ''} failed:\n"
                           f"{reply.get('error')}\n{reply.get('log')}")
        return reply.get("log", "")


def _quote(path: str) -> str:
    return urllib.parse.quote(path)


# ----------------------------------------------------------------------------- make classroom

def add_course_notebooks(course_dir: Path, lang: str = "en") -> list[str]:
    """Put each solution notebook in the course as source/<name>/<name>.ipynb (once); with
    ``lang="ko"`` the Korean edition's (solutions/ko/: Korean instructions, the same checks)."""
    if lang not in ("en", "ko"):
        raise ValueError(f"add_course_notebooks expects lang 'en' or 'ko', got {lang!r}")
    added = []
    solutions = ROOT / "solutions" if lang == "en" else ROOT / "solutions" / lang
    for notebook in sorted(solutions.glob("*.ipynb")):
        target = course_dir / "source" / notebook.stem / notebook.name
        if not target.exists():
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(notebook, target)
            added.append(notebook.stem)
    return added


def serve(args: argparse.Namespace) -> int:
    state = Path(args.dir).resolve()
    students = [f"student{i}" for i in range(1, args.students + 1)]
    ports = {**DEFAULT_PORTS, "port": args.port}
    saved = state / "passwords.json"  # kept, so that a restarted hub keeps its passwords
    passwords = json.loads(saved.read_text()) if saved.exists() else {}
    hub = Hub(state, students, ports=ports, **passwords)
    state.mkdir(parents=True, exist_ok=True)
    saved.write_text(json.dumps({"student_password": hub.student_password,
                                 "instructor_password": hub.instructor_password}))
    saved.chmod(0o600)
    add_course_notebooks(hub.course_dir, args.lang)
    for student in students:  # the formgrader's Manage Students page lists them from the start
        hub.nbgrader("db", "student", "add", student, f"--last-name={student}")
    print(f"starting JupyterHub (log: {hub.log}) ...", flush=True)
    try:
        took = hub.start()
    except HubError as err:
        print(f"classroom: {err}", file=sys.stderr)
        hub.stop()
        return 1
    width = max(len(n) for n in [hub.instructor, *students])
    origin = "solutions/" if args.lang == "en" else f"solutions/{args.lang}/"
    print(f"""
The course's JupyterHub is running (started in {took:.1f} s). Open {hub.url} and log in:

  {hub.instructor:<{width}}  {hub.instructor_password}   (instructor, hub admin)
""" + "\n".join(f"  {s:<{width}}  {hub.student_password}" for s in students) + f"""

Instructor: the formgrader is at {hub.url}/services/{COURSE_ID}/formgrader
  (open it in its own browser tab). Its "Manage Assignments" page lists the 12 exercise
  notebooks, copied from {origin} into {hub.course_dir}/source/: Generate, look at it, then Release.
Students: in JupyterLab, menu Nbgrader > Assignment List: Fetch, work, Submit.
Everything is kept in {state}; delete it to start over. Ctrl-C stops the hub and every server.
""", flush=True)
    # Ctrl-C, a closed terminal or a `kill` all stop the hub (it runs in a session of its own)
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, _interrupt)
    try:
        while hub.proc.poll() is None:
            time.sleep(1)
        print(f"classroom: jupyterhub exited with {hub.proc.returncode}:\n{hub.log_tail()}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("\nstopping the hub and every server ...", flush=True)
        return 0
    finally:
        hub.stop()


def _interrupt(signum, frame):
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    s = sub.add_parser("serve", help="start the hub on localhost until Ctrl-C")
    s.add_argument("--dir", default=str(CLASSROOM / "run"), help="where the hub keeps everything")
    s.add_argument("--port", type=int, default=DEFAULT_PORTS["port"], help="the port a browser opens")
    s.add_argument("--students", type=int, default=2, help="how many students (student1, student2, ...)")
    s.add_argument("--lang", choices=("en", "ko"), default="en",
                   help="the assignments' language: en (solutions/) or ko (solutions/ko/, 한국어판)")
    args = parser.parse_args(argv)
    return serve(args)


if __name__ == "__main__":
    sys.exit(main())
