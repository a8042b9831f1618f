# Dockerfile — the shardserve image: built on a CUDA devel image, run on the matching CUDA runtime
# image (cuBLAS, NCCL included), as a non-root user, with one binary and the bundled demo model.
#   docker build -t shardserve:0.1.0 .
#   docker run --gpus all -p 8000:8000 shardserve:0.1.0 serve            # the demo model
#   docker run --gpus all -p 8000:8000 -v cache:/cache shardserve:0.1.0 serve --model org/name --cache /cache
# Package versions follow the base image's Ubuntu release; pin the base images by digest to freeze them.
ARG CUDA_VERSION=12.6.3
ARG UBUNTU=ubuntu24.04

FROM nvidia/cuda:${CUDA_VERSION}-devel-${UBUNTU} AS build
# hadolint ignore=DL3008
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      build-essential cmake pkg-config \
      libcjson-dev libevent-dev libpcre2-dev libutf8proc-dev libcurl4-openssl-dev libopenblas-dev libssl-dev \
      libxxhash-dev libcmocka-dev \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
# sm_80 and sm_90a kernels (cmake/cuda.cmake); tests are configured (cmocka) but only the binary is built.
RUN cmake -S /src -B /src/build -DCMAKE_BUILD_TYPE=Release -DSS_CUDA=ON \
 && cmake --build /src/build --target shardserve -j"$(nproc)" \
 && strip /src/build/shardserve

FROM nvidia/cuda:${CUDA_VERSION}-runtime-${UBUNTU}
# The shared libraries the binary links (CUDA, cuBLAS and NCCL come with the base image);
# ca-certificates for downloads from the Hugging Face Hub.
# hadolint ignore=DL3008
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      ca-certificates libcjson1 libevent-2.1-7t64 libevent-pthreads-2.1-7t64 libpcre2-8-0 libutf8proc3 \
      libcurl4t64 libopenblas0-pthread libssl3t64 libxxhash0 libgomp1 \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --system --gid 10001 shardserve \
 && useradd --system --uid 10001 --gid 10001 --home-dir /home/shardserve --create-home \
      --shell /usr/sbin/nologin shardserve \
 && mkdir -p /cache \
 && chown 10001:10001 /cache
COPY --from=build /src/build/shardserve /opt/shardserve/bin/shardserve
COPY models/shardserve-demo /opt/shardserve/models/shardserve-demo
ENV PATH=/opt/shardserve/bin:${PATH} \
    HOME=/home/shardserve
WORKDIR /home/shardserve
USER 10001:10001
# 8000 HTTP (Triton v2 + OpenAI), 8002 Prometheus metrics, 29500 rendezvous of a multi-node replica.
EXPOSE 8000 8002 29500
ENTRYPOINT ["/opt/shardserve/bin/shardserve"]
CMD ["serve"]
