# Local stand-in for python:3.11-slim on hosts that cannot pull images.
ARG BASE=irisctl-offline/debian:bookworm
FROM ${BASE}
LABEL org.opencontainers.image.source=irisctl-offline

# python3-venv brings ensurepip's bundled wheels, so venvs get pip without python3-pip.
# The version check keeps the :3.11 tag honest if the mirror ever moves on.
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 python3-venv \
 && rm -rf /var/lib/apt/lists/* \
 && python3 -c 'import sys; assert sys.version_info[:2] == (3, 11), sys.version'

ENV PIP_CERT=/etc/ssl/certs/ca-certificates.crt \
    REQUESTS_CA_BUNDLE=/etc/ssl/certs/ca-certificates.crt \
    SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt
CMD ["python3"]
