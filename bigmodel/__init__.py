"""bigmodel: a job system for machine learning on Celery, Redis, pandas and Keras."""

__version__ = "0.1.0"
