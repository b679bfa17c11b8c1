# JupyterHub configuration for one course on one machine: an instructor, a list of students,
# and nbgrader's formgrader as a hub service. `make classroom` starts it on localhost
# (tools/classroom.py sets the variables below); tests/classroom runs nbgrader's whole cycle
# through it. docs/classroom.md says how to take it to The Littlest JupyterHub or Kubernetes.
#
# Everything the hub writes goes under one folder, CLASSROOM_DIR (default classroom/run/):
#
#   jupyterhub.sqlite, jupyterhub_cookie_secret, *.pid   the hub's own state
#   homes/<user>/                                        each user's home and server root
#   course/                                              the instructor's nbgrader course
#                                                        (source/, release/, submitted/,
#                                                        autograded/, feedback/, gradebook.db)
#   exchange/                                            nbgrader's exchange, mode 1777
#
# One OS user runs everything (SimpleLocalProcessSpawner), so this is for a local trial and
# for tests, not for students who must be kept apart: on a real server use The Littlest
# JupyterHub (one OS user per student) or Kubernetes (one pod per student).
# ruff: noqa: F821  (JupyterHub defines get_config)

import os
import sys
from pathlib import Path

from jupyterhub.authenticators.shared import SharedPasswordAuthenticator
from jupyterhub.spawner import SimpleLocalProcessSpawner

c = get_config()

HERE = Path(__file__).resolve().parent
STATE = Path(os.environ.get("CLASSROOM_DIR", HERE / "run")).resolve()
# The Python that runs the hub is the course's venv: every server and kernel runs from it, so
# the course's package, nbgrader's server and lab extensions and the python3 kernel are there.
VENV_BIN = Path(sys.executable).parent
# Jupyter refuses to run as root unless told; root is who runs the tests (in a container, or
# inside tools/offline.sh's network namespace). Never run the hub as root for a real class.
SERVER_ARGS = ["--allow-root"] if os.geteuid() == 0 else []

# The course. COURSE_ID must equal nbgrader_config.py's course_id: it names the formgrader
# service and its group, and the instructor's Course List finds the formgrader by it.
COURSE_ID = "transformer-course"
INSTRUCTOR = os.environ.get("CLASSROOM_INSTRUCTOR", "instructor")
STUDENTS = [s for s in os.environ.get("CLASSROOM_STUDENTS", "student1,student2").split(",") if s]

# -- where the hub listens (all on localhost; ports overridable for tests and parallel hubs) --
PORT = int(os.environ.get("CLASSROOM_PORT", "8000"))
c.JupyterHub.bind_url = f"http://127.0.0.1:{PORT}"  # the proxy: the only URL a browser opens
c.JupyterHub.hub_bind_url = f"http://127.0.0.1:{os.environ.get('CLASSROOM_HUB_PORT', '8081')}"
c.ConfigurableHTTPProxy.api_url = f"http://127.0.0.1:{os.environ.get('CLASSROOM_PROXY_API_PORT', '8001')}"
SERVICE_PORT = int(os.environ.get("CLASSROOM_SERVICE_PORT", "9999"))
# configurable-http-proxy from npm, installed by `make classroom-deps` into classroom/node_modules
c.ConfigurableHTTPProxy.command = [str(HERE / "node_modules" / ".bin" / "configurable-http-proxy")]

# -- the hub's state, kept out of the repository's tracked files --
c.JupyterHub.db_url = f"sqlite:///{STATE / 'jupyterhub.sqlite'}"
c.JupyterHub.cookie_secret_file = str(STATE / "jupyterhub_cookie_secret")
c.JupyterHub.pid_file = str(STATE / "jupyterhub.pid")
c.ConfigurableHTTPProxy.pid_file = str(STATE / "jupyterhub-proxy.pid")
# stopping the hub (Ctrl-C) stops every user's server and the proxy too
c.JupyterHub.cleanup_servers = True
c.JupyterHub.cleanup_proxy = True

# The folders. The exchange gets mode 1777 (like /tmp): every user can write into it, nobody
# can remove what another user put there. nbgrader needs it to exist and be writable by all
# before the first release_assignment ("Unwritable directory, please contact your instructor").
HOMES, COURSE_DIR, EXCHANGE = STATE / "homes", STATE / "course", STATE / "exchange"
GRADER_HOME = HOMES / f"grader-{COURSE_ID}"
for folder in (HOMES, GRADER_HOME, COURSE_DIR / "source", EXCHANGE):
    folder.mkdir(parents=True, exist_ok=True)
EXCHANGE.chmod(0o1777)

