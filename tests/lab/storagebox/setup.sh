#!/usr/bin/env bash
# Hetzner Storage Box stand-in (tests only). Run as root inside a Debian 12 systemd container:
#   STORAGEBOX_PASSWORD=... [STORAGEBOX_USER=u100001] [STORAGEBOX_SUBACCOUNTS="name:home:password:ro|rw ..."] setup.sh
#
# It is a stand-in, not the system under test, so it runs natively (amd64) beside the arm64 host.
# What it copies from the real box (docs/decisions.md, Hetzner Storage Box), because the role depends on it:
#   - OpenSSH on port 23 serving SFTP only (ForceCommand internal-sftp; no shell, no pipes), chrooted so
#     the account sees its home as /home, password AND key authentication; keys are read from the
#     account's own .ssh/authorized_keys inside that home (which the role uploads over SFTP);
#   - sub-accounts whose home is a directory of the main home (bind mount), read-only when asked;
#   - WebDAV (Apache mod_dav) on the same homes with password auth, read-only for read-only sub-accounts.
# What differs: WebDAV is plain HTTP on port 80 at http://<box>/<username>/ (the real one is HTTPS at
# https://<username>.your-storagebox.de/); port 22 also speaks OpenSSH (the real one is ProFTPD-style and
# wants RFC4716 keys); every account maps to one Unix uid.
# Idempotent: run it again to add sub-accounts or reset passwords. Host keys survive restarts.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
user=${STORAGEBOX_USER:-u100001}
password=${STORAGEBOX_PASSWORD:?set STORAGEBOX_PASSWORD}
subaccounts=${STORAGEBOX_SUBACCOUNTS:-}
root=/srv/storagebox

if [[ $(dpkg-query -W -f='${Status}\n' openssh-server apache2 apache2-utils 2>/dev/null | grep -c "install ok installed") != 3 ]]; then
  apt-get update -q >/dev/null
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends openssh-server apache2 apache2-utils >/dev/null
fi

# Accounts: one uid for the box; the main account and each sub-account log in by name.
install -d -m 0755 -o root -g root "$root"
if ! id "$user" >/dev/null 2>&1; then
  useradd --no-create-home --home-dir /home --shell /usr/sbin/nologin "$user"
fi
uid=$(id -u "$user")
echo "$user:$password" | chpasswd
install -d -m 0755 -o root -g root "$root/$user"
install -d -m 0755 -o "$user" -g "$user" "$root/$user/home"

: >/etc/apache2/storagebox.htpasswd.new
htpasswd -bB /etc/apache2/storagebox.htpasswd.new "$user" "$password" 2>/dev/null
webdav_locations="$(printf 'Alias /%s/ %s/\n<Directory %s/>\n  Require user %s\n</Directory>\n' \
  "$user" "$root/$user/home" "$root/$user/home" "$user")"
readonly_users=""
fstab_lines=""
for spec in $subaccounts; do
  IFS=: read -r sub home subpass mode <<<"$spec"
  if ! id "$sub" >/dev/null 2>&1; then
    useradd --non-unique --uid "$uid" --gid "$uid" --no-create-home --home-dir /home --shell /usr/sbin/nologin "$sub"
  fi
  echo "$sub:$subpass" | chpasswd
  htpasswd -bB /etc/apache2/storagebox.htpasswd.new "$sub" "$subpass" 2>/dev/null
  install -d -m 0755 -o "$user" -g "$user" "$root/$user/home/$home"
  install -d -m 0755 -o root -g root "$root/$sub"
  install -d -m 0755 -o "$user" -g "$user" "$root/$sub/home"
  fstab_lines+="$root/$user/home/$home $root/$sub/home none bind 0 0"$'\n'
  mountpoint -q "$root/$sub/home" || mount --bind "$root/$user/home/$home" "$root/$sub/home"
  webdav_locations+=$'\n'"$(printf 'Alias /%s/ %s/\n<Directory %s/>' "$sub" "$root/$sub/home" "$root/$sub/home")"
  if [[ $mode == ro ]]; then
    readonly_users+="${readonly_users:+,}$sub"
    # Only reading methods, and only for this user: Require lines side by side would be OR-ed.
    webdav_locations+=$'\n  <Limit GET HEAD OPTIONS PROPFIND>\n    Require user '"$sub"$'\n  </Limit>'
    webdav_locations+=$'\n  <LimitExcept GET HEAD OPTIONS PROPFIND>\n    Require all denied\n  </LimitExcept>'
  else
    webdav_locations+=$'\n  Require user '"$sub"
  fi
  webdav_locations+=$'\n</Directory>'
done
mv /etc/apache2/storagebox.htpasswd.new /etc/apache2/storagebox.htpasswd
chown root:"$user" /etc/apache2/storagebox.htpasswd
chmod 0640 /etc/apache2/storagebox.htpasswd

# Sub-account homes are bind mounts of directories in the main home: kept across restarts by fstab.
sed -i '/# storagebox-standin$/d' /etc/fstab
while IFS= read -r line; do
  [[ -n $line ]] && echo "$line # storagebox-standin" >>/etc/fstab
done <<<"$fstab_lines"

# SSH: SFTP only, chrooted, ports 22 and 23, keys from the home the account itself manages.
{
  echo "# Storage Box stand-in (tests/lab/storagebox/setup.sh)"
  cat "$here/sshd_config"
  if [[ -n $readonly_users ]]; then
    echo "Match User $readonly_users"
    echo "    ForceCommand internal-sftp -R"
  fi
} >/etc/ssh/sshd_config.d/storagebox.conf
# Debian's sshd_config has `Subsystem sftp /usr/lib/openssh/sftp-server`, which a chroot cannot run.
sed -i 's|^Subsystem\s\+sftp\s\+/usr/lib/openssh/sftp-server|Subsystem sftp internal-sftp|' /etc/ssh/sshd_config
sshd -t
systemctl enable --quiet ssh
systemctl restart ssh

# WebDAV: Apache runs as the box's uid so it can write what SFTP wrote (like the real box's single owner).
sed -i "s/^export APACHE_RUN_USER=.*/export APACHE_RUN_USER=$user/; s/^export APACHE_RUN_GROUP=.*/export APACHE_RUN_GROUP=$user/" \
  /etc/apache2/envvars
install -d -m 0755 -o "$user" -g "$user" /var/lib/apache2/davlock
{
  echo "# Storage Box stand-in (tests/lab/storagebox/setup.sh)"
  cat "$here/webdav.conf"
  echo "$webdav_locations"
} >/etc/apache2/sites-available/storagebox.conf
a2enmod -q dav dav_fs auth_basic authn_file authz_user alias >/dev/null
a2dissite -q 000-default >/dev/null 2>&1 || true
a2ensite -q storagebox >/dev/null
chown -R "$user:$user" /var/log/apache2 /var/run/apache2 2>/dev/null || true
apache2ctl -t 2>/dev/null
systemctl enable --quiet apache2
systemctl restart apache2
echo "storagebox stand-in ready: sftp -P 23 $user@$(hostname), WebDAV http://$(hostname)/$user/"
