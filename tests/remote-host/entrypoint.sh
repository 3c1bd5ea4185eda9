#!/bin/sh
# sshd on 2222 (keys only, the one key given), then dockerd in the foreground.
set -eu
printf '%s\n' "$AUTHORIZED_KEY" > /root/.ssh/authorized_keys
chmod 600 /root/.ssh/authorized_keys
ssh-keygen -A >/dev/null
/usr/sbin/sshd -p 2222 -o PasswordAuthentication=no -o PermitRootLogin=prohibit-password \
  -o MaxStartups=100 -E /var/log/sshd.log -o LogLevel=INFO
exec dockerd --host unix:///var/run/docker.sock >/var/log/dockerd.log 2>&1
