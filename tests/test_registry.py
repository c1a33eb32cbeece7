"""Registry: the per-language champion gate (pure, table-driven) and, against a real MLflow server + S3 API
server, register / promote / reject / re-register / load back by alias and generate; lineage to the
training run; and the races: concurrent registrations of different deltas (the gate is decided in
version order against the champion of that moment), of the same delta (one version), and a
registration that died between creating its version and setting the alias (its retry gates it).

    .venv/bin/python -m pytest -q tests/test_registry.py
"""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest

from slam.config import TrackingConfig
from slam.errors import SlamError
from slam.gate import Evidence, decide


def ev(acc: dict, base: dict | None = None, trained: list | None = None) -> Evidence:
    return Evidence(acc, base or {}, trained or [])


@pytest.mark.parametrize("cand,champ,margin,promote,why", [
    (ev({"de": .30, "en": .50}), None, 1.0, True, "no champion yet"),
    (ev({"de": .30, "en": .50}), ev({"de": .25, "en": .50}), 1.0, True, "average non-English accuracy 30.0 beats"),
    (ev({"de": .25, "en": .50}), ev({"de": .25, "en": .50}), 1.0, False, "does not beat"),   # a tie changes nothing
    (ev({"de": .40, "en": .45}), ev({"de": .25, "en": .50}), 1.0, False, "en: drops 5.0 points"),
    (ev({"de": .40, "en": .495}), ev({"de": .25, "en": .50}), 1.0, True, "beats"),           # 0.5 points: within 1
    (ev({"de": .40, "en": .45}), ev({"de": .25, "en": .50}), 5.0, True, "beats"),            # the margin is configurable
    (ev({"de": .20, "fr": .60}), ev({"de": .25, "fr": .30}), 1.0, False, "de: drops 5.0"),   # every language counts
    # a new language must beat the base there; then it is promoted even without a higher shared average
    (ev({"de": .30, "fr": .30, "sw": .20}, {"sw": .05}), ev({"de": .30, "fr": .30}), 1.0, True, "adds sw"),
    (ev({"de": .30, "fr": .30, "sw": .05}, {"sw": .05}), ev({"de": .30, "fr": .30}), 1.0, False,
     "sw: new language, +0.0 vs base"),
    (ev({"de": .30, "fr": .30, "sw": .20}), ev({"de": .30, "fr": .30}), 1.0, False, "no base accuracy"),
    # the challenger was not evaluated on a language the champion was: its score there is unknown
    (ev({"de": .50}), ev({"de": .30, "fr": .30}), 1.0, False, "fr: not evaluated"),
])
def test_gate_per_language(cand, champ, margin, promote, why):
    d = decide(cand, champ, margin)
    assert d.promote is promote
    assert why in d.reason
    table = d.markdown()
    for lang in set(cand.accuracy) | set(champ.accuracy if champ else {}):
        assert f"| {lang} |" in table


def test_evidence_round_trips_through_version_tags():
    e = Evidence.from_reports({"per_lang": {"en": {"accuracy": 0.5}, "sw": {"accuracy": 0.25}}},
                              {"per_lang": {"sw": {"accuracy": 0.1}}}, trained=["sw", "en"])
    assert Evidence.from_tags(e.tags()) == e
    assert e.tags()["slam.eval_languages"] == "en,sw" and e.tags()["slam.trained_languages"] == "en,sw"
    assert Evidence.from_tags({"acc_de": "0.3"}).accuracy == {"de": 0.3}   # versions from before the gate
    assert Evidence.from_tags({"slam.layers": "1,2"}) is None
    with pytest.raises(SlamError, match="per_lang"):
        Evidence.from_reports({"average": 0.3})
    with pytest.raises(SlamError, match="numeric accuracy"):
        Evidence.from_reports({"per_lang": {"de": {"accuracy": "high"}}})


def test_register_needs_a_tracking_uri(tmp_path, monkeypatch):
    from slam.registry import register_delta

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    with pytest.raises(SlamError, match="tracking URI"):
        register_delta(TrackingConfig(), str(tmp_path), str(tmp_path / "eval.json"), name="x")


def test_register_refuses_a_non_delta_dir(tmp_path):
    from slam.registry import register_delta

    (tmp_path / "eval.json").write_text(json.dumps({"per_lang": {"de": {"accuracy": 0.1}}}))
    uri = f"sqlite:///{tmp_path / 'm.db'}"
    with pytest.raises(SlamError, match="not a SLAM delta dir"):
        register_delta(TrackingConfig(uri=uri), str(tmp_path), str(tmp_path / "eval.json"), name="x")


