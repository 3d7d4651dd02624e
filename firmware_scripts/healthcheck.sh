#!/usr/bin/env bash
# Ask the kiosk server whether it is healthy: GET /healthz, exit 0 on HTTP 200.
#
# Exit status: 0 healthy (200), 1 the server answered something else (503 while warming up or wedged),
# 2 bad command line, 3 no answer (nothing listening, or no reply within --timeout).
# Uses bash's /dev/tcp, so the box needs neither curl nor wget; plain http only (the kiosk listens on loopback).
set -euo pipefail

PROG=${0##*/}
# shellcheck source=lib.sh
source "$(dirname -- "$(readlink -f -- "${BASH_SOURCE[0]}")")/lib.sh"

usage() {
  cat <<EOF
Usage: $PROG [--url http://HOST:PORT/PATH | --config FILE] [--wait SECONDS] [--timeout SECONDS] [--quiet]

Exit 0 when the kiosk's health endpoint answers HTTP 200; 1 when it answers anything else; 3 when nothing answers.

  --url URL          the endpoint (default: http://HOST:PORT/healthz from the config, else 127.0.0.1:8000)
  --config FILE      kiosk config to read host and port from (default: $ATELIER_CONFIG)
  --wait SECONDS     keep asking once a second until healthy or SECONDS have passed (default: ask once)
  --timeout SECONDS  give up on one request after SECONDS (default: 5)
  --quiet            print nothing
  -h, --help         show this help
EOF
}

# http_status HOST PORT PATH TIMEOUT: print the status code of GET PATH, or fail when nothing answers.
http_status() {
  local host=$1 port=$2 path=$3 timeout_s=$4 status_line
  # `timeout` bounds the connect and the read; the child bash owns the socket, so it closes when it exits.
  # shellcheck disable=SC2016  # the script is for the child bash, which expands its own positional arguments
  status_line=$(timeout "$timeout_s" bash -c '
    exec 3<>"/dev/tcp/$1/$2" || exit 1
    printf "GET %s HTTP/1.0\r\nHost: %s:%s\r\nConnection: close\r\n\r\n" "$3" "$1" "$2" >&3
    IFS= read -r line <&3 || exit 1
    printf "%s" "$line"
  ' _ "$host" "$port" "$path" 2>/dev/null) || return 1
  # "HTTP/1.1 200 OK\r" -> 200
  if [[ $status_line =~ ^HTTP/[0-9.]+[[:space:]]+([0-9]{3}) ]]; then
    printf '%s' "${BASH_REMATCH[1]}"
  else
    return 1
  fi
}

main() {
  local url="" config=$ATELIER_CONFIG wait_s=0 timeout_s=5 quiet=0
  while (($#)); do
    case $1 in
      --url)
        need_value "$@"
        url=$2
        shift 2
        ;;
      --config)
        need_value "$@"
        config=$2
        shift 2
        ;;
      --wait)
        need_value "$@"
        wait_s=$2
        shift 2
        ;;
      --timeout)
        need_value "$@"
        timeout_s=$2
        shift 2
        ;;
      --quiet) quiet=1 && shift ;;
      -h | --help)
        usage
        exit 0
        ;;
      *) usage_error "unknown option: $1" ;;
    esac
  done
  [[ $wait_s =~ ^[0-9]+$ ]] || usage_error "--wait wants whole seconds, got '$wait_s'"
  [[ $timeout_s =~ ^[1-9][0-9]*$ ]] || usage_error "--timeout wants whole seconds (1 or more), got '$timeout_s'"

  local host port path
  if [[ -z $url ]]; then
    url="$(kiosk_base_url "$config")healthz"
  fi
  if [[ $url =~ ^http://([A-Za-z0-9.-]+)(:([0-9]+))?(/[^[:space:]]*)?$ ]]; then
    host=${BASH_REMATCH[1]}
    port=${BASH_REMATCH[3]:-80}
    path=${BASH_REMATCH[4]:-/}
  else
    usage_error "--url wants http://HOST[:PORT]/PATH (plain http, a host name or IPv4 address), got '$url'"
  fi
  ((port >= 1 && port <= 65535)) || usage_error "port $port in $url is out of range"

  # --wait N: N more tries, one a second; with slow or hanging answers, stop after about N + --timeout seconds.
  local start=$SECONDS retries=0 code="" rc
  while true; do
    if code=$(http_status "$host" "$port" "$path" "$timeout_s"); then
      rc=1
      [[ $code != 200 ]] || rc=0
    else
      code="" rc=3
    fi
    if ((rc == 0 || retries >= wait_s || SECONDS - start >= wait_s + timeout_s)); then
      break
    fi
    retries=$((retries + 1))
    sleep 1
  done
  if ((!quiet)); then
    case $rc in
      0) log "healthy: $url answered 200" ;;
      1) log "unhealthy: $url answered $code" >&2 ;;
      *) log "unreachable: nothing answered at $url" >&2 ;;
    esac
  fi
  return "$rc"
}

main "$@"
