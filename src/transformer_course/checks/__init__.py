"""The exercise checks: run the learner's function and the reference on fresh random inputs.

A check prints one short line when the answer is right, prints "not done yet" while the
task still raises ``NotImplementedError``, and otherwise raises ``CheckFailed`` with a
sentence that says what is wrong (a wrong shape, a forgotten scale, a transposed result,
rows that do not sum to one ...), not only that something is.

Every check uses its own seeded ``torch.Generator``: it never moves the notebook's global
random state, and a failure shows up the same way twice. Under nbgrader's autograder
(``NBGRADER_EXECUTION`` set) a task not done fails instead of printing "not done yet".

One module per notebook; all checks are importable from here: ``checks.check_softmax``.
"""

from ._core import CheckFailed, CheckResult, call, check_distribution, compare, fmt_shape, run_check
from .attention import *  # noqa: F403
from .complexity import *  # noqa: F403
from .decoding import *  # noqa: F403
from .efficient import *  # noqa: F403
from .gpt import *  # noqa: F403
from .positional import *  # noqa: F403
from .rnns import *  # noqa: F403
from .seq2seq import *  # noqa: F403
from .seq2seq_attention import *  # noqa: F403
from .transformer import *  # noqa: F403
from .warmup import *  # noqa: F403

__all__ = ["CheckFailed", "CheckResult", "call", "check_distribution", "compare", "fmt_shape", "run_check"]
