"""Per-worker micro-batching: texts of requests that arrive together share one forward pass.

Each request thread submits its word-piece id lists and waits; one batcher thread takes what is
queued (up to `max_batch_size` texts, waiting at most `max_wait_ms` for more after the first),
runs it through `forward` (which sorts by length and pads per batch) and hands each request its
own rows back. While a forward pass runs, new requests queue up and go together in the next one.
"""
import queue
import threading
import time


class _Pending(object):
    __slots__ = ("id_lists", "done", "result", "error")

    def __init__(self, id_lists):
        self.id_lists, self.done, self.result, self.error = id_lists, threading.Event(), None, None


class MicroBatcher(object):

    def __init__(self, forward, max_batch_size=32, max_wait_ms=2.0):
        self._forward, self._max_batch_size = forward, max_batch_size
        self._max_wait = max_wait_ms / 1000.0
        self._queue = queue.Queue()
        self._thread = threading.Thread(target=self._loop, name="micro-batcher", daemon=True)
        self._thread.start()

    def submit(self, id_lists):
        """Probabilities for `id_lists`, computed together with whatever else is queued."""
        pending = _Pending(id_lists)
        self._queue.put(pending)
        pending.done.wait()
        if pending.error is not None:
            raise pending.error
        return pending.result

    def _collect(self):
        batch = [self._queue.get()]
        size = len(batch[0].id_lists)
        deadline = time.time() + self._max_wait
        while size < self._max_batch_size:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                remaining = deadline - time.time()
                if remaining <= 0:
                    break
                try:
                    item = self._queue.get(timeout=remaining)
                except queue.Empty:
                    break
            batch.append(item)
            size += len(item.id_lists)
        return batch

    def _loop(self):
        while True:
            batch = self._collect()
            try:
                probabilities = self._forward([ids for item in batch for ids in item.id_lists])
                start = 0
                for item in batch:
                    item.result = probabilities[start:start + len(item.id_lists)]
                    start += len(item.id_lists)
            except Exception as exc:  # hand the failure to every waiting request
                for item in batch:
                    item.error = exc
            for item in batch:
                item.done.set()
