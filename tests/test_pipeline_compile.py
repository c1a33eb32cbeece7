"""The compiled pipeline is valid KFP IR: strict protobuf parse, round trip, resources/retries/secrets.

    .venv/bin/python -m pytest -q tests/test_pipeline_compile.py
"""

import copy

import pytest
import yaml
from google.protobuf import json_format

STEPS = {"prepare-data", "probe-layers", "tune-layer-count", "train-slam", "evaluate", "evaluate-2",
         "register-model"}
HEAVY = {"probe-layers", "tune-layer-count", "train-slam", "evaluate", "evaluate-2"}


@pytest.fixture(scope="module")
def compiled(tmp_path_factory):
    from pipeline.kfp_client import compile_pipeline
    from pipeline.pipeline import CompileOptions

    out = tmp_path_factory.mktemp("kfp") / "pipeline.yaml"
    opts = CompileOptions(gpu=True, node_selector={"pool": "gpu"}, tolerations=["nvidia.com/gpu"],
                          mlflow_secret="mlflow-auth")
    compile_pipeline(out, opts)
    return out, list(yaml.safe_load_all(out.read_text()))


def all_tasks(doc: dict) -> dict:
    """Every step task, wherever it sits: the root DAG and the "new data" condition's DAG."""
    tasks = {k: v for k, v in doc["root"]["dag"]["tasks"].items() if not k.startswith("condition-")}
    for name, comp in doc["components"].items():
        if name.startswith("comp-condition-"):
            tasks.update(comp["dag"]["tasks"])
    return tasks


def test_compiled_yaml_parses_strictly_into_pipeline_and_platform_spec(compiled):
    from kfp.pipeline_spec import pipeline_spec_pb2

    _, docs = compiled
    assert len(docs) == 2
    spec = json_format.ParseDict(docs[0], pipeline_spec_pb2.PipelineSpec())
    platform = json_format.ParseDict(docs[1], pipeline_spec_pb2.PlatformSpec())
    assert spec.pipeline_info.name == "slam"
    assert set(all_tasks(docs[0])) == STEPS
    assert set(spec.root.dag.tasks) == {"prepare-data", "condition-1"}  # nothing runs unless there is new data
    # every step learns the KFP run id and name: its MLflow run nests under one run per pipeline run
    for name, task in all_tasks(docs[0]).items():
        params = task["inputs"]["parameters"]
        assert params["pipeline_run_id"]["runtimeValue"]["constant"] == "{{$.pipeline_job_uuid}}", name
        assert params["pipeline_run_name"]["runtimeValue"]["constant"] == "{{$.pipeline_job_name}}", name
    assert "kubernetes" in platform.platforms


def test_strict_parse_rejects_an_unknown_field(compiled):
    from kfp.pipeline_spec import pipeline_spec_pb2

    _, docs = compiled
    bad = copy.deepcopy(docs[0])
    bad["root"]["bogus"] = 1
    with pytest.raises(json_format.ParseError, match="bogus"):
        json_format.ParseDict(bad, pipeline_spec_pb2.PipelineSpec())


def test_round_trip_through_load_component_from_file_and_recompile(compiled, tmp_path):
    from kfp import compiler, dsl
    from kfp.components import load_component_from_file

    path, _ = compiled
    comp = load_component_from_file(str(path))
    assert {"languages", "storage", "launcher", "k_grid", "mlflow_uri", "registry_name"} <= set(comp.component_spec.inputs)

    @dsl.pipeline(name="outer")
    def outer(languages: str = "sw,th"):
        comp(languages=languages, storage="s3://b/runs")

    compiler.Compiler().compile(outer, str(tmp_path / "outer.yaml"))
    assert "sw,th" in (tmp_path / "outer.yaml").read_text()


