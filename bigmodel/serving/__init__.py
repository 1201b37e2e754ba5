"""Online inference: compiled predictors, the per-process model cache, micro-batching, protocol codecs."""
