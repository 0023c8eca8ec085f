#!/bin/sh
# The upstream of the proxy benchmark (bench/frontend.sh): nginx answering every request with
# 200 "hello\n" on $PORT, one worker, no access log. It runs as a zeroku `web` process, so the
# frontend proxies to it as to any app; nginx's proxy_pass is pointed at the very same instance.
# The slug is read-only: the config, pid file and temp dirs go to a fresh dir under $BENCH_TMP.
set -eu
d="$(mktemp -d "${BENCH_TMP:-/tmp}/upstream.XXXXXX")"
sed -e "s#@PORT@#$PORT#g" -e "s#@DIR@#$d#g" nginx.conf.in > "$d/nginx.conf"
exec /usr/sbin/nginx -p "$d" -e stderr -c "$d/nginx.conf"
