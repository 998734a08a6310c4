#!/usr/bin/env bash
# Debian packages the built-in datasets need (fonts, emoji names, fortunes, flite voices) and
# the headless browser of the web-page test (chromium, driven by Playwright; curl for the live
# server test).
# Installs them when run as root; otherwise prints the exact command and fails.
set -euo pipefail
PACKAGES=(fonts-noto-color-emoji unicode-data fortunes fortunes-min flite chromium curl)
missing=()
for pkg in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null; then
  echo "installing system packages: ${missing[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
else
  echo "omnifuse needs these system packages: ${missing[*]}" >&2
  echo "install them with: sudo apt-get install -y ${missing[*]}" >&2
  exit 1
fi
