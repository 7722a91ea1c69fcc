# syntax=docker/dockerfile:1
# The image classifier as a web service on the CPU: `python -m helpers serve` (FastAPI and
# uvicorn) running an exported ONNX model in ONNX Runtime, as a non-root user.
#
#   python -m helpers export --checkpoint data/checkpoints/resnet9_quick/best.pt --out deploy/models
#   docker build -t image-classifier .          # bakes deploy/models/ into the image at /models
#   docker run --rm -p 8000:8000 image-classifier
#   docker run --rm -p 8000:8000 -v "$PWD/deploy/models:/models:ro" image-classifier  # or mount
#
# /models must hold model.onnx and its sidecar model.json (what `helpers export` writes). /explain
# answers 501 unless the checkpoint is there too (add `--checkpoint /models/best.pt`).
# deploy/compose.yaml runs it next to Prometheus; .github/workflows/docker.yml publishes it.
#
# Build arguments:
#   PYTHON_VERSION   the python:<version>-slim base (default 3.11, the version CI tests)
#   TORCH_INDEX_URL  where torch and torchvision come from: PyTorch's CPU-only wheels, without
#                    the CUDA libraries of PyPI's Linux wheels (several GB smaller)
#   MODEL_DIR        the export folder to bake in (default deploy/models; another folder must
#                    also be let through .dockerignore)

ARG PYTHON_VERSION=3.11

# --- build: a virtual environment with helpers[serve] at the pinned versions -----------------
FROM python:${PYTHON_VERSION}-slim AS build
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
COPY requirements/constraints.txt requirements/constraints.txt
# torch and torchvision first, from the CPU index, at the versions of the constraints file; the
# constraints without them (and without the CUDA packages) then pin everything else.
RUN python -m venv /opt/venv \
    && grep -E '^(torch|torchvision)==' requirements/constraints.txt > /tmp/torch.txt \
    && grep -vE '^(torch|torchvision|triton|nvidia-|cuda-)' requirements/constraints.txt \
       > /tmp/constraints.txt \
    && /opt/venv/bin/pip install --index-url "${TORCH_INDEX_URL}" -r /tmp/torch.txt
COPY pyproject.toml README.md ./
COPY helpers helpers
RUN /opt/venv/bin/pip install --constraint /tmp/constraints.txt ".[serve]"

# --- runtime: the environment, the model, an unprivileged user ------------------------------
FROM python:${PYTHON_VERSION}-slim
ARG MODEL_DIR=deploy/models
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    HELPERS_DATA_DIR=/tmp/helpers-data \
    MPLCONFIGDIR=/tmp/matplotlib
RUN useradd --create-home --uid 10001 --shell /usr/sbin/nologin app
COPY --from=build /opt/venv /opt/venv
COPY ${MODEL_DIR}/ /models/
USER app
WORKDIR /home/app
EXPOSE 8000
# No curl in the slim image: ask /health with Python's standard library.
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import sys, urllib.request; sys.exit(urllib.request.urlopen('http://127.0.0.1:8000/health', timeout=4).status != 200)"]
CMD ["python", "-m", "helpers", "serve", "--model", "/models/model.onnx", "--host", "0.0.0.0", "--port", "8000"]
