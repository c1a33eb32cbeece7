"""Ray: the only package in slam that imports ray.

    from slam.distributed.train import fit
    result = fit(cfg, num_workers=2, storage="s3://bucket/runs")   # -> TrainResult(delta_uri=...)

| module | what |
|---|---|
| `train.py` | Ray Train V2 around `slam.train.train_loop`: workers, checkpoints on disk or S3, resume |
| `tune.py` | Ray Tune over the layer count k (+ lr, selection): each trial a reduced-budget training run |
| `job_submission.py` | Ray's Job Submission API client: run a `slam` step on a long-lived Ray cluster |
"""
