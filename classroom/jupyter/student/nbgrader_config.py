# nbgrader in a student's server (added to classroom/nbgrader_config.py, which all share).
# ruff: noqa: F821
import os

c = get_config()

# nbgrader names a submission after the OS user who submits it, except for the Docker images'
# "jovyan", where it takes JUPYTERHUB_USER. Here every server runs as one OS user (and on The
# Littlest JupyterHub as jupyter-<name>), so name the student after the hub's user instead:
# the same student ids on the local hub, TLJH and Kubernetes.
if os.environ.get("JUPYTERHUB_USER"):
    c.CourseDirectory.student_id = os.environ["JUPYTERHUB_USER"]
