"""transformer_course: the helpers shared by the notebooks of the course.

Components, one concept each: ``rnn``, ``seq2seq``, ``attention``, ``positional``,
``transformer``, ``gpt``, ``efficient``, with ``data``, ``train``, ``decoding`` and ``utils``.
Beside them: ``_validate`` (input checks), ``measure`` (memory, operator traces, timers,
power-law fits), ``reference`` (weight copies from PyTorch's modules), ``widgets``,
``experiments/`` (one module per notebook topic) and ``checks/`` (the exercise checks).
Import what a notebook needs explicitly, e.g. ``from transformer_course import utils``.
"""

__version__ = "0.1.0"
