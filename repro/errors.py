"""The one error type a user can cause: printed as one line, exit code 2 (DESIGN.md, 'Errors and input')."""


class UserError(Exception):
    """A mistake in the user's input: unknown spec, bad YAML, value out of range, missing data.

    The message is one line that names the thing and what to do about it.
    """
