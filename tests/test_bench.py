"""`make bench`'s turn-taking timer (tools/interleave.py): commands timed in turns on one machine."""
import sys
import time

import pytest

from bert_in_a_flask.tools.interleave import Contender, interleaved_rates

pytestmark = pytest.mark.slow  # starts processes

# A fake trainer: each step burns `seconds` of its own CPU time (which stops while it is paused),
# then prints its progress line; with a step limit it ends after that many steps.
FAKE = """
import sys, time
seconds, limit = float(sys.argv[1]), int(sys.argv[2])
for step in range(1, limit + 1):
    started = time.process_time()
    while time.process_time() - started < seconds:
        pass
    print("INFO step %d/%d  0.0 examples/s" % (step, limit), flush=True)
print("the fake trainer is done")
"""


def fake(name, step_seconds, limit=100000):
    return Contender(name, [sys.executable, "-c", FAKE, str(step_seconds), str(limit)])


def test_each_command_is_timed_only_while_it_runs():
    rates = interleaved_rates([fake("fast", 0.02), fake("slow", 0.05)], warm_up_steps=2, slice_s=0.6, rounds=3)
    # Counting the time a command spends paused would halve both rates.
    assert 0.7 * 50 < rates["fast"] < 1.1 * 50, rates
    assert 0.7 * 20 < rates["slow"] < 1.1 * 20, rates


def test_a_paused_command_makes_no_progress_and_every_command_is_stopped_at_the_end():
    first, second = fake("first", 0.01), fake("second", 0.01)
    try:
        first.warm_up(3, timeout=60)
        paused_at = first.step
        time.sleep(0.5)
        assert first.step == paused_at
        finished, seconds = first.run_slice(0.3, timeout=60)
        assert finished >= 10 and 0.3 <= seconds < 1.0
        resting = first.step
        time.sleep(0.3)
        assert first.step == resting  # paused again after its turn
    finally:
        first.stop()
    interleaved_rates([second], warm_up_steps=1, slice_s=0.2, rounds=1)
    assert first.process.poll() is not None and second.process.poll() is not None


def test_a_command_that_ends_early_is_named_with_its_last_output():
    short = fake("short", 0.01, limit=20)
    with pytest.raises(RuntimeError) as raised:
        interleaved_rates([fake("long", 0.01), short], warm_up_steps=2, slice_s=2.0, rounds=2)
    assert "short ended before its step 21" in str(raised.value)
    assert "the fake trainer is done" in str(raised.value)


def test_the_ceiling_gemm_is_timed_on_every_engine_including_the_one_that_serves():
    # The served model's products run on onnxruntime's MatMul, which on an AVX-512 CPU outran TF's:
    # the ceiling must include it, or the "share of the ceiling" flatters the server.
    from bert_in_a_flask.tools.turns import in_turns_with_gemm
    timed = in_turns_with_gemm([], per_step=1, rounds=1, slice_s=1.0, what="the GEMM")
    assert set(timed.overall) == {"gemm-numpy", "gemm-tf", "gemm-onnxruntime"}
    assert all(gflops > 1 for gflops in timed.overall.values()), timed.overall
