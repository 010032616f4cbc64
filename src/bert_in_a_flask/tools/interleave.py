"""Time several training commands on the same machine in turns, so that each sees the same machine.

A small cloud machine's speed drifts (a third, within minutes, on the 2-core machines this was
written on), so timing trainers one after another puts that drift into their ratio. Here each
command starts and warms up alone and is then paused (SIGSTOP); every round resumes one command
at a time for a slice of about `slice_s` seconds, ending just after one of its steps, and pauses it
again. A command's rate is the steps it finished inside its slices over the slices' total time: the
commands are compared over interleaved stretches of the same minutes.

A command reports progress by printing a line containing "step N" after its N-th step (the
trainer's progress line with --log-every-steps 1; the HF peer's --print-steps).
"""
import collections
import os
import re
import signal
import subprocess
import threading
import time

STEP = re.compile(r"\bstep (\d+)\b")


class Contender(object):
    """One command, started paused-able in its own process group; a reader thread follows its steps."""

    def __init__(self, name, args, env=None):
        self.name, self._args, self._env = name, args, env
        self.process = None
        self.step, self.step_at, self.ended = 0, 0.0, False
        self._tail = collections.deque(maxlen=40)
        self._changed = threading.Condition()

    def start(self):
        self.process = subprocess.Popen(self._args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                        universal_newlines=True, env=self._env, start_new_session=True)
        threading.Thread(target=self._follow, daemon=True).start()

    def _follow(self):
        for line in self.process.stdout:
            arrived = time.perf_counter()
            self._tail.append(line)
            match = STEP.search(line)
            if match:
                with self._changed:
                    self.step, self.step_at = int(match.group(1)), arrived
                    self._changed.notify_all()
        with self._changed:
            self.ended = True
            self._changed.notify_all()

    def _wait(self, condition, timeout):
        """(step, its arrival time) once `condition()` holds; an error with the output's tail if
        the command ended or `timeout` passed first."""
        with self._changed:
            self._changed.wait_for(lambda: self.ended or condition(), timeout)
            if not condition():
                raise RuntimeError("%s %s before its step %d:\n%s" % (
                    self.name, "ended" if self.ended else "stalled", self.step + 1, "".join(self._tail)))
            return self.step, self.step_at

    def _signal(self, number):
        try:
            os.killpg(self.process.pid, number)
        except ProcessLookupError:  # it has ended; _wait says so
            pass

    def warm_up(self, steps, timeout):
        """Start, run `steps` steps alone, pause."""
        self.start()
        self._wait(lambda: self.step >= steps, timeout)
        self._signal(signal.SIGSTOP)

    def run_slice(self, seconds, timeout):
        """Resume for about `seconds`, until the first step that ends after them; pause.
        Returns (steps finished, seconds from resuming to the last one's end)."""
        before = self.step
        resumed = time.perf_counter()
        self._signal(signal.SIGCONT)
        try:
            step, at = self._wait(lambda: self.step_at >= resumed + seconds, seconds + timeout)
        finally:
            self._signal(signal.SIGSTOP)
        return step - before, at - resumed

    def stop(self):
        if self.process is not None and self.process.poll() is None:
            self._signal(signal.SIGKILL)
            self.process.wait()


def interleaved_turns(contenders, slice_s, rounds, warm_up_steps=5, timeout_s=600.0):
    """{name: [(steps, seconds) of each round's turn]} of each Contender, measured in turns (see
    the module's docstring); every command is stopped at the end, or at the first failure."""
    turns = {contender.name: [] for contender in contenders}
    try:
        for contender in contenders:  # one at a time: start-up and warm-up never overlap
            contender.warm_up(warm_up_steps, timeout_s)
        for _ in range(rounds):
            for contender in contenders:
                turns[contender.name].append(contender.run_slice(slice_s, timeout_s))
    finally:
        for contender in contenders:
            contender.stop()
    return turns


def rate(turns):
    """Steps per second over a list of (steps, seconds) turns."""
    return sum(steps for steps, _ in turns) / sum(seconds for _, seconds in turns)


def interleaved_rates(contenders, **kwargs):
    """{name: steps/s} of each Contender over all its turns (interleaved_turns's arguments)."""
    return {name: rate(turns) for name, turns in interleaved_turns(contenders, **kwargs).items()}
