"""Data side of SLAM: record schema, loaders, validation with quarantine, training-set builder, synthetic world."""
