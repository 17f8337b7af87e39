# czload in a container: a multi-stage build, a small final image (distroless: glibc, CA
# certificates, no shell, no package manager), a non-root user, the binary as entrypoint.
#
#   docker build -t czload .
#   docker run --rm czload --help
#   docker run --rm -v "$PWD:/data" -e COREZOID_API_LOGIN -e COREZOID_API_SECRET \
#     czload load /data/orders.csv --conv-id 1234 --results /data/orders.results.ndjson
#
# deploy/kubernetes/ runs it as an Indexed Job (one copy per --shard).

FROM rust:1.88-slim-bookworm AS build
WORKDIR /src
COPY . .
# No debug info and stripped symbols in the image (the release profile keeps line tables
# for profiling on a workstation).
ENV CARGO_PROFILE_RELEASE_DEBUG=0 \
    CARGO_PROFILE_RELEASE_STRIP=symbols
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --bin czload \
    && cp target/release/czload /czload

# cc-debian12: glibc and libgcc, which the binary links against; TLS roots are in
# /etc/ssl/certs. `nonroot` runs as uid/gid 65532.
FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /czload /usr/local/bin/czload
USER 65532:65532
ENTRYPOINT ["/usr/local/bin/czload"]
CMD ["--help"]
