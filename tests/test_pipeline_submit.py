"""`slam pipeline submit|schedule|schedules` against a fake KFP v2beta1 REST endpoint on 127.0.0.1.

    .venv/bin/python -m pytest -q tests/test_pipeline_submit.py

The real kfp.Client makes the requests; the fake answers minimal JSON and records them, and the
tests assert on what a real KFP API server would have received.
"""

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import yaml


class FakeKfp:
    def __init__(self):
        self.requests: list[dict] = []
        self.recurring = {}

    def answer(self, method: str, path: str, body: bytes) -> tuple[int, dict]:
        route = path.split("?")[0]
        doc = None
        if body:
            try:
                doc = json.loads(body)
            except ValueError:
                doc = body.decode("latin-1")
        self.requests.append({"method": method, "path": path, "route": route, "body": doc})
        if route == "/apis/v2beta1/healthz":
            return 200, {"multi_user": False}
        if route == "/apis/v2beta1/experiments" and method == "GET":
            return 200, {"experiments": [], "total_size": 0}
        if route == "/apis/v2beta1/experiments" and method == "POST":
            return 200, {"experiment_id": "exp-1", "display_name": doc["display_name"]}
        if route == "/apis/v2beta1/runs" and method == "POST":
            return 200, {"run_id": "run-1", "display_name": doc["display_name"], "experiment_id": "exp-1"}
        if route == "/apis/v2beta1/recurringruns" and method == "POST":
            rid = f"rr-{len(self.recurring) + 1}"
            self.recurring[rid] = {**doc, "recurring_run_id": rid, "status": "ENABLED"}
            return 200, self.recurring[rid]
        if route == "/apis/v2beta1/recurringruns" and method == "GET":
            return 200, {"recurringRuns": list(self.recurring.values()), "total_size": len(self.recurring)}
        for action, mode in ((":disable", "DISABLE"), (":enable", "ENABLE")):
            if route.startswith("/apis/v2beta1/recurringruns/") and route.endswith(action):
                rid = route.split("/")[-1].split(":")[0]
                self.recurring[rid]["mode"] = mode
                return 200, {}
        if route.startswith("/apis/v2beta1/recurringruns/") and method == "DELETE":
            self.recurring.pop(route.split("/")[-1], None)
            return 200, {}
        return 404, {"error": f"fake KFP has no route {method} {route}"}


@pytest.fixture()
def kfp_server():
    fake = FakeKfp()

    class Handler(BaseHTTPRequestHandler):
        def _do(self):
            n = int(self.headers.get("Content-Length") or 0)
            status, doc = fake.answer(self.command, self.path, self.rfile.read(n) if n else b"")
            data = json.dumps(doc).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        do_GET = do_POST = do_DELETE = do_PUT = do_PATCH = _do

        def log_message(self, *a):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    t = threading.Thread(target=server.serve_forever, daemon=True)
    t.start()
    fake.host = f"http://127.0.0.1:{server.server_address[1]}"
    yield fake
    server.shutdown()
    server.server_close()


def _json(out: str) -> dict:
    return json.loads(out[out.index("{"):])  # kfp.Client prints experiment/run links first


def _spec(body: dict) -> tuple[dict, dict]:
    """(PipelineSpec, PlatformSpec): with kfp-kubernetes settings kfp nests both under pipeline_spec."""
    spec = body["pipeline_spec"]
    if "pipeline_spec" in spec:
        return spec["pipeline_spec"], spec.get("platform_spec", {})
    return spec, {}


def _posts(fake, route):
    return [r for r in fake.requests if r["method"] == "POST" and r["route"] == route]


def test_submit_sends_the_compiled_spec_and_typed_parameters(kfp_server, capsys):
    from slam.cli import main

    rc = main(["pipeline", "submit", "--host", kfp_server.host, "--experiment", "slam-test", "--run-name", "r1",
               "languages=sw,th", "storage=s3://bucket/runs", "synth_problems=50", "train.max_steps=5"])
    assert rc == 0, capsys.readouterr().err
    assert _json(capsys.readouterr().out)["run_id"] == "run-1"
    (exp,) = _posts(kfp_server, "/apis/v2beta1/experiments")
    assert exp["body"]["display_name"] == "slam-test"
    (run,) = _posts(kfp_server, "/apis/v2beta1/runs")
    body = run["body"]
    assert body["display_name"] == "r1" and body["experiment_id"] == "exp-1"
    spec, platform = _spec(body)
    assert spec["pipelineInfo"]["name"] == "slam"
    assert set(spec["root"]["dag"]["tasks"]) == {"prepare-data", "condition-1"}   # the rest runs on new data
    assert set(spec["components"]["comp-condition-1"]["dag"]["tasks"]) >= {"train-slam", "register-model"}
    assert "exec-train-slam" in platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"]
    params = body["runtime_config"]["parameters"]
    assert params == {"languages": "sw,th", "storage": "s3://bucket/runs", "synth_problems": 50,
                      "train_overrides": ["train.max_steps=5"], "tune_overrides": ["train.max_steps=5"]}


