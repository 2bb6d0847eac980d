#!/usr/bin/env bash
# Make sure the system tools the tests use are installed: prometheus, promtool,
# prometheus-alertmanager and amtool (Debian packages prometheus, prometheus-alertmanager).
# As root with apt-get (as in CI) it installs them; otherwise it says exactly
# what to install. The tests themselves skip what is missing, except with
# CI=true, where a missing tool fails the run.
set -euo pipefail
need=()
command -v prometheus >/dev/null || need+=(prometheus)
command -v promtool >/dev/null || need+=(prometheus)
command -v prometheus-alertmanager >/dev/null || need+=(prometheus-alertmanager)
command -v amtool >/dev/null || need+=(prometheus-alertmanager)
[ ${#need[@]} -eq 0 ] && exit 0
mapfile -t pkgs < <(printf '%s\n' "${need[@]}" | sort -u)
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  echo "installing ${pkgs[*]} with apt-get"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${pkgs[@]}" >/dev/null
else
  echo "missing system packages: ${pkgs[*]}" >&2
  echo "install them with: sudo apt-get install ${pkgs[*]}" >&2
  [ "${CI:-}" = true ] && exit 1
fi
exit 0
