"""The SLAM DAG: prepare data -> [new data?] probe -> tune k -> train -> evaluate (base, SLAM vs base) -> register.

    slam pipeline compile --out pipeline.yaml [--gpu] [--node-selector pool=gpu] [--toleration nvidia.com/gpu]
    python -m pipeline.cli compile --out pipeline.yaml        # the same, without the slam CLI

Wiring and resources only: every step's logic is one call into `slam.steps` (see components/). The data
step decides the languages; when `languages_uri` (one folder per language) holds nothing the champion
was not trained on, it returns "" and the rest is skipped: a schedule can watch that location cheaply.
Every step gets the KFP run id and name, so its MLflow run nests under one run per pipeline run.
Compile-time options (GPU, node placement, secrets, service account) are `CompileOptions`; run-time
knobs are pipeline parameters. Resource/retry/secret settings are ignored by kfp.local (the demo) and
honoured on a cluster (and by the steps-as-pods stand-in, tests/kubestandin/kfp.py).
The image is one setting, `SLAM_IMAGE` at compile time (components/image.py): the steps run in it, and
the launcher steps get it as env so their RayJobs run the very same build.
"""

# no `from __future__ import annotations`: kfp reads the pipeline's annotations as real types
from dataclasses import dataclass, field

from kfp import dsl, kubernetes

from components.evaluate import evaluate
from components.image import IMAGE
from components.prepare_data import prepare_data
from components.probe_layers import probe_layers
from components.register_model import register_model
from components.train_slam import train_slam
from components.tune_layer_count import tune_layer_count