# --------------------------------------------------------------------------------------------------
# Against a real MLflow server


def make_delta(base: Path, out: Path, seed: int, run_name: str = "", languages: list | None = None) -> Path:
    """A real delta (slam.delta.save_delta) of the tiny base with layers 1,2 perturbed by `seed`."""
    import torch

    from slam.delta import save_delta
    from slam.freeze import make_plan
    from slam.models import load_model

    model = load_model(base, device="cpu")
    plan = make_plan(model, [1, 2], ["up", "down"])
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for n, p in model.named_parameters():
            if n in plan.names:
                p.add_(torch.randn(p.shape, generator=g) * 0.01)
    save_delta(model, plan, out, {"base_path": str(base), "data_fingerprint": "data-abc", "run_name": run_name,
                                  "languages": languages or ["de", "en", "sw"]})
    return out


def write_eval(path: Path, de: float, sw: float, en: float) -> Path:
    per = {"de": {"accuracy": de, "correct": 0, "total": 10}, "sw": {"accuracy": sw, "correct": 0, "total": 10},
           "en": {"accuracy": en, "correct": 0, "total": 10}}
    path.write_text(json.dumps({"per_lang": per, "average": (de + sw + en) / 3, "average_non_en": (de + sw) / 2,
                                "english": en, "samples": []}))
    return path


@pytest.mark.integration
def test_registry_gate_lineage_and_serving_against_real_server(mlflow_uri, tiny_model_dir, tmp_path):
    import mlflow
    from mlflow import MlflowClient

    from slam.registry import register_delta
    from slam.tracking import get_tracker

    cfg = TrackingConfig(uri=mlflow_uri, experiment="registry-test", gate_margin=1.0)
    name = "slam-tiny"
    # the run that "trained" delta 1 (the training loop keys its run by the run name in the manifest)
    with get_tracker(cfg).run("slam-slam-abc", key="slam-slam-abc") as train_run:
        train_run.log_metrics({"train/loss": 1.0}, step=1)
    base_eval = write_eval(tmp_path / "base.json", 0.05, 0.05, 0.45)
    reg = lambda seed, de, sw, en, **kw: register_delta(  # noqa: E731
        cfg, str(make_delta(tiny_model_dir, tmp_path / f"delta{seed}", seed, kw.pop("run_name", ""))),
        str(write_eval(tmp_path / f"eval{seed}.json", de, sw, en)), base_eval_uri=str(base_eval), name=name, **kw)

    first = reg(1, 0.30, 0.30, 0.50, merged=True, run_name="slam-slam-abc")
    assert (first.version, first.alias, first.created) == ("1", "champion", True)
    assert first.source_run_id == train_run.id and first.model_id
    worse = reg(2, 0.20, 0.20, 0.60)
    assert (worse.alias, worse.promoted) == ("challenger", False) and "de: drops 10.0 points" in worse.reason
    english_drop = reg(3, 0.45, 0.45, 0.45)
    assert english_drop.alias == "challenger" and "en: drops 5.0 points" in english_drop.reason
    better = reg(4, 0.40, 0.40, 0.495)
    assert (better.version, better.alias) == ("4", "champion")
    assert "| de | 5.0 | 30.0 | 40.0 | +10.0 |" in better.table

    again = reg(4, 0.40, 0.40, 0.495)   # same delta bytes -> same fingerprint -> no new version
    assert (again.created, again.version, again.alias) == (False, "4", "champion")

    client = MlflowClient(mlflow_uri)
    assert len(client.search_model_versions(f"name = '{name}'")) == 4
    champ = client.get_model_version_by_alias(name, "champion")
    assert champ.version == "4"
    assert champ.tags["slam.layers"] == "1,2" and champ.tags["slam.acc.de"] == "0.400000"
    assert champ.tags["slam.trained_languages"] == "de,en,sw" and champ.tags["slam.eval_languages"] == "de,en,sw"
    assert champ.tags["slam.gate.de"].startswith("ok") and champ.tags["slam.gate"].startswith("champion: ")
    assert "## Gate: champion" in champ.description and "| de |" in champ.description
    assert client.get_model_version_by_alias(name, "challenger").version == "3"
    # lineage: version 1 came from the training run; its MLflow 3 logged model is that run's output
    v1 = client.get_model_version(name, "1")
    assert v1.run_id == train_run.id and v1.source == f"models:/{first.model_id}"
    lm = client.get_logged_model(first.model_id)
    assert lm.source_run_id == train_run.id
    assert {o.model_id for o in client.get_run(train_run.id).outputs.model_outputs} == {first.model_id}
    assert v1.tags["slam.merged_uri"] == f"runs:/{first.run_id}/merged"
    # versions without a known training run come from their register run
    assert client.get_model_version(name, "2").run_id == worse.run_id

    mlflow.set_tracking_uri(mlflow_uri)
    info = mlflow.models.get_model_info(f"models:/{name}@champion")
    assert [c.name for c in info.signature.inputs.inputs] == ["question"]
    assert info.signature.params.params[0].name == "max_new_tokens"
    model = mlflow.pyfunc.load_model(f"models:/{name}@champion")
    out = model.predict({"question": ["Janet has 3 apples and buys 5 more."]}, params={"max_new_tokens": 4})
    assert isinstance(out, list) and len(out) == 1 and isinstance(out[0], str)

    # the served model is base + delta 4, not the base: its up_proj equals the delta's tensor exactly
    from slam.delta import load_delta

    tensors, _ = load_delta(tmp_path / "delta4")
    served = dict(model.unwrap_python_model().model.named_parameters())
    for k, v in tensors.items():
        assert served[k].detach().equal(v)

    # artifacts were proxied to the S3 API server, not written to local disk
    from slam import storage

    keys = storage.s3_client().list_objects_v2(Bucket="mlflow-test", Prefix="artifacts/")
    assert any(o["Key"].endswith("delta.safetensors") for o in keys.get("Contents", []))


