# A student's server (JupyterHub puts this folder on JUPYTER_CONFIG_PATH for students):
# nbgrader's Assignments list and Validate button stay; the grading extensions go.
# labconfig/page_config.json beside this file hides the same parts of the JupyterLab UI.
c = get_config()  # noqa: F821
c.ServerApp.jpserver_extensions = {
    "nbgrader.server_extensions.formgrader": False,
    "nbgrader.server_extensions.course_list": False,
}
# A classroom asks no one about Jupyter news or JupyterLab updates (and a server may be offline).
c.LabApp.news_url = None
c.LabApp.check_for_updates_class = "jupyterlab.NeverCheckForUpdate"
