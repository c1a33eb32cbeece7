"""A KFP backend stand-in: run a compiled pipeline (the PipelineSpec + PlatformSpec YAML) with every task as
a pod of "the image", against the Kubernetes API stand-in.

    pods = KfpPods(kube, image, sandbox, network=["127.0.0.1:9000", ...], root=tmp / "kfp")
    run = pods.run("pipeline.yaml", {"storage": "s3://b/runs", ...}, service_account="slam-pipeline")
    run.status, run.output, run.tasks["train-slam"].attempts      # per attempt: pod, uid, exit code, log
    pods.cancel(run, "train-slam")          # from another thread: SIGTERM to the task's pod, as `Terminate` does

What a task's pod is here, as on a cluster:
- the container command of the compiled spec, placeholders filled from the executor input kfp builds
  (kfp.local's own helpers build the executor input and read the executor output), run as a fresh
  process of the image (tests/kubestandin/image.py): empty HOME and working dir, the repo, ../shared and
  /work hidden (sandbox.py), no inherited environment;
- env exactly from the spec: the image's ENV, the container's `env`, and the PlatformSpec's
  secretAsEnv / configMapAsEnv (from the API stand-in's Secrets/ConfigMaps; a missing non-optional
  one fails the pod like CreateContainerConfigError) and fieldPathAsEnv (metadata.name/uid/namespace,
  spec.serviceAccountName of the Pod object registered in the API stand-in for this attempt);
- identity: the run's service account (KFP sets it per run); its token reaches the pod as a kubeconfig
  (KUBECONFIG) because the stand-in speaks plain HTTP, which in-cluster config refuses;
- network: only `network` (host:port of the cluster's services) is reachable (the image's audit hook);
- nested DAGs (`dsl.If`): run in their own scope when the trigger condition holds, else Skipped;
- retries: `retryPolicy.maxRetryCount`, each attempt a new pod, backoff scaled by `backoff_scale`;
- cancel: SIGTERM to the pod's process group (what Argo's emissary does), SIGKILL after `grace_s`;
- the container's main process: when it exits, whatever else runs in the pod is killed at once (the
  PID namespace ends with its PID 1), so cleanup left to a child of a dead shell never happens;
  with `delete_pod=True` the Pod object is deleted afterwards, so the garbage collector removes what
  the pod owned.

Not mirrored: caching, parallel branches (tasks run one at a time, in dependency order), resource
limits/requests, node selectors/tolerations/accelerators (recorded, not scheduled), the KFP launcher's
artifact upload (pipeline_root is a local dir the pods share), Argo's pod GC, pipeline-level timeouts.
"""

from __future__ import annotations

import base64
import json
import os
import re
import signal
import subprocess
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from .apiserver import rand_suffix


def _dns(text: str, n: int) -> str:
    out = "".join(c if c.isalnum() else "-" for c in text.lower()).strip("-")
    return out[:n].rstrip("-")


@dataclass
class Attempt:
    pod: str
    uid: str
    rc: int | None = None
    log: Path | None = None
    seconds: float = 0.0
    cancelled: bool = False


@dataclass
class TaskRun:
    name: str
    status: str = "Pending"  # Running, Succeeded, Failed, Skipped, Cancelled
    attempts: list[Attempt] = field(default_factory=list)
    outputs: dict[str, Any] = field(default_factory=dict)

    def log_text(self) -> str:
        return "".join(a.log.read_text(errors="replace") for a in self.attempts if a.log and a.log.exists())


@dataclass
class PipelineRun:
    name: str
    service_account: str
    status: str = "Running"
    output: Any = None
    tasks: dict[str, TaskRun] = field(default_factory=dict)
    seconds: float = 0.0
    cancel_requested: set[str] = field(default_factory=set)
    procs: dict[str, subprocess.Popen] = field(default_factory=dict)


