"""Several independent input checks, one report: preflight names every problem it finds (every
missing dataset, checkpoint and weights file) in one line instead of stopping at the first."""
from __future__ import annotations

from contextlib import contextmanager

from repro.errors import UserError


class Problems:
    def __init__(self):
        self.errors: list[UserError] = []

    @contextmanager
    def check(self):
        """Run a check; its UserError is kept (not raised) and the next check runs."""
        try:
            yield
        except UserError as e:
            self.errors.append(e)

    def raise_if_any(self) -> None:
        """One problem: its own error; several: one error naming them all, of the first one's type
        (e.g. FIDUnavailable), so that callers catching a kind of problem still catch it."""
        if len(self.errors) == 1:
            raise self.errors[0]
        if self.errors:
            lines = list(dict.fromkeys(str(e).splitlines()[0] if str(e) else type(e).__name__ for e in self.errors))
            message = f"{len(lines)} problems: " + "; ".join(lines)
            try:
                combined = type(self.errors[0])(message)
            except TypeError:  # a subclass with another constructor
                combined = UserError(message)
            raise combined from self.errors[0]
