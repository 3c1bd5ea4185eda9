# Local stand-in for nginx:alpine on hosts that cannot pull images, with the official layout:
# conf.d/*.conf included, html in /usr/share/nginx/html, user nginx 101:101, logs to stdio.
ARG BASE=irisctl-offline/debian:bookworm
FROM ${BASE}
LABEL org.opencontainers.image.source=irisctl-offline

# The user comes first so that no package takes uid 101. busybox provides the same `wget`
# as the alpine image, for health checks. Like the official image, running as uid 101
# needs a config that moves the pid file and temp paths to a writable place (e.g. /tmp).
RUN groupadd --system --gid 101 nginx \
 && useradd --system --uid 101 --gid nginx --no-create-home --home-dir /nonexistent \
      --shell /usr/sbin/nologin nginx \
 && apt-get update \
 && apt-get install -y --no-install-recommends nginx-light busybox \
 && rm -rf /var/lib/apt/lists/* /etc/nginx/sites-available /etc/nginx/sites-enabled /var/www \
 && ln -s busybox /usr/bin/wget \
 && ln -sf /dev/stdout /var/log/nginx/access.log \
 && ln -sf /dev/stderr /var/log/nginx/error.log \
 && mkdir -p /etc/nginx/conf.d /usr/share/nginx/html \
 && nginx -v 2>&1 | grep -q 'nginx/1\.22\.'

COPY nginx/nginx.conf /etc/nginx/nginx.conf
COPY nginx/default.conf /etc/nginx/conf.d/default.conf
COPY nginx/index.html /usr/share/nginx/html/index.html
RUN nginx -t

EXPOSE 80
STOPSIGNAL SIGQUIT
CMD ["nginx", "-g", "daemon off;"]
