# Local stand-in for prom/prometheus on hosts that cannot pull images, with its layout:
# /bin/prometheus, /etc/prometheus/prometheus.yml, data in /prometheus, user nobody.
ARG BASE=irisctl-offline/debian:bookworm
FROM ${BASE}
LABEL org.opencontainers.image.source=irisctl-offline

# The base's policy-rc.d keeps the package's postinst from starting a service.
# busybox provides the same `wget` as the official (busybox-based) image.
# The web UI loads one moment-timezone file; its per-zone data (200 MB) goes unused.
RUN echo 'path-exclude=/usr/share/javascript/moment-timezone/data/*' \
      >/etc/dpkg/dpkg.cfg.d/90irisctl-moment-data \
 && apt-get update \
 && apt-get install -y --no-install-recommends prometheus busybox \
 && rm -rf /var/lib/apt/lists/* \
 && ln -s busybox /usr/bin/wget \
 && /bin/prometheus --version 2>&1 | grep -q 'version 2\.42\.'

COPY prometheus/prometheus.yml /etc/prometheus/prometheus.yml
RUN mkdir -p /prometheus \
 && chown -R nobody:nogroup /etc/prometheus /prometheus

USER nobody
WORKDIR /prometheus
EXPOSE 9090
VOLUME ["/prometheus"]
ENTRYPOINT ["/bin/prometheus"]
CMD ["--config.file=/etc/prometheus/prometheus.yml", \
     "--storage.tsdb.path=/prometheus"]
