"""What every command line shares: one-line argparse errors, defaults in --help, checked numbers.

A bad flag stops the command before anything is loaded or deleted, with one line
`error: --batch-size must be a positive integer, not 0` and exit code 2 (the same code
`errors.run_cli` gives a UserError found later).
"""
import argparse
import sys


class HelpFormatter(argparse.RawDescriptionHelpFormatter, argparse.ArgumentDefaultsHelpFormatter):
    """The module docstring as written, and every flag's default in --help."""


class UsageError(SystemExit):
    """A command line's mistake, its line printed: exit code 2, and the `message` for a caller that
    checks another command's flags (tools/bench_results.py) and words the error its own way."""

    def __init__(self, message):
        super(UsageError, self).__init__(2)
        self.message = message


class ArgumentParser(argparse.ArgumentParser):
    """argparse, but a usage mistake is one `error: ...` line (exit 2), not the whole usage text."""

    def __init__(self, description=None, **kwargs):
        kwargs.setdefault("formatter_class", HelpFormatter)
        super(ArgumentParser, self).__init__(description=description, **kwargs)

    def error(self, message):
        self._print_message("error: %s (see --help)\n" % message, sys.stderr)
        raise UsageError(message)


def _number(convert, kind, accept):
    def parse(raw):
        try:
            value = convert(raw)
        except ValueError:
            raise argparse.ArgumentTypeError("must be %s, not %r" % (kind, raw))
        if value != value or not accept(value):  # value != value: NaN
            raise argparse.ArgumentTypeError("must be %s, not %s" % (kind, raw))
        return value
    parse.__name__ = kind  # argparse names the type in some of its own messages
    return parse


positive_int = _number(int, "a positive integer", lambda v: v > 0)
non_negative_int = _number(int, "an integer >= 0", lambda v: v >= 0)
positive_float = _number(float, "a positive number", lambda v: 0 < v < float("inf"))
fraction = _number(float, "a number in [0, 1)", lambda v: 0 <= v < 1)
share = _number(float, "a number in (0, 1]", lambda v: 0 < v <= 1)


def at_least(minimum):
    return _number(int, "an integer >= %d" % minimum, lambda v: v >= minimum)


def missing_package_hint(exc, script):
    """One line for a CLI started with a Python that lacks the project's packages."""
    return ("error: %s: `%s` needs the project's virtualenv; run it through make (`make help`) or as "
            "`.venv-python3.7/bin/python %s` (`make venv` builds it)" % (exc, sys.executable, script))
