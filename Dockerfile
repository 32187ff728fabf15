# syntax=docker/dockerfile:1
# Build: docker build -t callout .
# Run:   docker run --rm -v "$PWD/config/salesforce.toml:/etc/callout/callout.toml:ro" \
#          -e TARGET_ORG_ADMIN_SECRET=... -e TARGET_ORG_READER_SECRET=... callout
#
# The config decides where callout listens; the default, 127.0.0.1:7575, is what a sidecar
# wants: containers of one pod share the loopback interface, and nothing outside the pod can
# reach the port. Publishing the port from a plain `docker run` needs `listen = "0.0.0.0:7575"`
# and `allow_remote_callers = true` in [server] (read the trust model in README first).
# deploy/ has a Kubernetes sidecar example and a compose file for a laptop.

FROM rust:1-slim-bookworm AS build
WORKDIR /src
# Dependencies first, so that source edits do not rebuild them.
COPY Cargo.toml Cargo.lock ./
RUN mkdir src && echo 'fn main() {}' > src/main.rs && touch src/lib.rs \
    && cargo build --release --locked --bin callout \
    && rm -rf src
COPY src ./src
RUN touch src/main.rs src/lib.rs && cargo build --release --locked --bin callout

# distroless/cc: glibc and libgcc only, no shell, runs as uid 65532 ("nonroot").
FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /src/target/release/callout /usr/local/bin/callout
ENV CALLOUT_CONFIG=/etc/callout/callout.toml
USER nonroot:nonroot
# Documentation only: the port callout's examples use. It is reachable from outside the
# container only when the config listens on a non-loopback address.
EXPOSE 7575
# Exec form because the image has no shell and no curl: `callout health` reads the config
# named by CALLOUT_CONFIG and asks its listener (or admin_listen) for /.callout/ready, so it
# turns unhealthy while draining at shutdown as well. Docker and compose use this;
# Kubernetes ignores it and runs the pod's own probes.
HEALTHCHECK --interval=10s --timeout=3s --start-period=5s --retries=3 \
    CMD ["/usr/local/bin/callout", "health"]
ENTRYPOINT ["/usr/local/bin/callout"]
CMD ["serve", "--log-format", "json"]
