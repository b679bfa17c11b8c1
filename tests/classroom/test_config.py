"""classroom/'s configuration files agree with each other, with the course and with what was measured.

Fast and without a hub: the cycle itself is tests/classroom/test_classroom.py. The Kubernetes
values (classroom/z2jh-values.yaml) cannot be deployed here, so this is all that checks them.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml
from traitlets.config.loader import PyFileConfigLoader

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[2]
CLASSROOM = ROOT / "classroom"
COURSE_ID = "transformer-course"
# nbgrader autograde on every solution notebook (docs/classroom.md): the slowest cell took 8.8 s
SLOWEST_CELL_S = 8.8


def load(path: Path, monkeypatch, tmp_path) -> dict:
    monkeypatch.setenv("CLASSROOM_DIR", str(tmp_path))
    monkeypatch.delenv("NBGRADER_EXCHANGE", raising=False)
    monkeypatch.delenv("NBGRADER_COURSE_ROOT", raising=False)
    return PyFileConfigLoader(path.name, str(path.parent)).load_config()


def test_nbgrader_config_sets_the_course_the_exchange_and_a_measured_timeout(monkeypatch, tmp_path):
    c = load(CLASSROOM / "nbgrader_config.py", monkeypatch, tmp_path)
    assert c.CourseDirectory.course_id == COURSE_ID
    assert c.Exchange.root == str(tmp_path / "exchange")  # explicit, never nbgrader's default
    assert c.CourseDirectory.root == str(tmp_path / "course")
    assert c.ExecutePreprocessor.timeout >= 10 * SLOWEST_CELL_S > 30  # nbgrader's default: 30 s
    assert c.ExecutePreprocessor.kernel_name == "python3"


def test_students_are_named_after_their_hub_user(monkeypatch, tmp_path):
    monkeypatch.setenv("JUPYTERHUB_USER", "student7")
    c = load(CLASSROOM / "jupyter" / "student" / "nbgrader_config.py", monkeypatch, tmp_path)
    assert c.CourseDirectory.student_id == "student7"


@pytest.mark.parametrize("role, server_off, lab_off", [
    # students: the Assignments list and Validate, nothing of grading
    ("student", {"formgrader", "course_list"}, {"formgrader", "create-assignment", "course-list"}),
    # the instructor's own server: the Assignments and Course lists; grading is in the service
    ("instructor", {"formgrader"}, {"formgrader", "create-assignment"}),
    # the formgrader service: grading and Create Assignment, nothing of a student's
    ("grader", {"assignment_list", "course_list"}, {"assignment-list", "course-list"}),
])
def test_each_role_turns_off_the_nbgrader_parts_it_must_not_have(role, server_off, lab_off,
                                                                 monkeypatch, tmp_path):
    folder = CLASSROOM / "jupyter" / role
    config = load(folder / "jupyter_server_config.py", monkeypatch, tmp_path)
    extensions = config.ServerApp.jpserver_extensions
    off = {k.removeprefix("nbgrader.server_extensions.") for k, on in extensions.items() if not on}
    assert off == server_off
    page = json.loads((folder / "labconfig" / "page_config.json").read_text())
    off = {k.removeprefix("@jupyter/nbgrader:") for k, v in page["disabledExtensions"].items() if v}
    assert off == lab_off


def test_the_hub_serves_the_formgrader_as_the_course_s_service(monkeypatch, tmp_path):
    pytest.importorskip("jupyterhub", reason="jupyterhub is not installed (make classroom-deps)")
    c = load(CLASSROOM / "jupyterhub_config.py", monkeypatch, tmp_path)
    (service,) = c.JupyterHub.services
    assert service["name"] == COURSE_ID  # nbgrader's Course List finds the formgrader by this name
    group = f"formgrade-{COURSE_ID}"
    assert c.JupyterHub.load_groups[group]["users"] == ["instructor"]
    roles = {r["name"]: r for r in c.JupyterHub.load_roles}
    assert f"access:services!service={COURSE_ID}" in roles[group]["scopes"]
    assert f"access:services!service={COURSE_ID}" in roles["server"]["scopes"]
    assert (tmp_path / "exchange").stat().st_mode & 0o7777 == 0o1777  # writable by all, sticky


def test_versions_are_pinned_exactly():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    extra = project["optional-dependencies"]["classroom"]
    assert all(re.fullmatch(r"[a-z-]+==[0-9.]+", r) for r in extra), extra
    package = json.loads((CLASSROOM / "package.json").read_text())
    lock = json.loads((CLASSROOM / "package-lock.json").read_text())
    pinned = package["dependencies"]["configurable-http-proxy"]
    assert re.fullmatch(r"[0-9]+\.[0-9]+\.[0-9]+", pinned)
    assert lock["packages"]["node_modules/configurable-http-proxy"]["version"] == pinned


def kernel_peaks_mb(folder: str) -> list[float]:
    """bench/results.md's kernel peak memory of every notebook in ``folder``."""
    rows = [r.split("|") for r in (ROOT / "bench" / "results.md").read_text().splitlines()
            if r.startswith(f"| {folder}/")]
    return [float(r[3]) for r in rows]