def test_schedule_creates_a_recurring_run_with_a_six_field_cron(kfp_server, capsys):
    from slam.cli import main

    rc = main(["pipeline", "schedule", "--host", kfp_server.host, "--cron", "0 0 3 * * 1", "languages=sw,th"])
    assert rc == 0, capsys.readouterr().err
    out = _json(capsys.readouterr().out)
    assert out == {"recurring_run_id": "rr-1", "name": "slam-sw-th", "cron": "0 0 3 * * 1"}
    (rr,) = _posts(kfp_server, "/apis/v2beta1/recurringruns")
    body = rr["body"]
    assert body["trigger"]["cron_schedule"]["cron"] == "0 0 3 * * 1"
    assert body["mode"] == "ENABLE" and int(body["max_concurrency"]) == 1 and body["no_catchup"] is True
    assert body["runtime_config"]["parameters"] == {"languages": "sw,th"}
    assert _spec(body)[0]["pipelineInfo"]["name"] == "slam"


def test_a_five_field_cron_is_refused_before_any_request(kfp_server, capsys):
    from slam.cli import main

    assert main(["pipeline", "schedule", "--host", kfp_server.host, "--cron", "0 3 * * 1"]) == 2
    assert "did you mean '0 0 3 * * 1'" in capsys.readouterr().err
    assert kfp_server.requests == []


def test_list_disable_enable_delete_schedules(kfp_server, capsys):
    from slam.cli import main

    for langs in ("sw", "th"):
        assert main(["pipeline", "schedule", "--host", kfp_server.host, "--cron", "0 0 3 * * 1",
                     f"languages={langs}"]) == 0
    capsys.readouterr()
    assert main(["pipeline", "schedules", "--host", kfp_server.host]) == 0
    listing = capsys.readouterr().out
    assert "rr-1" in listing and "slam-th" in listing and "0 0 3 * * 1" in listing
    assert main(["pipeline", "schedules", "--host", kfp_server.host, "--disable", "rr-1"]) == 0
    assert kfp_server.recurring["rr-1"]["mode"] == "DISABLE"
    assert any(r["route"] == "/apis/v2beta1/recurringruns/rr-1:disable" for r in kfp_server.requests)
    assert main(["pipeline", "schedules", "--host", kfp_server.host, "--delete", "rr-2"]) == 0
    assert "rr-2" not in kfp_server.recurring


def test_submit_a_precompiled_package(kfp_server, tmp_path, capsys):
    from slam.cli import main

    pkg = tmp_path / "p.yaml"
    assert main(["pipeline", "compile", "--out", str(pkg), "--gpu"]) == 0
    assert main(["pipeline", "submit", "--host", kfp_server.host, "--package", str(pkg)]) == 0
    (run,) = _posts(kfp_server, "/apis/v2beta1/runs")
    docs = list(yaml.safe_load_all(pkg.read_text()))
    assert _spec(run["body"]) == (docs[0], docs[1])


def test_a_schedule_can_watch_a_data_location_for_new_languages(kfp_server, capsys):
    from slam.cli import main

    rc = main(["pipeline", "schedule", "--host", kfp_server.host, "--cron", "0 0 3 * * *",
               "languages_uri=s3://bucket/languages", "mlflow_uri=http://mlflow.mlflow:5000", "storage=s3://bucket/runs"])
    assert rc == 0, capsys.readouterr().err
    out = _json(capsys.readouterr().out)
    assert out["name"] == "slam-watch-bucket-languages"
    (rr,) = _posts(kfp_server, "/apis/v2beta1/recurringruns")
    assert rr["body"]["runtime_config"]["parameters"]["languages_uri"] == "s3://bucket/languages"
    assert "gets a language the champion lacks" in rr["body"]["description"]
    spec, _ = _spec(rr["body"])
    # the watch is the data step's output: everything after it sits under the "new data" condition
    cond = spec["root"]["dag"]["tasks"]["condition-1"]
    assert cond["taskInfo"]["name"] == "new-data" and "prepare-data-Output" in cond["triggerPolicy"]["condition"]
