#!/usr/bin/env bash
# firewalld (Debian's 1.3.x) for the network tests, installed but NOT started:
# the tests start it themselves with a configuration of their own (DefaultZone
# trusted, so this machine's own inbound traffic is not rejected) and stop it.
# Idempotent. Runs as root.
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive
if command -v firewalld >/dev/null && command -v firewall-cmd >/dev/null; then
  echo "firewalld: already installed ($(dpkg-query -W -f='${Version}' firewalld))"
  exit 0
fi
# No service may start during the install: a firewalld with its default zone
# would reject inbound traffic on eth0. policy-rc.d tells invoke-rc.d so.
own_policy=0
if [ ! -e /usr/sbin/policy-rc.d ]; then
  printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d
  chmod 0755 /usr/sbin/policy-rc.d
  own_policy=1
fi
trap '[ "$own_policy" = 1 ] && rm -f /usr/sbin/policy-rc.d' EXIT
apt-get -o DPkg::Lock::Timeout=600 install -y --no-install-recommends firewalld dbus >/dev/null
echo "firewalld: installed ($(dpkg-query -W -f='${Version}' firewalld))"