def load_student_mb() -> list[float]:
    """bench/classroom.md's largest memory of one student (server + kernel) in each load run."""
    text = (ROOT / "bench" / "classroom.md").read_text()
    found = re.findall(r"\| memory of one student: server \+ kernel \(MB\) \| [0-9.]+ / ([0-9.]+) \|", text)
    assert len(found) >= 3, "bench/classroom.md should hold at least three load runs"
    return [float(x) for x in found]


def test_the_load_measurement_ran_at_least_8_students_without_failures():
    text = (ROOT / "bench" / "classroom.md").read_text()
    sizes = [int(n) for n in re.findall(r"\| all (\d+) students done \(s\) \|", text)]
    failures = [int(n) for n in re.findall(r"\| students whose session failed \| (\d+) \|", text)]
    assert sizes and max(sizes) >= 8 and len(failures) == len(sizes) and not any(failures)


def test_the_kubernetes_values_agree_with_classroom_and_the_measurements():
    values = yaml.safe_load((CLASSROOM / "z2jh-values.yaml").read_text())
    user = values["singleuser"]
    env = user["extraEnv"]
    # the image holds the repository at /srv/repo: the same nbgrader files as the local hub
    for folder in env["JUPYTER_CONFIG_PATH"].split(":"):
        assert folder.startswith("/srv/repo/")
        assert (ROOT / folder.removeprefix("/srv/repo/")).is_dir(), folder
    assert "/classroom/jupyter/student:" in env["JUPYTER_CONFIG_PATH"]
    # the shared exchange is mounted where nbgrader looks for it
    mounts = {m["name"]: m["mountPath"] for m in user["storage"]["extraVolumeMounts"]}
    assert mounts["nbgrader-exchange"] == env["NBGRADER_EXCHANGE"]
    claim = user["storage"]["extraVolumes"][0]["persistentVolumeClaim"]["claimName"]
    assert claim == "nbgrader-exchange"
    assert user["image"]["tag"] not in ("latest", "")
    # idle servers are culled, users kept
    cull = values["cull"]
    assert cull["enabled"] and cull["timeout"] <= 4 * 3600 and not cull["users"]
    # memory: the guarantee covers a server and an exercise's kernel, the limit a lecture's
    units = {"M": 1, "G": 1024}
    guarantee, limit = (float(user["memory"][k][:-1]) * units[user["memory"][k][-1]]
                        for k in ("guarantee", "limit"))
    server_mb = 150  # a jupyterhub-singleuser server alone (bench/classroom_load.py)
    assert guarantee >= server_mb + max(kernel_peaks_mb("solutions"))
    assert limit >= server_mb + max(kernel_peaks_mb("notebooks")) * 1.5
    # and the measured load: a student's server and exercise kernel, with a margin
    assert guarantee >= 1.5 * max(load_student_mb()), (guarantee, load_student_mb())
    # the instructor's server is the formgrader, with the course on their home volume
    hook = values["hub"]["extraConfig"]["classroom-grader"]
    assert "/srv/repo/classroom/jupyter/grader:/srv/repo/classroom" in hook
    assert (CLASSROOM / "jupyter" / "grader").is_dir()
    assert values["hub"]["config"]["Authenticator"]["admin_users"] == ["instructor"]


def test_the_guides_quote_the_measured_lecture_peak():
    """The instructor's guide and the load report quote the largest lecture kernel of bench/results.md."""
    peak_gb = max(kernel_peaks_mb("notebooks")) / 1000
    for path in (ROOT / "docs" / "classroom.md", ROOT / "bench" / "classroom.md"):
        pattern = r"peaks? at up to\s+([0-9.]+) GB|at its ([0-9.]+) GB peak|^\s*([0-9.]+) GB \(notebook"
        quoted = re.findall(pattern, path.read_text(), flags=re.M)
        numbers = [float(next(x for x in match if x)) for match in quoted]
        assert numbers, f"{path.name} quotes no lecture peak"
        for number in numbers:
            assert abs(number - peak_gb) <= 0.1, (
                f"{path.name} quotes a lecture kernel peak of {number} GB; bench/results.md measured "
                f"{peak_gb:.2f} GB: update the guide and its sizing table")
