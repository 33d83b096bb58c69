# syntax=docker/dockerfile:1
#
# sealrelay: one image, two static binaries (broker and bridge).
#
#   docker build -t sealrelay .
#   docker run --rm sealrelay version            # broker version
#   docker run --rm --entrypoint bridge sealrelay --help
#
# The default command is `broker serve`; compose.yaml uses the same image for
# the optional bridge service with `entrypoint: ["bridge"]`.

ARG GO_VERSION=1.26

# ---- build ------------------------------------------------------------------
FROM golang:${GO_VERSION} AS build
WORKDIR /src

# Module downloads are cached in their own layer.
COPY go.mod go.sum ./
RUN --mount=type=cache,target=/go/pkg/mod go mod download

COPY . .
ARG VERSION=dev
# CGO_ENABLED=0: fully static binaries (no libc), so they run on
# distroless/static. -trimpath: no build-machine paths in the binary.
RUN --mount=type=cache,target=/go/pkg/mod \
    --mount=type=cache,target=/root/.cache/go-build \
    CGO_ENABLED=0 GOOS=linux go build -trimpath \
      -ldflags "-s -w -X main.version=${VERSION}" \
      -o /out/broker ./cmd/broker \
 && CGO_ENABLED=0 GOOS=linux go build -trimpath \
      -ldflags "-s -w -X main.version=${VERSION}" \
      -o /out/bridge ./cmd/bridge \
 && mkdir -p /out/data /out/config /out/state

# ---- runtime ----------------------------------------------------------------
# distroless/static: CA certificates and tzdata, no shell, no package manager.
# The :nonroot tag runs as uid/gid 65532.
FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/broker /out/bridge /usr/local/bin/
# /data holds the broker's keys and, without Redis, its embedded store;
# /config and /state hold a bridge's configuration and de-duplication store
# (named volumes in compose.yaml, which Docker seeds with these empty
# directories, owned by uid 65532).
COPY --from=build --chown=65532:65532 /out/data /data
COPY --from=build --chown=65532:65532 /out/config /config
COPY --from=build --chown=65532:65532 /out/state /state
USER 65532:65532
WORKDIR /data
# 8080: public HTTP (Slack webhooks, agent API) behind a TLS proxy;
# 9090: Prometheus metrics (keep it private).
EXPOSE 8080 9090
ENTRYPOINT ["/usr/local/bin/broker"]
CMD ["serve"]