@pytest.mark.integration
def test_concurrent_registrations_gate_in_version_order(mlflow_uri, tiny_model_dir, tmp_path):
    """Regression (15.7): two registrations racing past the same old champion both passed the gate and the
    last alias write won; the same delta registered twice at once gave two versions."""
    from mlflow import MlflowClient

    from slam.registry import register_delta

    cfg = TrackingConfig(uri=mlflow_uri, experiment="registry-race")
    name = "slam-race"
    base_eval = write_eval(tmp_path / "base.json", 0.05, 0.05, 0.45)
    deltas = {s: make_delta(tiny_model_dir, tmp_path / f"d{s}", s) for s in (1, 2, 3)}
    evals = {1: write_eval(tmp_path / "e1.json", .30, .30, .50), 2: write_eval(tmp_path / "e2.json", .40, .40, .50),
             3: write_eval(tmp_path / "e3.json", .50, .50, .50)}
    assert register_delta(cfg, str(deltas[1]), str(evals[1]), base_eval_uri=str(base_eval), name=name).promoted

    def race(jobs: list[tuple[int, int]]) -> list:
        barrier, results, errors = threading.Barrier(len(jobs)), [None] * len(jobs), []

        def go(i: int, delta: int, evaluation: int) -> None:
            try:
                barrier.wait()
                results[i] = register_delta(cfg, str(deltas[delta]), str(evals[evaluation]),
                                            base_eval_uri=str(base_eval), name=name)
            except Exception as e:  # noqa: BLE001
                errors.append(e)

        threads = [threading.Thread(target=go, args=(i, *job)) for i, job in enumerate(jobs)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(300)
        assert not errors, errors
        return results

    # delta 2 (40%) and delta 3 (50%) both beat champion 1 (30%): whatever the order, 3 must end champion
    r2, r3 = race([(2, 2), (3, 3)])
    client = MlflowClient(mlflow_uri)
    assert client.get_model_version_by_alias(name, "champion").version == r3.version
    gates = {v.version: v.tags["slam.gate"] for v in client.search_model_versions(f"name = '{name}'")}
    assert all(gates.values()), gates      # every version decided
    if int(r2.version) > int(r3.version):  # 2 was gated after 3, against 3: it drops 10 points
        assert "drops 10.0 points" in gates[r2.version]

    # the same delta twice at once: one version
    before = len(client.search_model_versions(f"name = '{name}'"))
    a, b = race([(3, 3), (3, 3)])
    assert a.version == b.version == r3.version
    deltas[4], evals[4] = make_delta(tiny_model_dir, tmp_path / "d4", 4), write_eval(tmp_path / "e4.json", .55, .55, .5)
    c, d = race([(4, 4), (4, 4)])
    assert c.version == d.version and c.created != d.created
    versions = client.search_model_versions(f"name = '{name}'")
    assert len(versions) == before + 1
    assert client.get_model_version_by_alias(name, "champion").version == c.version


@pytest.mark.integration
def test_a_retry_after_a_crash_between_version_and_alias_applies_the_gate(mlflow_uri, tiny_model_dir, tmp_path,
                                                                          monkeypatch):
    """Regression (15.7): the retry found the version by fingerprint and returned without gating it."""
    from mlflow import MlflowClient

    from slam import registry

    cfg = TrackingConfig(uri=mlflow_uri, experiment="registry-retry")
    name = "slam-retry"
    delta = make_delta(tiny_model_dir, tmp_path / "d", 11)
    evaluation = write_eval(tmp_path / "e.json", .3, .3, .5)

    def crash(*a, **kw):
        raise SlamError("pod killed")

    monkeypatch.setattr(registry, "_decide_in_order", crash)
    with pytest.raises(SlamError, match="pod killed"):
        registry.register_delta(cfg, str(delta), str(evaluation), name=name)
    client = MlflowClient(mlflow_uri)
    (v,) = client.search_model_versions(f"name = '{name}'")
    assert "slam.gate" not in v.tags and not v.aliases
    monkeypatch.undo()
    retry = registry.register_delta(cfg, str(delta), str(evaluation), name=name)
    assert (retry.version, retry.created, retry.alias) == (v.version, False, "champion")
    assert client.get_model_version_by_alias(name, "champion").version == v.version

    # a registration that died for good is gated by the next one (after GATE_WAIT_S), oldest first
    orphan = make_delta(tiny_model_dir, tmp_path / "orphan", 12)
    monkeypatch.setattr(registry, "_decide_in_order", crash)
    with pytest.raises(SlamError):
        registry.register_delta(cfg, str(orphan), str(write_eval(tmp_path / "o.json", .2, .2, .5)), name=name)
    monkeypatch.undo()
    monkeypatch.setattr(registry, "GATE_WAIT_S", 0.5)
    nxt = registry.register_delta(cfg, str(make_delta(tiny_model_dir, tmp_path / "n", 13)),
                                  str(write_eval(tmp_path / "n.json", .4, .4, .5)), name=name)
    tags = {v.version: v.tags.get("slam.gate", "") for v in client.search_model_versions(f"name = '{name}'")}
    assert tags["2"].startswith("challenger") and nxt.alias == "champion", tags


def test_cli_register_embedded_store_and_bad_input(tiny_model_dir, tmp_path, capsys, monkeypatch):
    from slam.cli import main

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    delta = make_delta(tiny_model_dir, tmp_path / "delta", seed=7)
    evaluation = write_eval(tmp_path / "eval.json", 0.3, 0.2, 0.5)
    args = ["register", "--delta", str(delta), "--eval", str(evaluation), "--name", "cli-model", f"tracking.uri={uri}"]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "cli-model version 1 is the new champion: no champion yet" in out
    assert json.loads(out[out.index("{"):])["version"] == "1"
    assert main(args) == 0
    assert "is already version 1 of cli-model" in capsys.readouterr().out
    assert main([*args[:4], str(tmp_path / "missing.json"), *args[5:]]) == 2
    err = capsys.readouterr().err
    assert "missing.json" in err and len(err.strip().splitlines()) == 1


@pytest.mark.parametrize("error", [
    "BAD_REQUEST: (sqlite3.IntegrityError) UNIQUE constraint failed: model_version_tags.key",   # as CI saw it
    "BAD_REQUEST: (psycopg2.errors.UniqueViolation) duplicate key value violates unique constraint",
    "BAD_REQUEST: (pymysql.err.IntegrityError) (1062, \"Duplicate entry 'slam-race-2-slam.gate' for key\")"])
def test_a_version_tag_a_concurrent_registration_wrote_first_is_rewritten_not_an_error(error):
    """MLflow's SQL store sets a tag by read-then-insert: two registrations deciding the same version at once
    made the slower insert fail on the unique key (seen in CI on sqlite; a cluster's store is PostgreSQL or
    MySQL). The second try is an update."""
    from mlflow.exceptions import MlflowException

    from slam.registry import _set_version_tag

    class RacingStore:
        def __init__(self, error: str) -> None:
            self.calls, self.error = [], error

        def set_model_version_tag(self, *args):
            self.calls.append(args)
            if len(self.calls) == 1:
                raise MlflowException(self.error)

    lost_race = RacingStore(error)
    _set_version_tag(lost_race, "slam-race", "2", "slam.gate", "champion: ok")
    assert lost_race.calls == [("slam-race", "2", "slam.gate", "champion: ok")] * 2
    other = RacingStore("RESOURCE_DOES_NOT_EXIST: no version 2")
    with pytest.raises(MlflowException, match="RESOURCE_DOES_NOT_EXIST"):
        _set_version_tag(other, "slam-race", "2", "slam.gate", "champion: ok")
    assert len(other.calls) == 1