def test_resources_retries_caching_and_secrets(compiled):
    _, docs = compiled
    tasks = all_tasks(docs[0])
    executors = docs[0]["deploymentSpec"]["executors"]
    k8s = docs[1]["platforms"]["kubernetes"]["deploymentSpec"]["executors"]
    for name, task in tasks.items():
        exe = task["componentRef"]["name"].replace("comp-", "exec-")
        container = executors[exe]["container"]
        assert container["image"].startswith("ghcr.io/slam-project/slam")
        assert "pip install" not in " ".join(container["command"])  # install_kfp_package=False: no network
        resources = container.get("resources", {})
        assert (resources.get("accelerator", {}).get("resourceType") == "nvidia.com/gpu") == (name in HEAVY), name
        secret_envs = {e["envVar"] for s in k8s[exe]["secretAsEnv"] for e in s["keyToEnv"]}
        assert {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "MLFLOW_TRACKING_PASSWORD"} <= secret_envs, name
        if name in HEAVY:
            assert k8s[exe]["nodeSelector"]["labels"] == {"pool": "gpu"}
            assert k8s[exe]["tolerations"][0]["key"] == "nvidia.com/gpu"
    for name in ("tune-layer-count", "train-slam", "register-model"):
        assert tasks[name]["retryPolicy"]["maxRetryCount"] >= 2, name
        assert not tasks[name]["cachingOptions"].get("enableCache"), name
    # the decision flows forward: train reads the tune step's tune.json (layers, lr), not a bare k
    assert tasks["train-slam"]["inputs"]["artifacts"]["tuned"]["taskOutputArtifact"] == \
        {"producerTask": "tune-layer-count", "outputArtifactKey": "results"}
    assert "top_k" not in tasks["train-slam"]["inputs"].get("parameters", {})
    # base vs SLAM in one view: the SLAM evaluation gets the base's report
    slam_eval = next(t for t in tasks.values() if "baseline" in t["inputs"].get("artifacts", {}))
    assert slam_eval["inputs"]["artifacts"]["baseline"]["taskOutputArtifact"]["producerTask"] == "evaluate"


def test_cpu_only_compile_requests_no_gpu(tmp_path):
    from pipeline.kfp_client import compile_pipeline
    from pipeline.pipeline import CompileOptions

    docs = list(yaml.safe_load_all(open(compile_pipeline(tmp_path / "p.yaml", CompileOptions(s3_secret="")))))
    assert "accelerator" not in str(docs[0]["deploymentSpec"])
    # no secrets, selectors or tolerations; only the launcher steps' downward-API env remains
    k8s = docs[1]["platforms"]["kubernetes"]["deploymentSpec"]["executors"]
    assert set(k8s) == {"exec-tune-layer-count", "exec-train-slam"}
    assert all(set(v) == {"fieldPathAsEnv"} for v in k8s.values()), k8s


def test_launcher_steps_get_the_image_their_pod_and_the_ttl(compiled):
    """One image setting: the tune/train steps pass the image they run in to their RayJobs (SLAM_IMAGE), and
    learn their pod's name/uid (the RayJob's owner), namespace and service account from the downward API."""
    _, docs = compiled
    executors = docs[0]["deploymentSpec"]["executors"]
    k8s = docs[1]["platforms"]["kubernetes"]["deploymentSpec"]["executors"]
    for exe in ("exec-tune-layer-count", "exec-train-slam"):
        container = executors[exe]["container"]
        env = {e["name"]: e["value"] for e in container["env"]}
        assert env["SLAM_IMAGE"] == container["image"] and env["SLAM_RAYJOB_TTL_S"] == "120"
        fields = {f["name"]: f["fieldPath"] for f in k8s[exe]["fieldPathAsEnv"]}
        assert fields == {"SLAM_POD_NAME": "metadata.name", "SLAM_POD_UID": "metadata.uid",
                          "SLAM_K8S_NAMESPACE": "metadata.namespace", "SLAM_SERVICE_ACCOUNT": "spec.serviceAccountName"}


