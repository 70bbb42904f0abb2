# Static image of the `gatehouse` binary, for people with Docker (without it: `make image`,
# hack/images.sh, which builds the same image with buildah). The binary is built the same
# way in both: glibc linked statically (crt-static) for x86_64-unknown-linux-gnu; the
# explicit --target keeps the flag off build scripts and proc macros. It is shipped alone
# in an empty image as a non-root user (the Deployment also enforces that). amd64 only.
#
#   docker build --build-arg VERSION=0.1.0 --build-arg REVISION=$(git rev-parse HEAD) \
#     -t <registry>/gatehouse:0.1.0 .
FROM docker.io/library/rust:1.95-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock rust-toolchain.toml ./
COPY api api
COPY operator operator
COPY tests tests
RUN RUSTFLAGS="-C target-feature=+crt-static" cargo build --release --locked \
      --target x86_64-unknown-linux-gnu -p gatehouse-operator --bin gatehouse \
 && cp target/x86_64-unknown-linux-gnu/release/gatehouse /gatehouse

FROM scratch
ARG VERSION=unknown
ARG REVISION=unknown
LABEL org.opencontainers.image.title="gatehouse" \
      org.opencontainers.image.description="Gatehouse: a cluster's network stack from three objects" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.source="https://github.com/gatehouse-dev/gatehouse" \
      org.opencontainers.image.licenses="Apache-2.0"
COPY --from=build /gatehouse /gatehouse
USER 65532:65532
WORKDIR /
ENTRYPOINT ["/gatehouse"]
CMD ["run", "--leader-elect"]
