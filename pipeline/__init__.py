"""The pipeline layer: what runs the benchmark (CLI, DVC stages, the training loop, evaluation and
transfer fan-out, Ray Tune sweeps, perf, leaderboard and claims). It stands on methods/ and
evaluations/, which stand on bench/ (config, data, views, backbones, optim, io, paths)."""
