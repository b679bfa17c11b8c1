"""The experiments of the notebooks: one module per notebook topic.

What exists only for one notebook's measurement or figure lives here: the models built only
for an experiment, the sweeps and the figure functions that the widgets call. The components
(``attention``, ``transformer``, ...) never import this package; these modules import them.
"""
