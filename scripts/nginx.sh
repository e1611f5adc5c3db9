#!/usr/bin/env bash
# nginx, the load balancer of `recsys cluster up` (app/cluster/): Debian's package, installed when missing.
#
#   scripts/nginx.sh install    install Debian's nginx when there is no nginx binary (root, apt-get)
#
# The cluster runs nginx itself, in the foreground, with a generated config, pid file and logs under its
# state directory (var/cluster/nginx/), bound to 127.0.0.1; the package's own service is not used. (On a
# host whose init system starts services on install, the package starts its default site on port 80;
# containers usually deny that through /usr/sbin/policy-rc.d.)
set -euo pipefail

die() { echo "nginx.sh: $*" >&2; exit 1; }

install() {
    if command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ]; then
        return 0
    fi
    [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1 ||
        die "nginx is not installed and installing it needs root and apt-get (apt-get install nginx)"
    echo "nginx.sh: installing Debian's nginx for the cluster test (once)..." >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-cache show nginx >/dev/null 2>&1 || apt-get update -qq >/dev/null
    apt-get install -y -qq --no-install-recommends nginx >/dev/null </dev/null
    [ -x /usr/sbin/nginx ] || die "apt-get installed nginx but there is no /usr/sbin/nginx"
}

case "${1:-}" in
    install) install ;;
    *) die "usage: $0 install" ;;
esac
