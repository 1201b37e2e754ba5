# One image per device kind, from one file; each installs exactly one TensorFlow:
#   docker build --target cpu -t bigmodel:cpu .    (tensorflow-cpu: the API and the CPU/infer pools)
#   docker build --target gpu -t bigmodel:gpu .    (tensorflow[and-cuda]: the GPU pool)
FROM python:3.11-slim AS base
# A local store under /data/store unless BIGMODEL_STORE_URL says otherwise (compose uses MinIO).
ENV PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 TF_CPP_MIN_LOG_LEVEL=2 \
    BIGMODEL_CACHE_DIR=/cache BIGMODEL_STORE_URL=/data/store
WORKDIR /app
COPY pyproject.toml README.md ./
COPY bigmodel ./bigmodel
COPY api ./api
COPY workers ./workers
RUN useradd --create-home --uid 1000 bigmodel && mkdir -p /cache /data/store \
    && chown bigmodel /cache /data/store

FROM base AS cpu
RUN pip install ".[cpu]"
USER bigmodel
ENTRYPOINT ["bigmodel"]
CMD ["--help"]

FROM base AS gpu
RUN pip install ".[gpu]"
USER bigmodel
ENTRYPOINT ["bigmodel"]
CMD ["worker", "--pool", "gpu"]
