"""The machine learning: data, transforms, splits, Keras models, training, metrics, registry, datasets."""
