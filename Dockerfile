# syntax=docker/dockerfile:1
# vaultgate: one static binary on a distroless base. Build with `docker build -t vaultgate:0.1.0 .`
# The binary is built for x86_64 musl, so both stages are pinned to linux/amd64: on another
# host architecture the image is built under emulation instead of being mislabelled.

ARG RUST_VERSION=1.95

FROM --platform=linux/amd64 rust:${RUST_VERSION}-bookworm AS build
# musl-gcc compiles the C and assembly parts of dependencies (ring) for the static target.
RUN apt-get update \
 && apt-get install -y --no-install-recommends musl-tools \
 && rm -rf /var/lib/apt/lists/*
RUN rustup target add x86_64-unknown-linux-musl
ENV CC_x86_64_unknown_linux_musl=musl-gcc
WORKDIR /src
# The whole workspace is needed: cargo resolves every member's manifest even for one binary.
COPY . .
# Cache mounts keep the registry and build artefacts between builds; the binary is copied out
# of the cached target directory in the same step.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/usr/local/cargo/git \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --target x86_64-unknown-linux-musl --bin vaultgate \
 && cp target/x86_64-unknown-linux-musl/release/vaultgate /vaultgate

# No shell, no package manager, no libc needed: the binary is static.
FROM --platform=linux/amd64 gcr.io/distroless/static:nonroot
COPY --from=build /vaultgate /vaultgate
# Matches runAsUser in deploy/deployment.yaml.
USER 65532:65532
# 8443: admission webhook (HTTPS); 8080: /metrics, /healthz, /readyz.
EXPOSE 8443 8080
ENTRYPOINT ["/vaultgate"]
CMD ["run"]
