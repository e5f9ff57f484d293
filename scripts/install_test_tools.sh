#!/usr/bin/env bash
# Install the Debian programs some tests use: Chromium (browser tests,
# tests/integration/test_ui_browser.py) and ffmpeg (video input, tests/integration/test_imagine.py).
# Idempotent: installs only what is missing. Never downloads a browser through Playwright;
# the Debian packages are the only source. Without them those tests skip.
set -euo pipefail

missing=()
[ -x /usr/bin/chromium ] || missing+=(chromium)
command -v ffmpeg >/dev/null 2>&1 || missing+=(ffmpeg)
if [ ${#missing[@]} -eq 0 ]; then
  echo "test tools already installed: chromium, ffmpeg"
  exit 0
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1; then
    SUDO="sudo"
  else
    echo "install_test_tools.sh: need root (or sudo) to apt-get install ${missing[*]}" >&2
    exit 1
  fi
fi

export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update
$SUDO apt-get install -y "${missing[@]}"
