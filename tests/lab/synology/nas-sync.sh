#!/usr/bin/env bash
# The Synology NAS stand-in (tests only): what DSM Cloud Sync does in "download remote changes only" mode,
# done with rclone: a one-way WebDAV sync of the box's Immich folder with the read-only sub-account.
#   WEBDAV_PASSWORD=... nas-sync.sh <webdav-url> <user> <local-dir>
# rclone never writes to the remote in `sync remote local`; the sub-account could not anyway.
set -euo pipefail
url=$1 user=$2 dest=$3
install -d "$dest"
RCLONE_WEBDAV_URL=$url RCLONE_WEBDAV_VENDOR=other RCLONE_WEBDAV_USER=$user \
  RCLONE_WEBDAV_PASS=$(printf %s "${WEBDAV_PASSWORD:?set WEBDAV_PASSWORD}" | rclone obscure -) \
  rclone sync --stats=0 --log-level ERROR :webdav: "$dest"
