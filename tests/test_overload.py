"""What a worker does under overload and when models change: the bounded queue (429 at once), deadlines
and callers that went away (never computed), leased models closed after their last request, and the
one rule for which export serves. No TensorFlow: the forward passes and exports here are stand-ins."""
import json
import logging
import os
import threading
import time

import pytest

from bert_in_a_flask.serving.batcher import MicroBatcher
from bert_in_a_flask.shared.errors import ClientGone, Overloaded, ServiceUnavailable, UserError


class Events(object):
    def __init__(self):
        self.pending, self.reasons = 0, []

    def admitted(self, n):
        self.pending += n

    def shed(self, reason):
        self.reasons.append(reason)


def slow_forward(seen, gate):
    def forward(id_lists):
        seen.extend(ids[0] for ids in id_lists)
        gate.wait(10)
        return [[1.0] for _ in id_lists]
    return forward


def in_thread(function, *args):
    out = []
    thread = threading.Thread(target=lambda: out.append(catch(function, *args)))
    thread.start()
    return thread, out


def catch(function, *args):
    try:
        return function(*args)
    except Exception as exc:  # the test looks at what the caller got
        return exc


def test_a_full_queue_refuses_at_once_with_429_and_an_empty_one_takes_any_request():
    seen, gate, events = [], threading.Event(), Events()
    batcher = MicroBatcher(slow_forward(seen, gate), max_batch_size=4, max_wait_ms=0, timeout_s=10,
                           max_pending_texts=6, events=events)
    first, out1 = in_thread(batcher.submit, [[1]] * 8)  # larger than the bound: admitted, the queue was empty
    time.sleep(0.2)
    assert batcher.pending_texts == 8 and events.pending == 8
    started = time.monotonic()
    with pytest.raises(Overloaded) as refused:
        batcher.submit([[2]])
    assert time.monotonic() - started < 0.05  # at once, without waiting
    assert refused.value.http_status == 429 and refused.value.headers["Retry-After"] == "1"
    assert "MAX_PENDING_TEXTS=6" in refused.value.message and events.reasons == ["queue_full"]
    gate.set()
    first.join(10)
    assert out1 == [[[1.0]] * 8] and batcher.pending_texts == 0 and events.pending == 0
    assert batcher.submit([[3]] * 6) == [[1.0]] * 6  # room again
    assert 2 not in seen  # the refused request was never computed


def test_a_request_whose_deadline_passed_in_the_queue_is_dropped_never_computed():
    seen, gate, events = [], threading.Event(), Events()
    batcher = MicroBatcher(slow_forward(seen, gate), max_batch_size=1, max_wait_ms=0, timeout_s=0.3, events=events)
    busy, _ = in_thread(batcher.submit, [[1]])  # holds the thread past the others' deadlines
    time.sleep(0.05)
    started = time.monotonic()
    with pytest.raises(ServiceUnavailable, match="no forward pass within 0.3 s"):
        batcher.submit([[2]])
    assert time.monotonic() - started < 1.0
    assert batcher.pending_texts == 1  # only the running pass's text is still admitted
    gate.set()
    busy.join(10)
    assert batcher.submit([[3]]) == [[1.0]]
    assert seen == [1, 3] and events.reasons == ["deadline"] and events.pending == 0


def test_a_caller_that_went_away_is_dropped_before_its_pass():
    seen, gate, events = [], threading.Event(), Events()
    batcher = MicroBatcher(slow_forward(seen, gate), max_batch_size=1, max_wait_ms=0, timeout_s=10, events=events)
    busy, _ = in_thread(batcher.submit, [[1]])
    time.sleep(0.05)
    gone = threading.Event()
    leaving, out = in_thread(batcher.submit, [[2]], gone.is_set)
    time.sleep(0.1)
    gone.set()  # the client closed its connection while queued
    leaving.join(5)
    assert isinstance(out[0], ClientGone) and batcher.pending_texts == 1
    gate.set()
    busy.join(10)
    assert batcher.submit([[3]]) == [[1.0]]
    assert seen == [1, 3] and events.reasons == ["client_gone"]


def test_without_micro_batching_every_request_is_a_pass_of_its_own_under_the_same_bound():
    passes, events = [], Events()

    def forward(id_lists):
        passes.append(len(id_lists))
        time.sleep(0.05)
        return [[1.0] for _ in id_lists]

    batcher = MicroBatcher(forward, max_batch_size=64, max_wait_ms=20, timeout_s=10, max_pending_texts=4,
                           coalesce=False, events=events)
    threads = [in_thread(batcher.submit, [[i]] * 2) for i in range(5)]
    for thread, _ in threads:
        thread.join(10)
    answers = [out[0] for _, out in threads]
    assert all(a == [[1.0]] * 2 or isinstance(a, Overloaded) for a in answers)
    assert any(isinstance(a, Overloaded) for a in answers) and set(passes) == {2}


# --- retiring models -----------------------------------------------------------------------

