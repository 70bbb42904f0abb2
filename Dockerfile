# Static image of the `gatehouse` binary: built for musl in the Rust image, shipped alone in
# an empty image as a non-root user (the Deployment also enforces that).
FROM docker.io/library/rust:1.95-bookworm AS build
RUN apt-get update && apt-get install -y --no-install-recommends musl-tools && rm -rf /var/lib/apt/lists/* \
 && rustup target add x86_64-unknown-linux-musl
WORKDIR /src
COPY Cargo.toml Cargo.lock rust-toolchain.toml ./
COPY api api
COPY operator operator
COPY tests tests
RUN cargo build --release --locked --target x86_64-unknown-linux-musl -p gatehouse-operator --bin gatehouse \
 && cp target/x86_64-unknown-linux-musl/release/gatehouse /gatehouse

FROM scratch
COPY --from=build /gatehouse /gatehouse
USER 65532:65532
ENTRYPOINT ["/gatehouse"]
CMD ["run", "--leader-elect"]
