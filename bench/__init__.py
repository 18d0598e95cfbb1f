"""The core the methods, evaluations and pipeline stand on: config and schema, data, views,
backbones, optimizers, precision, io, paths, progress and distributed primitives. Nothing here
imports methods/, evaluations/ or pipeline/."""
