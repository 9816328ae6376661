# syntax=docker/dockerfile:1
# Moonlander's controller image.
#
#   docker buildx build --platform linux/amd64,linux/arm64 -t ghcr.io/kingdonb/moonlander:0.1.0 .
#
# Multi-arch without emulating the build: the builder stage runs on the build machine's own
# platform and makes a pure-Python wheel; the final stage installs it with prebuilt wheels of
# the pinned dependencies for the target platform (--only-binary: never a compiler).

ARG PYTHON_IMAGE=python:3.11.14-slim-trixie

FROM --platform=$BUILDPLATFORM ${PYTHON_IMAGE} AS builder
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_ROOT_USER_ACTION=ignore
WORKDIR /src
# Only what the wheel is built from (see .dockerignore).
COPY pyproject.toml README.md ./
COPY src ./src
RUN python -m pip wheel --no-deps --wheel-dir /wheels .

FROM ${PYTHON_IMAGE}
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_ROOT_USER_ACTION=ignore
# The runtime closure only (requirements.lock also has the dev tools), as prebuilt wheels,
# exactly as pinned: --no-deps installs nothing the lock does not name, and `pip check` fails
# the build if the lock misses a dependency. The venv gets no pip of its own; the base
# image's pip installs into it.
COPY requirements-runtime.lock /tmp/requirements-runtime.lock
RUN --mount=type=bind,from=builder,source=/wheels,target=/wheels \
    python -m venv --without-pip /opt/moonlander \
 && python -m pip --python /opt/moonlander/bin/python install --no-deps --only-binary=:all: \
      --requirement /tmp/requirements-runtime.lock \
 && python -m pip --python /opt/moonlander/bin/python install --no-deps /wheels/moonlander-*.whl \
 && python -m pip --python /opt/moonlander/bin/python check \
 && rm /tmp/requirements-runtime.lock
# Bytecode was compiled at install time; a read-only root filesystem needs no writes after.
ENV PATH=/opt/moonlander/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HOME=/tmp
# Numeric, so that Kubernetes can check runAsNonRoot without a passwd entry.
USER 65532:65532
ENTRYPOINT ["moonlander"]
CMD ["run"]
