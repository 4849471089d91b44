# syntax=docker/dockerfile:1
# `hearth serve` in a container: the OpenAI-compatible API for one GGUF model, which
# is mounted read-only (models are not baked into the image).
#
#   docker build -t hearth .
#   docker run --rm -p 8080:8080 -e HEARTH_API_TOKEN=change-me \
#     -v ~/.local/share/hearth/models:/models:ro hearth --model /models/SmolLM2-135M-Instruct-Q4_1.gguf
#
# The server listens on 0.0.0.0 inside the container, so it refuses to start without
# a token (HEARTH_API_TOKEN); any Host header is accepted because clients reach the
# container by names the image cannot know. /health and /health/ready need no token.

FROM rust:1-bookworm AS build
# llama-cpp-sys-2 runs CMake (C++ build) and bindgen (libclang).
RUN apt-get update \
    && apt-get install -y --no-install-recommends cmake clang libclang-dev pkg-config \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY Cargo.toml Cargo.lock rustfmt.toml ./
COPY .cargo .cargo
COPY migrations migrations
COPY src-tauri src-tauri
# The repository builds for the CPU it runs on (target-cpu=native). An image runs
# elsewhere: build for x86-64-v3 (AVX2/FMA, any x86-64 CPU since 2015) unless told
# otherwise, e.g. --build-arg RUSTFLAGS="-C target-cpu=native" for this machine only.
ARG RUSTFLAGS="-C target-cpu=x86-64-v3"
ENV RUSTFLAGS=${RUSTFLAGS}
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p hearth-cli \
    && cp target/release/hearth /usr/local/bin/hearth

FROM debian:bookworm-slim
# libgomp1: llama.cpp's OpenMP threads; curl: the health check.
RUN apt-get update \
    && apt-get install -y --no-install-recommends libgomp1 curl \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --no-create-home --home-dir /nonexistent hearth
COPY --from=build /usr/local/bin/hearth /usr/local/bin/hearth
USER hearth
ENV HEARTH_MODELS_DIR=/models \
    HEARTH_DATA_DIR=/tmp/hearth \
    HEARTH_LOG_DIR=/tmp/hearth/logs
VOLUME ["/models"]
EXPOSE 8080
# Healthy only while a model is loaded and answering (503 while loading or restarting).
HEALTHCHECK --interval=10s --timeout=3s --start-period=120s \
    CMD curl -fsS http://127.0.0.1:8080/health/ready >/dev/null || exit 1
# `hearth serve` starts the engine as a supervised child process (`hearth worker`);
# docker stop (SIGTERM) stops both.
ENTRYPOINT ["hearth", "serve", "--host", "0.0.0.0", "--port", "8080", "--allow-host", "*"]
