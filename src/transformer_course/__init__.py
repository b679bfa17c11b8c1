"""transformer_course: the helpers shared by the notebooks of the course.

One module per concept: ``utils`` (seeds, device, progress bars), ``data`` (the
synthetic tasks), ``checks`` (the exercise checks), ``rnn``, ``seq2seq``, ``train`` ...
Import what a notebook needs explicitly, e.g. ``from transformer_course import utils``.
"""

__version__ = "0.1.0"