PIPELINE_NAME = "slam"
# S3 credentials for every step come from this Secret (keys = env var names); never pipeline parameters.
S3_SECRET_KEYS = {k: k for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_ENDPOINT_URL")}


@dataclass(frozen=True)
class CompileOptions:
    gpu: bool = False
    """Request GPUs for tune/train/evaluate (set_accelerator_type/limit)."""
    gpu_type: str = "nvidia.com/gpu"
    gpus: int = 1
    node_selector: dict[str, str] = field(default_factory=dict)
    """Node labels the heavy steps must run on (e.g. {"pool": "gpu"})."""
    tolerations: list[str] = field(default_factory=list)
    """Taint keys the heavy steps tolerate (operator Exists, effect NoSchedule)."""
    s3_secret: str = "slam-s3"
    """Secret whose AWS_* keys become env vars in every step; empty = none (local/IRSA)."""
    mlflow_secret: str = ""
    """Optional Secret with MLFLOW_TRACKING_USERNAME/PASSWORD for an authenticated MLflow."""
    cpu_limit: str = "4"
    memory_limit: str = "32G"
    service_account: str = "slam-pipeline"
    """The Kubernetes service account the run's pods use (k8s/base/rbac.yaml binds the launcher's Role to
    it). KFP sets it per run, not in the compiled YAML: `slam pipeline submit/schedule` pass it; for a
    YAML uploaded in the UI, choose it in the run form (Kubeflow's default SA cannot create RayJobs)."""
    rayjob_ttl_s: int = 120
    """How long a finished RayJob's cluster stays (logs, dashboard) before KubeRay deletes it."""


def _common(task: dsl.PipelineTask, opts: CompileOptions, name: str) -> dsl.PipelineTask:
    task.set_display_name(name)
    if opts.s3_secret:
        kubernetes.use_secret_as_env(task, secret_name=opts.s3_secret, secret_key_to_env=S3_SECRET_KEYS,
                                     optional=True)
    if opts.mlflow_secret:
        kubernetes.use_secret_as_env(task, secret_name=opts.mlflow_secret, optional=True, secret_key_to_env={
            "MLFLOW_TRACKING_USERNAME": "MLFLOW_TRACKING_USERNAME",
            "MLFLOW_TRACKING_PASSWORD": "MLFLOW_TRACKING_PASSWORD"})
    return task


def _launcher(task: dsl.PipelineTask, opts: CompileOptions) -> dsl.PipelineTask:
    """Steps that create RayJobs: the image they run in (so the RayJob runs the same build), how long a
    finished cluster stays, and, from the downward API, who they are: the pod (the RayJob's owner, so
    deleting the pod deletes it), its namespace and service account (named in RBAC errors)."""
    task.set_env_variable("SLAM_IMAGE", IMAGE)
    task.set_env_variable("SLAM_RAYJOB_TTL_S", str(int(opts.rayjob_ttl_s)))
    for env, path in (("SLAM_POD_NAME", "metadata.name"), ("SLAM_POD_UID", "metadata.uid"),
                      ("SLAM_K8S_NAMESPACE", "metadata.namespace"), ("SLAM_SERVICE_ACCOUNT", "spec.serviceAccountName")):
        kubernetes.use_field_path_as_env(task, env_name=env, field_path=path)
    return task


def _heavy(task: dsl.PipelineTask, opts: CompileOptions) -> dsl.PipelineTask:
    """Model-running steps: CPU/memory, optional GPU, and the GPU nodes' selector/tolerations."""
    task.set_cpu_limit(opts.cpu_limit).set_memory_limit(opts.memory_limit)
    if opts.gpu:
        task.set_accelerator_type(opts.gpu_type).set_accelerator_limit(opts.gpus)
    for key, value in opts.node_selector.items():
        kubernetes.add_node_selector(task, label_key=key, label_value=value)
    for key in opts.tolerations:
        kubernetes.add_toleration(task, key=key, operator="Exists", effect="NoSchedule")
    return task


def build_pipeline(opts: CompileOptions | None = None):
    """The pipeline function for these compile-time options (what `kfp.compiler` or `kfp.local` take)."""
    opts = opts or CompileOptions()

    @dsl.pipeline(name=PIPELINE_NAME,
                  description="SLAM: probe language layers, tune k, fine-tune their FFNs, evaluate, register.")
    def slam_pipeline(
        base_model: str = "pypi:smollm2",
        languages: str = "en,de,fr,es,sw,th,zh",
        languages_uri: str = "",
        train_data: str = "",
        synth_problems: int = 400,
        synth_seed: int = 0,
        probe_method: str = "msd",
        probe_top_k: int = 6,
        probe_selection: str = "bottom-k",
        probe_questions: int = 32,
        k_grid: str = "2,4,6",
        preset: str = "",
        train_overrides: list = [],  # noqa: B006 - kfp reads the default from the signature
        tune_overrides: list = [],  # noqa: B006
        launcher: str = "local",
        storage: str = "s3://slam/runs",
        mlflow_uri: str = "",
        experiment: str = "slam",
        registry_name: str = "slam",
        gate_margin: float = 1.0,
        eval_tasks: str = "synthetic",
        eval_limit: int = 0,
        eval_max_new_tokens: int = 0,
        benchmarks: str = "",
    ):
        """SLAM: probe language layers, tune k, fine-tune their FFNs, evaluate base vs SLAM, register.

        Args:
            base_model: The model to adapt: pypi:smollm2, hf:org/name, s3://bucket/model or a path in the image.
            languages: Languages to train and evaluate (ISO codes, comma list; en keeps the answers).
            languages_uri: A location with one folder per language (<code>/train.jsonl, test.jsonl, probe.jsonl); when set, its folders are the languages and the run stops early unless one is new to the champion.
            train_data: A built dataset (slam data build) to use as is; empty = synthesize the multilingual world.
            synth_problems: Training problems per language in the synthetic world.
            synth_seed: Seed of the synthetic world.
            probe_method: msd, lape or cosine.
            probe_top_k: Layers the probe selects.
            probe_selection: Layers to train: bottom-k (the paper's 0..k-1, the default: README, `slam study`),
                top-k or contiguous (the probe's choice), random-k or top-layers (controls).
            probe_questions: Parallel questions per language for probing.
            k_grid: Layer counts Ray Tune tries, e.g. 2,4,6.
            preset: A config YAML (in the image or on S3) under the overrides.
            train_overrides: Config overrides for the training run, e.g. ["train.max_steps=60", "train.lr=2e-4"].
            tune_overrides: Config overrides for the Tune trials, e.g. ["tune.max_steps=8", "train.engine=torch"].
            launcher: local (Ray in the step's pod) or kuberay (a RayJob per tune/train step).
            storage: Where every step writes (s3://bucket/prefix, or a local dir with kfp.local).
            mlflow_uri: MLflow tracking server; empty = no tracking.
            experiment: MLflow experiment.
            registry_name: Registered model name.
            gate_margin: Accuracy points any language may drop against the champion.
            eval_tasks: Benchmarks: synthetic, mgsm, msvamp (comma list).
            eval_limit: Questions per language (0 = all).
            eval_max_new_tokens: Generation budget (0 = the task's protocol value).
            benchmarks: Where mgsm/msvamp test sets come from: a root holding mgsm/ msvamp/, or task=URI pairs (dir, s3://, hf:org/name); empty = the dataset's test splits, then the image's copy.
        """
        # every step nests its MLflow run under one run per pipeline run, named after the KFP run
        run = dict(pipeline_run_id=dsl.PIPELINE_JOB_ID_PLACEHOLDER, pipeline_run_name=dsl.PIPELINE_JOB_NAME_PLACEHOLDER,
                   mlflow_uri=mlflow_uri, experiment=experiment)
        data = _common(prepare_data(languages=languages, train_data=train_data, synth_problems=synth_problems,
                                    synth_seed=synth_seed, languages_uri=languages_uri, registry_name=registry_name,
                                    storage=storage, **run), opts, "prepare data")
        # The data step decides the languages once ("" = a watched location has no new language: stop here)
        langs = data.outputs["Output"]
        with dsl.If(langs != "", name="new-data"):
            probe = _heavy(_common(probe_layers(
                base_model=base_model, dataset=data.outputs["dataset"], languages=langs, method=probe_method,
                top_k=probe_top_k, selection=probe_selection, max_questions=probe_questions, storage=storage, **run,
            ), opts, "probe layers"), opts)
            tune = _heavy(_common(tune_layer_count(
                base_model=base_model, dataset=data.outputs["dataset"], probe=probe.outputs["probe"], k_grid=k_grid,
                preset=preset, overrides=tune_overrides, launcher=launcher, storage=storage, **run,
            ), opts, "tune layer count (Ray Tune)"), opts)
            train = _heavy(_common(train_slam(
                base_model=base_model, dataset=data.outputs["dataset"], probe=probe.outputs["probe"],
                tuned=tune.outputs["results"], preset=preset, overrides=train_overrides, launcher=launcher,
                storage=storage, **run,
            ), opts, "train SLAM (Ray Train + DeepSpeed)"), opts)
            eval_kw = dict(base_model=base_model, dataset=data.outputs["dataset"], tasks=eval_tasks, languages=langs,
                           limit=eval_limit, max_new_tokens=eval_max_new_tokens, storage=storage,
                           benchmarks=benchmarks, **run)
            base_eval = _heavy(_common(evaluate(label="base", **eval_kw), opts, "evaluate base"), opts)
            slam_eval = _heavy(_common(evaluate(label="slam", delta=train.outputs["delta"],
                                                baseline=base_eval.outputs["report"], **eval_kw), opts,
                                       "evaluate SLAM vs base"), opts)
            register = _common(register_model(
                base_model=base_model, delta=train.outputs["delta"], probe=probe.outputs["probe"],
                slam_eval=slam_eval.outputs["report"], base_eval=base_eval.outputs["report"],
                registry_name=registry_name, gate_margin=gate_margin, **run,
            ), opts, "register model")

            # The launcher steps re-attach on retry (deterministic RayJob names); training is never cached:
            # a cache hit would skip writing the delta a later step reads from storage.
            for task in (tune, train):
                _launcher(task, opts)
                task.set_retry(num_retries=2, backoff_duration="60s", backoff_factor=2.0)
                task.set_caching_options(False)
            register.set_retry(num_retries=3, backoff_duration="30s", backoff_factor=2.0)
            register.set_caching_options(False)
        # the data step reads the registry (which languages the champion knows): never a cached answer
        data.set_caching_options(False)

    return slam_pipeline


slam_pipeline = build_pipeline()
