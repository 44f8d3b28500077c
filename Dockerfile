# syntax=docker/dockerfile:1
# The ClusterKit node (cmd/clusterkit-node), configured by environment variables.
#   docker build -t clusterkit-node .
#   export JOIN_TOKEN=$(docker run --rm clusterkit-node -new-token)   # secure mode
#   docker run -e NODE_ID=node-1 -e JOIN_TOKEN -p 8080:8080 -v node-1-data:/data clusterkit-node
# The join token is given to the container, never built into the image.
# See deploy/README.md for the settings, docker-compose.yml and the Kubernetes manifests.

FROM golang:1.26.8-bookworm AS build
WORKDIR /src
# Modules first: this layer is reused as long as go.mod and go.sum do not change.
COPY go.mod go.sum ./
RUN go mod download
COPY cmd/ cmd/
COPY internal/ internal/
COPY pkg/ pkg/
# A static binary: the runtime image has no C library.
RUN CGO_ENABLED=0 go build -trimpath -ldflags="-s -w" -o /out/clusterkit-node ./cmd/clusterkit-node \
 && mkdir -p /out/data

# distroless/static: CA certificates, /etc/passwd with the nonroot user (65532), no shell.
FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/clusterkit-node /usr/local/bin/clusterkit-node
# A new named volume takes the owner of the image's directory: the node can write its data.
COPY --from=build --chown=65532:65532 /out/data /data
USER 65532:65532
ENV HTTP_PORT=8080 \
    DATA_DIR=/data
VOLUME ["/data"]
# The HTTP API, then the embedded etcd's client (HTTP port + 10000) and peer (+ 20000) ports.
# Only the nodes need the etcd ports (TLS with client certificates with JOIN_TOKEN, open to
# anyone without it): publish only 8080, never the other two.
EXPOSE 8080 18080 28080
# No shell in the image: the binary probes its own GET /health (over https when JOIN_TOKEN is set).
HEALTHCHECK --interval=10s --timeout=5s --start-period=30s --retries=3 \
    CMD ["/usr/local/bin/clusterkit-node", "-healthcheck"]
# SIGTERM: leave the cluster gracefully (or drain first with DRAIN_ON_SIGTERM=true).
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/local/bin/clusterkit-node"]
