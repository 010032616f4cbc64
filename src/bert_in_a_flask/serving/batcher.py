"""Per-worker micro-batching: texts of requests that arrive together share one forward pass.

Each request thread submits its word-piece id lists and waits; one batcher thread takes what is
queued (up to `max_batch_size` texts, waiting at most `max_wait_ms` for more after the first),
runs it through `forward` (which sorts by length and pads per batch) and hands each request its
own rows back. While a forward pass runs, new requests queue up and go together in the next one.

The wait for company is spent only while passes are shared: after a pass that served one request
alone, the next takes what is queued and goes at once. A lone sequential caller would otherwise pay
the wait on every call (one title per request through wrk at 1 connection: 0.65x the requests/s of
micro-batching off, on a 2-core Zen 5); under concurrency the queue fills during each pass, and the
wait comes back by itself.

Failures never strand a request: a failed forward pass is handed to every request in it and the
thread goes on; should the thread itself die, everything queued gets the error, new requests are
refused at once (`ServiceUnavailable`, a 503) and `alive` turns false (/ready says so); and no
request waits longer than `timeout_s`. Deadlines use the monotonic clock.
"""
import logging
import queue
import threading
import time

from ..shared.errors import ServiceUnavailable

log = logging.getLogger(__name__)


class _Pending(object):
    __slots__ = ("id_lists", "done", "result", "error")

    def __init__(self, id_lists):
        self.id_lists, self.done, self.result, self.error = id_lists, threading.Event(), None, None

    def fail(self, error):
        self.error = error
        self.done.set()


class MicroBatcher(object):

    def __init__(self, forward, max_batch_size=32, max_wait_ms=2.0, timeout_s=30.0):
        self._forward, self._max_batch_size = forward, max_batch_size
        self._max_wait, self._timeout = max_wait_ms / 1000.0, timeout_s
        self._queue = queue.Queue()
        self._stopping = False
        self.last_pass_shared = False  # did the last forward pass serve more than one request?
        self._thread = threading.Thread(target=self._run, name="micro-batcher", daemon=True)
        self._thread.start()

    @property
    def alive(self):
        return self._thread.is_alive()

    def submit(self, id_lists):
        """Probabilities for `id_lists`, computed together with whatever else is queued."""
        if not self.alive:
            raise ServiceUnavailable("the micro-batcher of this worker has stopped")
        pending = _Pending(id_lists)
        self._queue.put(pending)
        if not self.alive:  # it died between the check and the put: nobody will take the item
            self._fail_queued(ServiceUnavailable("the micro-batcher of this worker has stopped"))
        if not pending.done.wait(self._timeout):
            raise ServiceUnavailable("no forward pass within %g s; the worker is overloaded" % self._timeout)
        if pending.error is not None:
            raise pending.error
        return pending.result

    def stop(self):
        """End the thread once what is queued has run (a replaced model's batcher); later submits get 503."""
        self._stopping = True
        self._queue.put(None)

    def _collect(self):
        first = self._queue.get()
        if first is None:
            return None
        batch = [first]
        size = len(batch[0].id_lists)
        deadline = time.monotonic() + (self._max_wait if self.last_pass_shared else 0.0)
        while size < self._max_batch_size:
            remaining = deadline - time.monotonic()
            try:
                item = self._queue.get(timeout=remaining) if remaining > 0 else self._queue.get_nowait()
            except queue.Empty:
                break
            if item is None:  # stop() was called: run what came before it, then end
                self._queue.put(None)
                break
            batch.append(item)
            size += len(item.id_lists)
        self.last_pass_shared = len(batch) > 1
        return batch

    def _run_batch(self, batch):
        try:
            probabilities = self._forward([ids for item in batch for ids in item.id_lists])
            start = 0
            for item in batch:
                item.result = probabilities[start:start + len(item.id_lists)]
                start += len(item.id_lists)
        except Exception as exc:  # a failed pass fails its requests, not the thread
            for item in batch:
                item.error = exc
        except BaseException:
            for item in batch:
                item.error = ServiceUnavailable("the micro-batcher of this worker has stopped")
            raise
        finally:
            for item in batch:
                item.done.set()

    def _run(self):
        try:
            while True:
                batch = self._collect()
                if batch is None:
                    return
                self._run_batch(batch)
        finally:  # the thread ends: nothing queued may wait for it
            if not self._stopping:
                log.error("the micro-batcher thread stopped; this worker answers 503 until it is restarted")
            self._fail_queued(ServiceUnavailable("the micro-batcher of this worker has stopped"))

    def _fail_queued(self, error):
        while True:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                return
            if item is not None:
                item.fail(error)
