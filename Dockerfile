# The backupd image: the one static binary on distroless. Build with
#   docker build -t ghcr.io/meshbackup/backupd:$(git describe --always) .
# (the chart's image.repository and image.tag).

FROM golang:1.26 AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG VERSION=dev
# Static (no cgo), so it runs on distroless/static without a libc.
RUN CGO_ENABLED=0 go build -trimpath -ldflags "-s -w -X main.version=${VERSION}" -o /out/backupd ./backupd

FROM gcr.io/distroless/static-debian12
COPY --from=build /out/backupd /usr/bin/backupd
# Non-root by default (distroless's nonroot user), which is all `backupd
# run` on its own files and the chart's controller need. The chart's node
# agent runs as uid 0 instead (its securityContext sets runAsUser: 0), with
# every capability dropped but DAC_READ_SEARCH, CHOWN and FOWNER: it must
# read every file of the volumes it backs up, whatever their owner and mode,
# and Kubernetes grants added capabilities to uid 0 only.
USER 65532:65532
EXPOSE 9847
ENTRYPOINT ["/usr/bin/backupd"]
