FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY bigmodel ./bigmodel
COPY api ./api
COPY workers ./workers
ARG EXTRAS=""
RUN pip install --no-cache-dir ".${EXTRAS}"
ENV BIGMODEL_STORE_URL=/data/store TF_CPP_MIN_LOG_LEVEL=2
ENTRYPOINT ["bigmodel"]
