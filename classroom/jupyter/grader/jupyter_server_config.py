# The formgrader service (JupyterHub starts it as the service named after the course, in the
# course directory): the formgrader and Create Assignment; no student-side extensions.
c = get_config()  # noqa: F821
c.ServerApp.jpserver_extensions = {
    "nbgrader.server_extensions.assignment_list": False,
    "nbgrader.server_extensions.course_list": False,
}
# A classroom asks no one about Jupyter news or JupyterLab updates (and a server may be offline).
c.LabApp.news_url = None
c.LabApp.check_for_updates_class = "jupyterlab.NeverCheckForUpdate"
