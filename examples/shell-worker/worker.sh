#!/bin/sh
# A background worker: no HTTP, just work and log lines (see `zeroku logs`).
VERSION="$(cat VERSION)"
trap 'echo "worker $VERSION stopping"; exit 0' TERM
while true; do
  echo "worker $VERSION: working (${GREETING:-no GREETING set})"
  sleep 0.5
done
