# The instructor's own server: the Assignments list (to try an assignment as a student sees
# it) and the Course List, which links to the formgrader service /services/<course_id>/.
# Grading runs in that service, in the course directory, not here.
c = get_config()  # noqa: F821
c.ServerApp.jpserver_extensions = {
    "nbgrader.server_extensions.formgrader": False,
}
# A classroom asks no one about Jupyter news or JupyterLab updates (and a server may be offline).
c.LabApp.news_url = None
c.LabApp.check_for_updates_class = "jupyterlab.NeverCheckForUpdate"
