# talkies in a container: the bots, the GPU worker and `talkies up` from one image.
#
#   CPU (tiny preset, noise):   docker build -t talkies .
#   CUDA (real presets):        docker build -t talkies:cuda --build-arg TORCH_INDEX=cu128 .
#
# The CUDA build takes torch's CUDA wheels (they carry the CUDA runtime); the host needs the
# NVIDIA driver and the NVIDIA Container Toolkit, and `--gpus all` (compose.yaml asks for it).
# Model weights are not baked in: mount a Hugging Face cache at /cache/hf.
FROM python:3.11-slim

ARG TORCH_VERSION=2.13.0
ARG TORCH_INDEX=cpu

RUN apt-get update \
    && apt-get install -y --no-install-recommends ffmpeg redis-server \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --create-home --uid 10001 talkies

WORKDIR /app
# Dependencies first, so code changes don't reinstall them.
COPY pyproject.toml README.md requirements-nodeps.txt constraints.txt ./
RUN pip install --no-cache-dir "torch==${TORCH_VERSION}" \
        --index-url "https://download.pytorch.org/whl/${TORCH_INDEX}" \
    && mkdir -p bot gpu_worker storage config \
    && touch bot/__init__.py gpu_worker/__init__.py storage/__init__.py config/__init__.py \
    && pip install --no-cache-dir -c constraints.txt . \
    && pip install --no-cache-dir --no-deps -r requirements-nodeps.txt
COPY bot ./bot
COPY gpu_worker ./gpu_worker
COPY storage ./storage
COPY config ./config
RUN pip install --no-cache-dir --no-deps . && mkdir -p /data /cache && chown talkies /data /cache

USER talkies
ENV TALKIES_DATABASE_PATH=/data/talkies.sqlite3 \
    TALKIES_DATA_DIR=/data \
    TALKIES_CACHE_DIR=/cache/talkies \
    HF_HOME=/cache/hf \
    PYTHONUNBUFFERED=1
VOLUME ["/data", "/cache"]
ENTRYPOINT ["talkies"]
CMD ["up"]
