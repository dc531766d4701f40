"""User-facing errors: one line, no traceback, a non-zero exit from the CLI."""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class UserError(Exception):
    """A problem with the user's input (file, flag, data), reported as one line by the CLI."""

    exit_code = 2


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    """'; did you mean 'x'?' when a close match exists, else the list of valid choices."""
    choices = sorted(choices)
    close = difflib.get_close_matches(word, choices, n=1)
    if close:
        return f"; did you mean '{close[0]}'?"
    return f"; valid choices: {', '.join(choices)}"