# -- who may log in --
# SharedPasswordAuthenticator (JupyterHub >= 5.3) needs no system accounts: students share one
# password, the instructor (a hub admin) has another of at least 32 characters, so a student
# cannot log in as the instructor. For a real class use a real login (docs/classroom.md).
c.JupyterHub.authenticator_class = SharedPasswordAuthenticator
c.SharedPasswordAuthenticator.user_password = os.environ.get("CLASSROOM_STUDENT_PASSWORD")
c.SharedPasswordAuthenticator.admin_password = os.environ.get("CLASSROOM_INSTRUCTOR_PASSWORD")
c.Authenticator.admin_users = {INSTRUCTOR}
c.Authenticator.allowed_users = {INSTRUCTOR, *STUDENTS}

# -- the formgrader: a Jupyter server run by the hub as the service "<course_id>" --
# As in nbgrader's one-class demo, the members of the group formgrade-<course_id> may use it.
# Its root is the course directory; the instructor opens it at /services/<course_id>/formgrader
# in a browser tab of its own (JupyterHub >= 4.1 forbids the iframe that nbgrader's "Formgrader"
# menu item opens inside JupyterLab, which then shows a blank panel: docs/classroom.md).
GRADERS = f"formgrade-{COURSE_ID}"
c.JupyterHub.load_groups = {GRADERS: {"users": [INSTRUCTOR]}}
c.JupyterHub.load_roles = [
    {
        "name": GRADERS,
        "groups": [GRADERS],
        "scopes": [
            f"access:services!service={COURSE_ID}",  # open the formgrader
            "list:services",  # find it in the hub's list of services
            f"read:services!service={COURSE_ID}",
        ],
    },
    {
        # The token of each user's own server. The default is only 'users:activity!user' and
        # 'access:servers!server'; nbgrader's Course List (in the instructor's JupyterLab) asks
        # the formgrader for its status with this token and shows "no courses available" when
        # it is refused. A token never holds more than its owner, so students gain nothing.
        "name": "server",
        "scopes": [
            "users:activity!user",
            "access:servers!server",
            f"access:services!service={COURSE_ID}",
        ],
    },
]


def jupyter_env(role: str, home: Path) -> dict[str, str]:
    """The environment of a Jupyter server: the course's venv first on PATH, nbgrader's config.

    JUPYTER_CONFIG_PATH puts classroom/nbgrader_config.py (course_id, exchange, timeout, kernel)
    in front of every server and every nbgrader command run in its terminal, and the role's
    folder under classroom/jupyter/ turns off the nbgrader extensions this role must not see.
    """
    return {
        "PATH": f"{VENV_BIN}{os.pathsep}/usr/local/bin{os.pathsep}/usr/bin{os.pathsep}/bin",
        "LANG": os.environ.get("LANG", "C.UTF-8"),
        "HOME": str(home),
        "CLASSROOM_DIR": str(STATE),
        "JUPYTER_CONFIG_PATH": os.pathsep.join([str(HERE / "jupyter" / role), str(HERE)]),
        # One thread per kernel: the course's tensors are tiny, and a class shares the cores
        # (a notebook that measures threads sets torch.set_num_threads itself).
        "OMP_NUM_THREADS": "1",
        "MKL_NUM_THREADS": "1",
    }


c.JupyterHub.services = [
    {
        "name": COURSE_ID,
        "url": f"http://127.0.0.1:{SERVICE_PORT}",
        "command": [str(VENV_BIN / "jupyterhub-singleuser"), *SERVER_ARGS],
        "cwd": str(COURSE_DIR),
        # its own home, so that its Jupyter runtime files stay out of the course directory
        "environment": {**jupyter_env("grader", GRADER_HOME),
                        "JUPYTERHUB_DEFAULT_URL": "/formgrader"},
        "oauth_no_confirm": True,
    }
]

# -- each user's own server --
# SimpleLocalProcessSpawner runs every server as this OS user, in its own home folder under
# CLASSROOM_DIR/homes. nbgrader would name every submission after that one OS user:
# classroom/jupyter/student/nbgrader_config.py names it after JUPYTERHUB_USER, which the hub sets.
c.JupyterHub.spawner_class = SimpleLocalProcessSpawner
c.SimpleLocalProcessSpawner.home_dir_template = str(HOMES / "{username}")
c.Spawner.cmd = [str(VENV_BIN / "jupyterhub-singleuser")]
c.Spawner.args = SERVER_ARGS
c.Spawner.default_url = "/lab"


def per_user_environment(spawner) -> None:
    """Give each server its role's environment (the instructor's differs from a student's)."""
    role = "instructor" if spawner.user.name == INSTRUCTOR else "student"
    spawner.environment = {**spawner.environment, **jupyter_env(role, HOMES / spawner.user.name)}


c.Spawner.pre_spawn_hook = per_user_environment
# a server starts in 3-6 s alone, but 30 students logging in at once on a small machine take longer
c.Spawner.start_timeout = 180
c.Spawner.http_timeout = 180
