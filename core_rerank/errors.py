"""The errors a user can cause, as two types every entry point treats the same way.

- :class:`InputError`: the input is wrong (an empty query, a head that does not exist, a run
  with no lines, an option out of range). The CLI prints it in one line and exits 2; the
  server answers 4xx with its message. It is a ``ValueError`` (and a ``TypeError``, for the
  few checks that used to raise that), so ``except ValueError`` keeps working.
- :class:`MissingExtra`: an optional dependency is not installed; the message says which
  ``pip install "core-rerank[...]"`` brings it. It is an ``ImportError``.

Anything else is a bug of ours: the CLI shows its traceback, the server answers 500 in its JSON
error shape with an error id that is also in the log.
"""

from __future__ import annotations


class InputError(ValueError, TypeError):
    """The input (arguments, files, request) is wrong; the message says what and how to fix it."""


class MissingExtra(ImportError):
    """An optional dependency is missing; the message names the extra that installs it."""


class HeadConfigError(InputError):
    """A head configuration is malformed or does not fit the model it is used with."""
