"""Ray: the only package in slam that imports ray (train.py here; tune/jobs join it later).

    from slam.distributed.train import fit
    result = fit(cfg, num_workers=2, storage="s3://bucket/runs")   # -> TrainResult(delta_uri=...)
"""
