"""One module per job type: `run(ctx) -> result`, called inside a worker."""