class KfpPods:
    def __init__(self, kube: Any, image: Any, sandbox: Any, *, network: list[str], root: Path,
                 namespace: str | None = None, backoff_scale: float = 0.02, grace_s: float = 30.0,
                 extra_env: dict[str, str] | None = None):
        self.kube, self.image, self.sandbox = kube, image, sandbox
        self.network = list(network) + [kube.url.split("//", 1)[1]]
        self.root = Path(root)
        self.ns = namespace or kube.namespace
        self.backoff_scale, self.grace_s = backoff_scale, grace_s
        self.extra_env = dict(extra_env or {})  # e.g. PYTHONFAULTHANDLER; never credentials

    # -- the DAG
    def new_run(self, spec_name: str = "slam", *, service_account: str = "default", name: str = "") -> PipelineRun:
        return PipelineRun(name=name or f"{_dns(spec_name, 20)}-{rand_suffix(5)}", service_account=service_account)

    def run(self, package: str | os.PathLike, params: dict[str, Any], *, service_account: str = "default",
            name: str = "", run: PipelineRun | None = None) -> PipelineRun:
        from google.protobuf import json_format
        from kfp.pipeline_spec import pipeline_spec_pb2

        docs = [d for d in yaml.safe_load_all(Path(package).read_text()) if d]
        spec, platform = docs[0], (docs[1] if len(docs) > 1 else {})
        json_format.ParseDict(spec, pipeline_spec_pb2.PipelineSpec())  # strict: the YAML is a valid PipelineSpec
        k8s = ((platform.get("platforms") or {}).get("kubernetes") or {}).get("deploymentSpec", {}).get("executors", {})
        run = run or self.new_run(spec["pipelineInfo"]["name"], service_account=service_account, name=name)
        t0 = time.monotonic()
        root_inputs = spec["root"].get("inputDefinitions", {}).get("parameters", {})
        args = {k: v.get("defaultValue") for k, v in root_inputs.items()}
        unknown = set(params) - set(root_inputs)
        if unknown:
            raise ValueError(f"unknown pipeline parameters {sorted(unknown)}")
        args.update(params)
        for k, v in root_inputs.items():  # protobuf Values carry numbers as floats
            if v.get("parameterType") == "NUMBER_INTEGER" and args.get(k) is not None:
                args[k] = int(args[k])
        run.tasks = {}
        self._run_dag(run, spec, spec["root"]["dag"], args, {}, k8s)
        run.seconds = time.monotonic() - t0
        failed = [t for t in run.tasks.values() if t.status in ("Failed", "Cancelled")]
        run.status = "Cancelled" if any(t.status == "Cancelled" for t in failed) else ("Failed" if failed else "Succeeded")
        outs = spec["root"]["dag"].get("outputs", {}).get("parameters", {})
        if run.status == "Succeeded" and outs:
            ref = next(iter(outs.values()))["valueFromParameter"]
            run.output = run.tasks[ref["producerSubtask"]].outputs.get(ref["outputParameterKey"])
        return run

    def _run_dag(self, run: PipelineRun, spec: dict[str, Any], dag: dict[str, Any], args: dict[str, Any],
                 arts: dict[str, Any], k8s: dict[str, Any]) -> None:
        """One DAG's tasks in dependency order; a task whose component is itself a DAG (dsl.If, dsl.ExitHandler)
        runs its tasks in its own scope (its inputs are the `pipelinechannel--…` names) when its trigger
        condition holds, else it is Skipped with everything inside it, as KFP's driver does."""
        tasks = dag["tasks"]
        run.tasks.update({t: TaskRun(t) for t in tasks})
        for tname in self._order(tasks):
            task = tasks[tname]
            tr = run.tasks[tname]
            if any(run.tasks[d].status != "Succeeded" for d in task.get("dependentTasks", [])):
                tr.status = "Skipped"
                continue
            comp = spec["components"][task["componentRef"]["name"]]
            if "dag" in comp:
                inputs = self._arguments(run, task, args, arts)
                cond = (task.get("triggerPolicy") or {}).get("condition")
                if cond and not _condition_holds(cond, inputs):
                    tr.status = "Skipped"
                    continue
                defs = comp.get("inputDefinitions", {})
                tr.status = "Running"
                self._run_dag(run, spec, comp["dag"], {k: v for k, v in inputs.items() if k in defs.get("parameters", {})},
                              {k: v for k, v in inputs.items() if k in defs.get("artifacts", {})}, k8s)
                inner = [run.tasks[t].status for t in comp["dag"]["tasks"]]
                tr.status = next((s for s in ("Cancelled", "Failed") if s in inner), "Succeeded")
                continue
            exe = spec["deploymentSpec"]["executors"][comp["executorLabel"]]
            self._run_task(run, tname, task, comp, exe, k8s.get(comp["executorLabel"], {}), args, arts)

    @staticmethod
    def _order(tasks: dict[str, Any]) -> list[str]:
        done: list[str] = []
        while len(done) < len(tasks):
            ready = sorted(t for t, s in tasks.items() if t not in done and set(s.get("dependentTasks", [])) <= set(done))
            if not ready:
                raise ValueError("the DAG has a cycle")
            done.append(ready[0])
        return done

    def _arguments(self, run: PipelineRun, task: dict[str, Any], args: dict[str, Any],
                   arts: dict[str, Any]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for k, v in (task.get("inputs", {}).get("parameters") or {}).items():
            if "componentInputParameter" in v:
                out[k] = args[v["componentInputParameter"]]
            elif "taskOutputParameter" in v:
                ref = v["taskOutputParameter"]
                out[k] = run.tasks[ref["producerTask"]].outputs[ref["outputParameterKey"]]
            elif "runtimeValue" in v:
                out[k] = v["runtimeValue"]["constant"]
            else:
                raise ValueError(f"unsupported parameter input {v}")
        for k, v in (task.get("inputs", {}).get("artifacts") or {}).items():
            if "componentInputArtifact" in v:  # from the enclosing DAG's inputs
                out[k] = arts[v["componentInputArtifact"]]
                continue
            ref = v["taskOutputArtifact"]
            out[k] = run.tasks[ref["producerTask"]].outputs[ref["outputArtifactKey"]]
        return out

    # -- one task: attempts as pods
    def _run_task(self, run: PipelineRun, tname: str, task: dict[str, Any], comp: dict[str, Any],
                  exe: dict[str, Any], k8s: dict[str, Any], args: dict[str, Any], arts: dict[str, Any]) -> None:
        from google.protobuf import json_format
        from kfp.local import executor_input_utils, executor_output_utils, placeholder_utils
        from kfp.pipeline_spec import pipeline_spec_pb2

        tr = run.tasks[tname]
        comp_pb = json_format.ParseDict(comp, pipeline_spec_pb2.ComponentSpec())
        task_root = self.root / run.name / tname
        task_root.mkdir(parents=True, exist_ok=True)
        executor_input = executor_input_utils.construct_executor_input(
            component_spec=comp_pb, arguments=self._arguments(run, task, args, arts), task_root=str(task_root),
            block_input_artifact=False)
        ei_dict = executor_input_utils.executor_input_to_dict(executor_input=executor_input, component_spec=comp_pb)
        container = exe["container"]
        command = placeholder_utils.replace_placeholders(
            full_command=list(container.get("command", [])) + list(container.get("args", [])),
            executor_input_dict=ei_dict, pipeline_resource_name=run.name, task_resource_name=tname,
            pipeline_root=str(self.root), unique_pipeline_id=run.name)
        policy = task.get("retryPolicy") or {}
        retries = int(policy.get("maxRetryCount", 0))
        backoff = float(str(policy.get("backoffDuration", "0s")).rstrip("s") or 0)
        factor = float(policy.get("backoffFactor", 2.0) or 2.0)
        tr.status = "Running"
        for attempt in range(retries + 1):
            a = self._run_pod(run, tr, container, k8s, command, attempt)
            if a.rc == 0:
                tr.outputs = executor_output_utils.get_outputs_for_task(executor_input=executor_input,
                                                                         component_spec=comp_pb)
                tr.status = "Succeeded"
                return
            if a.cancelled or tname in run.cancel_requested:
                tr.status = "Cancelled"
                return
            if attempt < retries:
                time.sleep(backoff * factor ** attempt * self.backoff_scale)
        tr.status = "Failed"

    def _pod_env(self, run: PipelineRun, container: dict[str, Any], k8s: dict[str, Any], pod: dict[str, Any],
                 home: Path) -> tuple[dict[str, str], str | None]:
        env = self.image.env(home)
        env.update(self.extra_env)
        for e in container.get("env") or []:
            env[e["name"]] = str(e.get("value", ""))
        store = self.kube.api.store
        for kind, key in (("secretAsEnv", ("", "secrets")), ("configMapAsEnv", ("", "configmaps"))):
            for ref in k8s.get(kind) or []:
                name = ref.get("secretName") or ref.get("configMapName") or ""
                obj = store.get(key, self.ns, name)
                data = dict((obj or {}).get("data") or {})
                if kind == "secretAsEnv":
                    data = {k: base64.b64decode(v).decode() for k, v in data.items()}
                for kv in ref.get("keyToEnv") or []:
                    src = kv.get("secretKey") or kv.get("configMapKey")
                    if src in data:
                        env[kv["envVar"]] = data[src]
                    elif not ref.get("optional"):
                        return env, f"{kind[:-5]} {self.ns}/{name} key {src} not found"
        meta = pod["metadata"]
        fields = {"metadata.name": meta["name"], "metadata.uid": meta["uid"], "metadata.namespace": self.ns,
                  "spec.serviceAccountName": pod["spec"]["serviceAccountName"]}
        for f in k8s.get("fieldPathAsEnv") or []:
            env[f["name"]] = fields[f["fieldPath"]]
        env["STANDIN_POD_NETWORK"] = ",".join(self.network)
        return env, None

    def _run_pod(self, run: PipelineRun, tr: TaskRun, container: dict[str, Any], k8s: dict[str, Any],
                 command: list[str], attempt: int) -> Attempt:
        tname = tr.name
        pod_name = f"{_dns(run.name, 24)}-{_dns(tname, 24)}-{rand_suffix(5)}"
        pod = self.kube.add_pod(pod_name, labels={"pipelines.kubeflow.org/v2_component": "true",
                                                  "workflows.argoproj.io/workflow": run.name, "kfp-task": tname},
                                service_account=run.service_account,
                                containers=[{"name": "main", "image": container.get("image", "")}])
        a = Attempt(pod=pod_name, uid=pod["metadata"]["uid"])
        tr.attempts.append(a)
        pdir = self.root / "pods" / pod_name
        home, work, sa = pdir / "home", pdir / "work", pdir / "serviceaccount"
        for d in (home, work, sa):
            d.mkdir(parents=True, exist_ok=True)
        env, problem = self._pod_env(run, container, k8s, pod, home)
        a.log = pdir / "log"
        if problem:
            a.log.write_text(f"CreateContainerConfigError: {problem}\n")
            a.rc = 1
            self._finish(pod_name, a)
            return a
        env["KUBECONFIG"] = str(self.kube.kubeconfig(sa / "kubeconfig", run.service_account, self.ns))
        t0 = time.monotonic()
        with open(a.log, "wb") as log:
            log.write(f"[kfp stand-in] pod {pod_name} (uid {a.uid}, sa {run.service_account}) attempt {attempt}\n".encode())
            log.flush()
            proc = subprocess.Popen([*self.sandbox.wrap, *command], env=env, cwd=str(work), stdout=log,
                                    stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
        run.procs[tname] = proc
        try:
            while proc.poll() is None:
                if tname in run.cancel_requested and not a.cancelled:
                    a.cancelled = True
                    self._terminate(proc)
                time.sleep(0.2)
        finally:
            run.procs.pop(tname, None)
            try:  # the main process is gone: so is everything else in its container
                os.killpg(proc.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        a.rc, a.seconds = proc.returncode, time.monotonic() - t0
        self._finish(pod_name, a)
        return a

    def _terminate(self, proc: subprocess.Popen) -> None:
        """What the kubelet does to a pod being deleted: SIGTERM to the container, SIGKILL after the grace."""
        try:
            os.killpg(proc.pid, signal.SIGTERM)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + self.grace_s
        while proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.1)
        if proc.poll() is None:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            proc.wait(10)

    def _finish(self, pod_name: str, a: Attempt) -> None:
        phase = "Succeeded" if a.rc == 0 else "Failed"

        def done(o: dict[str, Any]) -> None:
            o["status"]["phase"] = phase
            for cs in o["status"].get("containerStatuses") or []:
                cs["ready"] = cs["started"] = False
                cs["state"] = {"terminated": {"exitCode": a.rc, "reason": "Completed" if a.rc == 0 else "Error"}}

        self.kube.api.store.mutate(("", "pods"), self.ns, pod_name, done)
        if a.log is not None and a.log.exists():
            self.kube.api.set_pod_log(pod_name, a.log.read_text(errors="replace"), self.ns)

    # -- from another thread
    def cancel(self, run: PipelineRun, tname: str, *, delete_pod: bool = False, kill: bool = False) -> None:
        """Terminate a running task's pod (SIGTERM, or SIGKILL with kill=True); no retry follows."""
        run.cancel_requested.add(tname)
        proc = run.procs.get(tname)
        if proc is not None and kill:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        if delete_pod:
            deadline = time.monotonic() + self.grace_s + 15
            while tname in run.procs and time.monotonic() < deadline:
                time.sleep(0.1)
            tr = run.tasks[tname]
            if tr.attempts:
                self.kube.delete_pod(tr.attempts[-1].pod, self.ns)

    def running_pod(self, run: PipelineRun, tname: str, timeout: float = 300.0) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if tname in run.procs and run.tasks[tname].status == "Running":
                return run.tasks[tname].attempts[-1].pod if run.tasks[tname].attempts else ""
            time.sleep(0.1)
        raise TimeoutError(f"task {tname} never ran")


def _condition_holds(cond: str, inputs: dict[str, Any]) -> bool:
    """The CEL conditions dsl.If/dsl.Elif compile to for a parameter compared with a constant:
    `inputs.parameter_values['NAME'] == 'x'` / `!= ''` / with a number. Anything else is refused."""
    m = re.fullmatch(r"\s*inputs\.parameter_values\['([^']+)'\]\s*(==|!=)\s*(.+?)\s*", cond)
    if not m:
        raise ValueError(f"condition not supported by the stand-in: {cond!r}")
    name, op, lit = m.groups()
    value = json.loads(lit.replace("'", '"')) if lit[0] in "'\"" else json.loads(lit)
    return (inputs[name] == value) == (op == "==")


def run_in_thread(pods: KfpPods, package: str | os.PathLike, params: dict[str, Any], *,
                  service_account: str = "default") -> tuple[threading.Thread, PipelineRun, dict[str, Any]]:
    """pods.run(...) in a thread, for tests that act while a task runs: (thread, the run, box) where
    box["error"] holds what run() raised, if anything."""
    run = pods.new_run(service_account=service_account)
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            pods.run(package, params, run=run)
        except BaseException as e:  # noqa: BLE001 - handed to the test
            box["error"] = e

    t = threading.Thread(target=target, name=f"kfp-standin-{uuid.uuid4().hex[:6]}", daemon=True)
    t.start()
    return t, run, box