class Closable(object):
    def __init__(self, name):
        self.name, self.closed = name, threading.Event()
        self.healthy = True

    def close(self):
        self.closed.set()


def test_a_replaced_model_is_closed_when_its_last_request_ends_and_at_once_when_idle():
    from bert_in_a_flask.serving.slot import ModelSlot
    slot = ModelSlot()
    old = Closable("old")
    slot.publish(old)
    lease = slot.acquire(1)
    slot.publish(Closable("new"))
    time.sleep(0.2)
    assert not old.closed.is_set() and lease.predictor is old  # still in use: the request finishes on it
    slot.release(lease)
    assert old.closed.wait(2)
    newer = Closable("newer")
    idle = slot.predictor
    slot.publish(newer)  # nobody holds the one it replaces
    assert idle.closed.wait(2) and slot.predictor is newer and not newer.closed.is_set()


# --- the one rule for which export serves ------------------------------------------------

class Stub(object):
    """A predictor of a fake export: its folder's name says whether it loads and passes the check."""

    multi_label = False

    def __init__(self, export_dir):
        if "broken" in open(os.path.join(export_dir, "kind")).read():
            raise UserError("cannot load SavedModel %s: garbage" % export_dir)
        self.export_dir, self.labels, self.closed = export_dir, ["a", "b"], False
        self.name = os.path.basename(export_dir)
        self.sums_to_one = "nonsense" not in open(os.path.join(export_dir, "kind")).read()

    def predict_proba(self, texts):
        import numpy as np
        return np.array([[0.4, 0.6 if self.sums_to_one else 0.9]])

    def close(self):
        self.closed = True


def fake_export(root, stamp, kind):
    folder = os.path.join(str(root), str(stamp))
    os.makedirs(os.path.join(folder, "assets.extra"))
    open(os.path.join(folder, "saved_model.pb"), "w").close()
    with open(os.path.join(folder, "assets.extra", "model_config.json"), "w") as handle:
        json.dump({}, handle)
    with open(os.path.join(folder, "kind"), "w") as handle:
        handle.write(kind)
    return folder


def test_the_newest_sound_export_serves_and_each_broken_one_is_logged_once(tmp_path, caplog):
    from bert_in_a_flask.serving.reload import ExportChooser, candidate_exports
    good = fake_export(tmp_path, 1700000001, "good")
    broken = fake_export(tmp_path, 1700000002, "broken")
    nonsense = fake_export(tmp_path, 1700000003, "nonsense")
    built = []
    chooser = ExportChooser(lambda export_dir: built.append(Stub(export_dir)) or built[-1], "warm-up")
    settings = {"MODEL_DIR": str(tmp_path), "MODEL_VERSION": ""}
    with caplog.at_level(logging.WARNING):
        key, predictor = chooser.newest_sound(candidate_exports(settings))
        assert predictor.export_dir == good
        assert chooser.newest_sound(candidate_exports(settings), served_key=key) is None  # nothing newer is sound
    skipped = [r.getMessage() for r in caplog.records if "skipping export" in r.getMessage()]
    assert len(skipped) == 2  # each once, though asked twice
    assert "skipping export %s: it cannot serve (cannot load SavedModel" % broken in skipped[1]
    assert "skipping export %s: it cannot serve (its warm-up prediction is not a probability" % nonsense in skipped[0]
    assert [p.closed for p in built] == [True, False]  # the one that failed its check was closed at once


def test_a_worker_started_after_the_first_boot_falls_back_instead_of_exiting(tmp_path, monkeypatch):
    from bert_in_a_flask.serving import app as app_module
    from bert_in_a_flask.serving import settings
    fake_export(tmp_path, 1700000001, "good")
    fake_export(tmp_path, 1700000002, "broken")
    monkeypatch.setattr(app_module, "build_predictor", lambda app, export_dir: Stub(export_dir))
    config = settings.from_env({}, MODEL_DIR=str(tmp_path), MODEL_POLL_S=0.0, LOG_FILE=str(tmp_path / "c.log"))
    failures = []
    app = app_module.create_app(config, load_in_background=True, strict=False, on_load_failure=failures.append)
    client = app.test_client()
    deadline = time.monotonic() + 10
    while client.get("/ready").status_code != 200 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert client.get("/ready").get_json()["model"] == "1700000001" and not failures
    assert client.get("/v2/health/ready").status_code == 200

    strict = app_module.create_app(config, load_in_background=True, strict=True, on_load_failure=failures.append)
    deadline = time.monotonic() + 10
    while not failures and time.monotonic() < deadline:
        time.sleep(0.05)
    assert "cannot load SavedModel %s" % os.path.join(str(tmp_path), "1700000002") in str(failures[0])
    assert strict.test_client().get("/ready").status_code == 503