def test_image_is_one_setting_at_compile_time(tmp_path):
    import subprocess
    import sys

    code = ("from pipeline.kfp_client import compile_pipeline; import yaml; "
            f"d = list(yaml.safe_load_all(open(compile_pipeline({str(tmp_path / 'p.yaml')!r}))))[0]; "
            "print(sorted({e['container']['image'] for e in d['deploymentSpec']['executors'].values()}), "
            "d['deploymentSpec']['executors']['exec-train-slam']['container']['env'][0]['value'])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                         env={**__import__("os").environ, "SLAM_IMAGE": "registry.example.com/slam:9.9"})
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["['registry.example.com/slam:9.9']", "registry.example.com/slam:9.9"]


@pytest.mark.parametrize("expr, error", [
    ("0 0 3 * * 1", None),
    ("0 */15 * * * *", None),
    ("0 0 9 ? * 2-6", None),
    ("0 3 * * 1", "KFP cron needs 6 fields (seconds first): did you mean '0 0 3 * * 1'?"),
    ("0 3 * *", "KFP cron needs 6 fields"),
    ("0 0 3 * * 1 2027", "got 7"),
    ("0 0 3 * * $", "invalid day-of-week='$'"),
])
def test_cron_validation(expr, error):
    from pipeline.kfp_client import validate_cron
    from slam.errors import SlamError

    if error is None:
        assert validate_cron(expr) == expr
    else:
        with pytest.raises(SlamError) as e:
            validate_cron(expr)
        assert error in str(e.value)


def test_params_are_typed_and_problems_reported_together():
    from pipeline.kfp_client import parse_params
    from slam.errors import SlamError

    assert parse_params(["synth_problems=50", "k-grid=2,4"], languages="sw,th", storage=None) == \
        {"synth_problems": 50, "k_grid": "2,4", "languages": "sw,th"}
    # one syntax: section.key=value is a config override for the Tune trials and the training run; a list
    # parameter given twice accumulates, a JSON list works too
    got = parse_params(["train.lr=1e-4", "tune_overrides=tune.max_steps=4", 'train_overrides=["train.seed=1"]',
                        "gate_margin=2", "train.max_steps=3"])
    assert got == {"train_overrides": ["train.lr=1e-4", "train.seed=1", "train.max_steps=3"],
                   "tune_overrides": ["train.lr=1e-4", "tune.max_steps=4", "train.max_steps=3"], "gate_margin": 2.0}
    with pytest.raises(SlamError) as e:
        parse_params(["synth_problems=many", "nope=1", "junk", "gate_margin=x", 'train_overrides=["x"'])
    msg = str(e.value)
    assert "expected an integer" in msg and "unknown pipeline parameter 'nope'" in msg and "'junk'" in msg
    assert "gate_margin: expected a number" in msg and "train_overrides: expected a list" in msg


def test_slam_cli_compile_and_cron_error(tmp_path, capsys):
    from slam.cli import main

    assert main(["pipeline", "compile", "--out", str(tmp_path / "p.yaml")]) == 0
    assert (tmp_path / "p.yaml").exists()
    assert main(["pipeline", "schedule", "--host", "http://127.0.0.1:9", "--cron", "0 3 * * 1"]) == 2
    assert "did you mean '0 0 3 * * 1'" in capsys.readouterr().err
    assert main(["pipeline", "schedule", "--host", "http://127.0.0.1:9", "--cron", "0 0 3 * * *",
                 "languages_uri=s3://b/languages"]) == 2
    assert "needs mlflow_uri" in capsys.readouterr().err


def test_each_step_execs_python_so_sigterm_reaches_its_handler(compiled, tmp_path):
    """Argo's emissary sends Terminate's SIGTERM to the step's process group and waits for its main
    process only. Under KFP's `sh -ec '...; python3 -m ...'` the shell died at once and took the step
    with it, before the step's handler deleted its RayJob. Run the compiled command's script for real
    (python3 swapped for a handler that takes a while): the main process must be the Python one."""
    import os
    import shlex
    import signal
    import subprocess
    import sys

    _, docs = compiled
    scripts = [e["container"]["command"] for e in docs[0]["deploymentSpec"]["executors"].values()]
    assert len(scripts) == len(STEPS)
    for command in scripts:
        assert command[:2] == ["sh", "-ec"] and "exec python3 -m kfp.dsl.executor_main" in command[2]

    done = tmp_path / "cleaned-up"
    handler = (f"import signal, sys, time\n"
               f"def h(*_):\n    time.sleep(1.0); open({str(done)!r}, 'w').write('ok'); sys.exit(3)\n"
               f"signal.signal(signal.SIGTERM, h)\nprint('ready', flush=True)\ntime.sleep(60)\n")
    bindir = tmp_path / "bin"
    bindir.mkdir()
    (bindir / "python3").write_text(f"#!/bin/sh\nexec {sys.executable} -c {shlex.quote(handler)}\n")
    (bindir / "python3").chmod(0o755)
    proc = subprocess.Popen(["sh", "-ec", scripts[0][2], "component-source"], start_new_session=True,
                            stdout=subprocess.PIPE, text=True, env={**os.environ, "PATH": f"{bindir}:{os.environ['PATH']}"})
    assert proc.stdout.readline().strip() == "ready"
    os.killpg(proc.pid, signal.SIGTERM)  # what the emissary does
    assert proc.wait(30) == 3  # the main process ran its handler to the end (not -15: a shell killed by it)
    assert done.read_text() == "ok"


def test_a_changed_kfp_command_is_refused_not_compiled_silently():
    from pipeline.kfp_client import exec_executor
    from slam.errors import SlamError

    spec = ("deploymentSpec:\n  executors:\n    exec-a:\n      container:\n        command: [sh, -ec, "
            "'python3 -m kfp.dsl.executor_main --x']\n")
    with pytest.raises(SlamError, match="expected 1 KFP executor"):
        exec_executor(spec)
