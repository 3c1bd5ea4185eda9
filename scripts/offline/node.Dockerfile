# Local stand-in for node:*-alpine on hosts that cannot pull images (Debian ships node 18).
ARG BASE=irisctl-offline/debian:bookworm
FROM ${BASE}
LABEL org.opencontainers.image.source=irisctl-offline

# The official images have a `node` user (1000:1000); Dockerfiles may switch to it.
RUN groupadd --gid 1000 node \
 && useradd --uid 1000 --gid node --create-home --shell /bin/sh node \
 && apt-get update \
 && apt-get install -y --no-install-recommends nodejs npm \
 && rm -rf /var/lib/apt/lists/* \
 && node -e 'if (process.versions.node.split(".")[0] !== "18") throw new Error(process.version)'

ENV NODE_EXTRA_CA_CERTS=/etc/ssl/certs/ca-certificates.crt \
    npm_config_cafile=/etc/ssl/certs/ca-certificates.crt
CMD ["node"]
