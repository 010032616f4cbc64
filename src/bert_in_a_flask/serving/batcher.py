"""Per-worker request queue: a bound on the work admitted, a deadline on every item, and (by default)
micro-batching, where texts of requests that arrive together share one forward pass.

Each request thread submits its word-piece id lists and waits; one batcher thread takes what is
queued (up to `max_batch_size` texts, waiting at most `max_wait_ms` for more after the first),
runs it through `forward` (which sorts by length and pads per batch) and hands each request its
own rows back. While a forward pass runs, new requests queue up and go together in the next one.
With `coalesce=False` (MICRO_BATCHING=false) every request is a pass of its own, in arrival order,
under the same bound and deadlines.

Backpressure, as TF Serving's batching queue and text-embeddings-inference do it:
- at most `max_pending_texts` texts are admitted (queued or in the running pass); a request that
  would go past it is refused at once with `Overloaded` (a 429 with Retry-After), never queued;
- every item carries its caller's deadline (`timeout_s` from its submit): a caller whose deadline
  passes gets `ServiceUnavailable` (a 503), and a caller that went away (`client_gone()` true) is
  answered nothing (`ClientGone`); either way its item leaves the queue and is never computed.
- `events` (the app's metrics) hears of every change of the admitted texts and every shed request.

The wait for company is spent only while passes are shared: after a pass that served one request
alone, the next takes what is queued and goes at once. A lone sequential caller would otherwise pay
the wait on every call (one title per request through wrk at 1 connection: 0.65x the requests/s of
micro-batching off, on a 2-core Zen 5); under concurrency the queue fills during each pass, and the
wait comes back by itself.

Failures never strand a request: a failed forward pass is handed to every request in it and the
thread goes on; should the thread itself die, everything queued gets the error, new requests are
refused at once (`ServiceUnavailable`) and `alive` turns false (/ready says so). Deadlines use the
monotonic clock.
"""
import logging
import queue
import threading
import time

from ..shared.errors import ClientGone, Overloaded, ServiceUnavailable

log = logging.getLogger(__name__)

QUEUED, TAKEN, DROPPED = "queued", "taken", "dropped"
CLIENT_POLL_S = 0.05  # how often a waiting request looks whether its caller is still there


class NoEvents(object):
    """The `events` of a queue nobody watches (the batch CLI, the bench, tests)."""

    def admitted(self, n_texts):
        pass

    def shed(self, reason):
        pass


class _Pending(object):
    __slots__ = ("n_texts", "id_lists", "deadline", "state", "done", "result", "error")

    def __init__(self, n_texts, deadline):
        self.n_texts, self.id_lists, self.deadline, self.state = n_texts, None, deadline, QUEUED
        self.done, self.result, self.error = threading.Event(), None, None

    def fail(self, error):
        self.error = error
        self.done.set()