def test_every_readiness_route_follows_one_rule(tmp_path):
    from bert_in_a_flask.serving import settings
    from bert_in_a_flask.serving.app import create_app
    from helpers import FakePredictor
    fake = FakePredictor()
    app = create_app(settings.from_env({}, LOG_FILE=str(tmp_path / "c.log")), predictor=fake)
    client = app.test_client()
    routes = ("/ready", "/v2/health/ready", "/v2/models/bert/ready")
    assert [client.get(route).status_code for route in routes] == [200, 200, 200]
    fake.healthy = False  # its micro-batcher stopped
    assert [client.get(route).status_code for route in routes] == [503, 503, 503]
    status = client.get("/v1/models/bert").get_json()["model_version_status"][0]
    assert status["state"] == "UNAVAILABLE" and status["status"]["error_message"] == "the micro-batcher stopped"


# --- what a client says about itself ------------------------------------------------------

def test_the_call_log_names_the_peer_unless_proxies_are_trusted_and_keeps_any_text(tmp_path):
    from bert_in_a_flask.serving import settings
    from bert_in_a_flask.serving.app import create_app
    from helpers import FakePredictor, call_log
    text = "lone \ud800 surrogate and caf\u00e9"
    for trusted, expected in ((0, "127.0.0.1"), (1, "203.0.113.7")):
        log_file = str(tmp_path / ("calls-%d.log" % trusted))
        app = create_app(settings.from_env({}, LOG_FILE=log_file, LOG_TEXTS=True, TRUSTED_PROXIES=trusted),
                         predictor=FakePredictor())
        response = app.test_client().post("/predict", json={"X": [text]},
                                          headers={"X-Forwarded-For": "203.0.113.7"},
                                          environ_base={"REMOTE_ADDR": "127.0.0.1"})
        assert response.status_code == 200
        entry = call_log(app)[-1]
        assert entry["user_ip"] == expected and entry["texts"] == [text]


def test_api_keys_still_let_the_right_key_in_and_no_other(tmp_path):
    from bert_in_a_flask.serving import settings
    from bert_in_a_flask.serving.app import create_app
    from helpers import FakePredictor
    app = create_app(settings.from_env({}, LOG_FILE=str(tmp_path / "c.log"), API_KEYS="k3y-one,another-key"),
                     predictor=FakePredictor())
    client = app.test_client()
    for token, status in (("k3y-one", 200), ("another-key", 200), ("k3y-on", 401), ("k3y-one-longer", 401),
                          ("", 401)):
        response = client.post("/predict", json={"X": ["jvm"]}, headers={"Authorization": "Bearer " + token})
        assert response.status_code == status, token


def test_the_docs_page_is_served_open_and_can_be_turned_off(tmp_path):
    from bert_in_a_flask.serving import settings
    from bert_in_a_flask.serving.app import create_app
    from helpers import FakePredictor
    keyed = create_app(settings.from_env({}, LOG_FILE=str(tmp_path / "c.log"), API_KEYS="secret"),
                       predictor=FakePredictor()).test_client()
    page = keyed.get("/docs")
    assert page.status_code == 200 and b"/openapi.json" in page.data and b"swagger-ui-bundle.js" in page.data
    assert keyed.get("/docs/assets/swagger-ui-bundle.js").status_code == 200  # no key needed to load the page
    assert keyed.post("/predict", json={"X": ["jvm"]}).status_code == 401  # its calls still need one
    off = create_app(settings.from_env({}, LOG_FILE=str(tmp_path / "c.log"), DOCS_PAGE=False),
                     predictor=FakePredictor()).test_client()
    assert off.get("/docs").status_code == 404


def test_a_first_boot_worker_whose_sibling_served_meanwhile_does_not_stop_the_server(tmp_path, monkeypatch):
    """WORKERS=2 at the first boot: worker B fails to load after worker A came up; B goes on trying."""
    from bert_in_a_flask.serving import app as app_module
    from bert_in_a_flask.serving import settings
    from bert_in_a_flask.serving.settings import STATE_DIR_ENV
    state = tmp_path / "state"
    state.mkdir()
    monkeypatch.setenv(STATE_DIR_ENV, str(state))
    fake_export(tmp_path / "exports", 1700000001, "broken")

    def build(app, export_dir):
        (state / app_module.SERVED_MARK).write_text("")  # the sibling served while this one loaded
        return Stub(export_dir)

    monkeypatch.setattr(app_module, "build_predictor", build)
    config = settings.from_env({}, MODEL_DIR=str(tmp_path / "exports"), MODEL_POLL_S=0.05,
                               LOG_FILE=str(tmp_path / "c.log"))
    failures = []
    app = app_module.create_app(config, load_in_background=True, strict=True, on_load_failure=failures.append)
    time.sleep(0.5)
    assert failures == [] and app.test_client().get("/ready").status_code == 503  # alive, not ready
    fake_export(tmp_path / "exports", 1700000002, "good")
    deadline = time.monotonic() + 10
    while app.test_client().get("/ready").status_code != 200 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert app.test_client().get("/ready").get_json()["model"] == "1700000002"
