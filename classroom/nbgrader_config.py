# nbgrader's configuration for the course, the same for every account: the students' servers,
# the instructor's, the formgrader service, and nbgrader commands run in their terminals.
# classroom/jupyterhub_config.py puts this folder on JUPYTER_CONFIG_PATH for all of them; on
# The Littlest JupyterHub copy it to /etc/jupyter/nbgrader_config.py (docs/classroom.md).
# ruff: noqa: F821  (nbgrader defines get_config)

import os
from pathlib import Path

c = get_config()

# The course. Without a course_id, students' fetch and submit fail ("No course id specified")
# and the instructor's Course List finds no formgrader. It must equal the name of the hub's
# formgrader service and of its group formgrade-<course_id> (jupyterhub_config.py).
c.CourseDirectory.course_id = "transformer-course"

# Where things live. CLASSROOM_DIR is the folder the local hub writes to (classroom/run by
# default); on a real server set NBGRADER_EXCHANGE and NBGRADER_COURSE_ROOT instead, e.g.
# /srv/nbgrader/exchange and /home/grader-transformer-course/course.
STATE = Path(os.environ.get("CLASSROOM_DIR", Path(__file__).resolve().parent / "run"))

# The exchange: release_assignment writes here, students fetch and submit here, collect reads.
# It must exist before the first release and be writable by everyone (mode 1777): the hub
# config creates it so. Every user must see the same folder, so on Kubernetes it is a shared
# (NFS) volume or an exchange service (docs/classroom.md).
c.Exchange.root = os.environ.get("NBGRADER_EXCHANGE", str(STATE / "exchange"))

# The instructor's course directory (source/, release/, submitted/, autograded/, feedback/,
# gradebook.db): the formgrader service runs in it. Students never use it.
c.CourseDirectory.root = os.environ.get("NBGRADER_COURSE_ROOT", str(STATE / "course"))

# Autograding. nbgrader's default timeout of 30 s a cell is short for a notebook that imports
# PyTorch and trains a small model on a busy server. Measured here (2 cores, nbgrader autograde
# on each solution notebook, docs/classroom.md): the slowest notebook took 20 s in all and its
# slowest cell 9 s. 120 s a cell is 13 times that; a student's endless loop costs 2 minutes.
c.ExecutePreprocessor.timeout = 120
# the kernel of a busy server can take a while to start (import torch from a cold disk)
c.ExecutePreprocessor.startup_timeout = 120
# Always the course's kernel, whatever kernelspec a submitted notebook names: "python3" of
# the Python that runs nbgrader, which is the course's environment (torch, transformer_course).
c.ExecutePreprocessor.kernel_name = "python3"
