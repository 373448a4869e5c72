# Both binaries in one small image: `balanced` (the node engine) and `balanced-exporter`.
#
#   docker build -t balanced .
#   docker run --rm balanced balanced validate /manifests --config /etc/balanced/node.yaml
#
# Build stage: the workspace, release profile, locked dependencies.
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked --bin balanced --bin balanced-exporter

# Runtime: glibc and CA certificates, nothing else — no shell, no package manager. The engine
# talks to the kernel through netlink itself (no ipvsadm or iproute2 needed); the exporter
# reaches the API server with rustls.
FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /src/target/release/balanced /usr/bin/balanced
COPY --from=build /src/target/release/balanced-exporter /usr/bin/balanced-exporter
# The engine needs CAP_NET_ADMIN (and root for /proc/sys writes): its DaemonSet runs it as
# root explicitly; the exporter runs as the image's non-root user.
USER nonroot
ENTRYPOINT []
CMD ["/usr/bin/balanced", "--help"]
