"""`make bench`'s table: printed, and written to docs/bench/ (one results file per CPU and runtime)."""
import contextlib
import io
import os
import re
import sys
import time

from . import REPO_ROOT as ROOT
from ..shared.cli import UsageError
from ..shared.errors import UserError
from ..shared.tf_compat import TF_VERSION

# The trainer flags every tool sets itself (ood.train): its own split, model copy and run folder.
TOOL_PATH_FLAGS = ("--data-file", "--val-file", "--test-file", "--bert-dir", "--output-dir", "--cache-dir")
TOOL_SET_FLAGS = ("--skip-onnx", "--overwrite")  # and these: the tools measure the SavedModel, afresh


def print_table(rows, only="all"):
    """Print the table, and write it to docs/bench/<cpu>-<runtime>[-<only>].md (the results file
    docs/performance.md links: one per CPU and runtime, the latest run's)."""
    header = "bench: TF %s, Python %d.%d, %d cores, MiniLM-L6 on SO titles" % (
        TF_VERSION, sys.version_info[0], sys.version_info[1], os.cpu_count())
    width = max(len(r[0]) for r in rows)
    table = ["| %s | value | vs |" % "measure".ljust(width), "|%s|---|---|" % ("-" * (width + 2))]
    table += ["| %s | %s | %s |" % (name.ljust(width), value, note) for name, value, note in rows]
    print("\n%s\n" % header)
    print("\n".join(table))
    path = write_results(header, table, TF_VERSION, only)
    print("\nwritten to %s" % os.path.relpath(path, ROOT))
    return 0


def cpu_model():
    """lscpu's model name (from /proc/cpuinfo), the machine a table belongs to."""
    try:
        with open("/proc/cpuinfo") as handle:
            for line in handle:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown CPU"


def publish(kind, header, lines, suffix=""):
    """Print a tool's table (`make ood`, `make imbalance`) and write it to its results file."""
    from ..shared.tf_compat import TF_VERSION
    print("\n" + header + "\n\n" + "\n".join(lines))
    path = results_path(kind, TF_VERSION, suffix)
    with open(path, "w", encoding="utf-8") as handle:
        handle.write("# `make %s` on %s\n\n%s, TF %s; %s\n\n%s\n" % (
            kind, cpu_model(), time.strftime("%Y-%m-%d"), TF_VERSION, header, "\n".join(lines)))
    print("\nwritten to %s" % os.path.relpath(path, ROOT))


def split_trainer_flags(argv):
    """(a tool's own arguments, the trainer flags after `--`). The Makefile puts `args` before the
    recipe, so `make ood args="--seed 1 -- --num-train-epochs 3"` reaches here as
    `own -- changes -- recipe`: a change replaces the recipe's value of the same flag, so the results
    file names each flag once, with the value the run used."""
    if "--" not in argv:
        return argv, []
    own, rest = argv[:argv.index("--")], argv[argv.index("--") + 1:]
    if "--" in rest:
        changes, recipe = rest[:rest.index("--")], rest[rest.index("--") + 1:]
        rest = _override_flags(recipe, changes)
    return own, rest


def check_tool_flags(tool, trainer_flags, owned, runs):
    """A UserError, before the tool writes anything, for trainer flags that would go wrong later: a flag
    `make <tool>` sets itself, which would be overridden without a word or take the run away from the
    tool's own files (`owned`: {flag: what to do instead}), or flags the trainer refuses in one of
    `runs` (each run's trainer flags, as the tool will pass them) found only after the runs before it."""
    for group in flag_groups(trainer_flags):
        flag = group[0]
        if flag in TOOL_PATH_FLAGS:
            raise UserError("%s is set by make %s: it trains on its own split in its work folder" % (flag, tool))
        if flag in owned:
            raise UserError("%s is set by make %s: %s" % (flag, tool, owned[flag]))
    for flags in runs:
        refused = trainer_refusal(flags)
        if refused is None:
            continue
        # a refusal that names a flag the tool added, not the user, says so
        given = {group[0] for group in flag_groups(trainer_flags)}
        named = [" ".join(group) for group in flag_groups(list(flags) + list(TOOL_SET_FLAGS))
                 if group[0] not in given and re.search(r"(?<![\w-])%s(?![\w-])" % re.escape(group[0]), refused)]
        raise UserError("trainer flags: %s%s" % (refused, " (make %s adds %s)" % (tool, ", ".join(named))
                                                  if named else ""))


def trainer_refusal(flags):
    """The trainer's message refusing `flags` (with the flags every tool sets), None when it takes them."""
    from ..training.cli import parse_args
    try:
        with contextlib.redirect_stderr(io.StringIO()):  # the trainer's own line would name its --help
            parse_args(list(flags) + list(TOOL_SET_FLAGS))
    except UsageError as refused:
        return refused.message
    return None


def flag_groups(flags):
    """["--a", "1", "--b", "--c=x"] -> [["--a", "1"], ["--b"], ["--c", "x"]]."""
    groups = []
    for token in flags:
        if token.startswith("--") and "=" in token:
            groups.append(token.split("=", 1))
        elif token.startswith("--") or not groups:
            groups.append([token])
        else:
            groups[-1].append(token)
    return groups


def _override_flags(recipe, changes):
    change_groups = flag_groups(changes)
    changed = {group[0]: group for group in change_groups}
    merged = [changed.pop(group[0], group) for group in flag_groups(recipe)]
    merged += [group for group in change_groups if group[0] in changed]
    return [token for group in merged for token in group]


def results_path(kind, tf_version, suffix=""):
    """docs/bench/[<kind>-]<cpu>-tf<major.minor>[-<suffix>].md: one results file per tool, CPU and runtime."""
    name = "%s%s-tf%s%s" % (kind + "-" if kind else "", re.sub(r"[^a-z0-9]+", "-", cpu_model().lower()).strip("-"),
                            tf_version.rsplit(".", 1)[0], "-" + suffix if suffix else "")
    folder = os.path.join(ROOT, "docs", "bench")
    os.makedirs(folder, exist_ok=True)
    return os.path.join(folder, name + ".md")


def write_results(header, table, tf_version, only):
    cpu = cpu_model()
    path = results_path("", tf_version, "" if only == "all" else only)
    with open(path, "w", encoding="utf-8") as handle:
        handle.write("# `make bench`%s on %s\n\n%s, %s; %s.\n\n%s\n" % (
            "" if only == "all" else " (--only %s)" % only, cpu, time.strftime("%Y-%m-%d"), header,
            "ratios measured in this one run", "\n".join(table)))
    return path
