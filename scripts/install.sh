#!/usr/bin/env bash
# Set up streamer on a fresh Debian/Ubuntu machine: system packages it lacks, then .venv with the package.
# Usage: bash scripts/install.sh [extras]   (default extras: dev)
set -euo pipefail
cd "$(dirname "$0")/.."
extras="${1:-dev}"

need=()
have_cmd() { command -v "$1" >/dev/null 2>&1; }
have_lib() { ldconfig -p | grep -q "$1"; }
have_cmd espeak-ng || need+=(espeak-ng)
have_cmd mosquitto || need+=(mosquitto mosquitto-clients)
have_cmd flite || need+=(flite)
have_cmd text2wave || need+=(festival festvox-kallpc16k festvox-kdlpc16k festvox-us-slt-hts)
have_cmd tmux || need+=(tmux)
have_lib libportaudio.so.2 || need+=(libportaudio2)
have_lib libsndfile.so.1 || need+=(libsndfile1)
if [ ${#need[@]} -gt 0 ]; then
  echo "install: apt-get install ${need[*]}"
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/pip install -q --upgrade pip >/dev/null
# torch is pinned (==2.13.0, the CPU wheel) in pyproject.toml, so this never pulls a CUDA build.
.venv/bin/pip install -q -e ".[${extras}]"
echo "install: done (.venv)"