class MicroBatcher(object):

    def __init__(self, forward, max_batch_size=32, max_wait_ms=2.0, timeout_s=30.0, max_pending_texts=None,
                 coalesce=True, events=None):
        self._forward, self._max_batch_size = forward, max_batch_size
        self._max_wait, self._timeout = max_wait_ms / 1000.0, timeout_s
        self._max_pending, self._coalesce = max_pending_texts, coalesce
        self._events = events or NoEvents()
        self._queue = queue.Queue()
        self._lock = threading.Lock()  # guards pending_texts and every item's state
        self.pending_texts = 0
        self._stopping = False
        self.last_pass_shared = False  # did the last forward pass serve more than one request?
        self._thread = threading.Thread(target=self._run, name="micro-batcher", daemon=True)
        self._thread.start()

    @property
    def alive(self):
        return self._thread.is_alive()

    # --- the request threads' side ----------------------------------------------------------

    def submit(self, id_lists, client_gone=None):
        """Probabilities for `id_lists`, computed together with whatever else is queued (see `run`)."""
        return self.run(len(id_lists), lambda: id_lists, client_gone)

    def run(self, n_texts, prepare, client_gone=None):
        """Probabilities for the `n_texts` id lists that `prepare()` makes, computed together with
        whatever else is queued. The texts are admitted before `prepare` runs, so a refused request
        costs no tokenizing. Raises `Overloaded` when the queue is full, `ServiceUnavailable` past the
        deadline or when the thread stopped, `ClientGone` when `client_gone()` turned true first."""
        pending = self._admit(n_texts)
        try:
            pending.id_lists = prepare()
        except BaseException:
            self._drop(pending, None)
            raise
        self._queue.put(pending)
        if not self.alive:  # it died between the check and the put: nobody will take the item
            self._fail_queued(ServiceUnavailable("the micro-batcher of this worker has stopped"))
        while not pending.done.wait(min(CLIENT_POLL_S, max(0.0, pending.deadline - time.monotonic()))):
            if time.monotonic() >= pending.deadline:
                self._drop(pending, "deadline")
                raise ServiceUnavailable("no forward pass within %g s; the worker is overloaded" % self._timeout)
            if client_gone is not None and client_gone():
                self._drop(pending, "client_gone")
                raise ClientGone()
        if pending.error is not None:
            raise pending.error
        return pending.result

    def _admit(self, n):
        with self._lock:
            if not self.alive:
                raise ServiceUnavailable("the micro-batcher of this worker has stopped")
            # An empty queue admits any request, so one larger than the bound is still served.
            if self._max_pending is not None and self.pending_texts and self.pending_texts + n > self._max_pending:
                full = True
            else:
                full = False
                self.pending_texts += n
        if full:
            self._events.shed("queue_full")
            raise Overloaded("this worker has %d texts queued (windows, for a long-text export; MAX_PENDING_TEXTS=%d); "
                             "retry in a moment" % (self.pending_texts, self._max_pending))
        self._events.admitted(n)
        return _Pending(n, time.monotonic() + self._timeout)

    def _drop(self, pending, reason):
        """Take a queued item back (its caller gave up or went away, or `reason` None: its texts could
        not be prepared); one already taken runs on."""
        if self._dropped(pending) and reason is not None:
            self._events.shed(reason)

    def _dropped(self, item, unless_alive_until=None):
        """Mark a still-queued item dropped and give its texts back; False when it was not queued (or,
        with `unless_alive_until`, when that deadline has not passed: then it is taken instead)."""
        with self._lock:
            if item.state != QUEUED:
                return False
            if unless_alive_until is not None and time.monotonic() < unless_alive_until:
                item.state = TAKEN
                return False
            item.state = DROPPED
            self.pending_texts -= item.n_texts
        self._events.admitted(-item.n_texts)
        return True

    # --- the batcher thread's side ----------------------------------------------------------

    def stop(self):
        """End the thread once what is queued has run (a retired model's batcher); later submits get 503."""
        self._stopping = True
        self._queue.put(None)

    def _take(self, item):
        """True when `item` is to be computed: still queued and its caller's deadline not passed."""
        if self._dropped(item, unless_alive_until=item.deadline):
            self._events.shed("deadline")
            item.fail(ServiceUnavailable("no forward pass within %g s; the worker is overloaded" % self._timeout))
            return False
        return item.state == TAKEN

    def _next_item(self, timeout=None):
        """The next item to compute (None for stop()), skipping dropped ones; queue.Empty after `timeout`."""
        while True:
            item = self._queue.get() if timeout is None else \
                self._queue.get(timeout=timeout) if timeout > 0 else self._queue.get_nowait()
            if item is None or self._take(item):
                return item

    def _collect(self):
        first = self._next_item()
        if first is None:
            return None
        batch = [first]
        size = len(first.id_lists)
        deadline = time.monotonic() + (self._max_wait if self.last_pass_shared else 0.0)
        while self._coalesce and size < self._max_batch_size:
            try:
                item = self._next_item(max(0.0, deadline - time.monotonic()))
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
            n_texts = sum(len(item.id_lists) for item in batch)
            with self._lock:
                self.pending_texts -= n_texts
            self._events.admitted(-n_texts)
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
            if item is not None and self._dropped(item):
                item.fail(error)
