"""`make docs`: the README's settings table, made from serving/settings.py (the one definition of each
setting), so the two cannot disagree; `--check` (the tests) only says whether they do.

    python -m bert_in_a_flask.tools.docs [--check]
"""
import os
import sys

from ..serving.settings import SETTINGS
from ..shared.cli import ArgumentParser
from . import REPO_ROOT

README = os.path.join(REPO_ROOT, "README.md")
BEGIN = "<!-- settings table: made by `make docs` from serving/settings.py -->"
END = "<!-- end of the settings table -->"


def shown(default):
    """A default as one would write it in the environment."""
    if isinstance(default, bool):
        return "`%s`" % ("true" if default else "false")
    if isinstance(default, float) and default == int(default):
        default = int(default)
    return "`%s`" % default if default != "" else "(none)"


def settings_table():
    lines = ["| variable | default | what it does |", "|---|---|---|"]
    lines += ["| `%s` | %s | %s |" % (name, shown(default), doc.replace("|", "\\|")) for name, default, doc in SETTINGS]
    return "\n".join(lines)


def with_table(text):
    """`text` (the README) with the table between its markers made anew."""
    if BEGIN not in text or END not in text:
        raise SystemExit("error: README.md has no settings-table markers (%s ... %s)" % (BEGIN, END))
    head, rest = text.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    return "%s%s\n%s\n%s%s" % (head, BEGIN, settings_table(), END, tail)


def main(argv=None):
    parser = ArgumentParser(description=__doc__)
    parser.add_argument("--check", action="store_true", help="exit 1 when the README's table is not the code's")
    args = parser.parse_args(argv)
    with open(README, encoding="utf-8") as handle:
        text = handle.read()
    wanted = with_table(text)
    if args.check:
        if wanted != text:
            print("error: README.md's settings table differs from serving/settings.py; run `make docs`",
                  file=sys.stderr)
            return 1
        return 0
    if wanted != text:
        with open(README, "w", encoding="utf-8") as handle:
            handle.write(wanted)
        print("README.md: settings table written (%d settings)" % len(SETTINGS))
    return 0


if __name__ == "__main__":
    sys.exit(main())
