"""Celery app, tasks and worker pool start-up: thin wrappers around bigmodel's core."""
