"""The Celery app that `celery -A workers.app` and `bigmodel worker` load, built from the environment."""

from workers.celery_app import make_celery

app = make_celery()
