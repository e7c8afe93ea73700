#!/usr/bin/env bash
# Debian packages the project needs: redis-server (integration tests, `make run`), curl and the venv
# module for Python. Runs apt-get only when something is missing; `apt-get update` comes first.
set -euo pipefail

need=()
command -v redis-server >/dev/null || need+=(redis-server)
python3 -c 'import ensurepip, venv' 2>/dev/null || need+=(python3-venv)
command -v make >/dev/null || need+=(make)
command -v curl >/dev/null || need+=(curl)  # the API-pressure test loads the API server from other processes

if ((${#need[@]})); then
  sudo=""
  [[ $(id -u) -eq 0 ]] || sudo="sudo"
  echo "installing Debian packages: ${need[*]}"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi


python3 -c 'import sys; sys.exit(sys.version_info < (3, 11))' \
  || { echo "install-system-deps: Python >= 3.11 is required (found $(python3 --version))" >&2; exit 1; }
command -v go >/dev/null || { echo "install-system-deps: Go >= 1.24 is required to build the control plane" >&2; exit 1; }
