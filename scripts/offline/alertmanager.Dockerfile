# Local stand-in for prom/alertmanager on hosts that cannot pull images, with its layout:
# /bin/alertmanager, /etc/alertmanager/alertmanager.yml, data in /alertmanager, user nobody.
ARG BASE=irisctl-offline/debian:bookworm
FROM ${BASE}
LABEL org.opencontainers.image.source=irisctl-offline

# The base's policy-rc.d keeps the package's postinst from starting a service.
# busybox provides the same `wget` as the official (busybox-based) image.
RUN apt-get update \
 && apt-get install -y --no-install-recommends prometheus-alertmanager busybox \
 && rm -rf /var/lib/apt/lists/* \
 && ln -s busybox /usr/bin/wget \
 && ln -s /usr/bin/prometheus-alertmanager /bin/alertmanager \
 && /bin/alertmanager --version 2>&1 | grep -q 'version 0\.25\.'

COPY alertmanager/alertmanager.yml /etc/alertmanager/alertmanager.yml
RUN mkdir -p /alertmanager \
 && chown -R nobody:nogroup /etc/alertmanager /alertmanager

USER nobody
WORKDIR /alertmanager
EXPOSE 9093
VOLUME ["/alertmanager"]
ENTRYPOINT ["/bin/alertmanager"]
CMD ["--config.file=/etc/alertmanager/alertmanager.yml", \
     "--storage.path=/alertmanager"]
