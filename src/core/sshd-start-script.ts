/**
 * The shell script core runs in a guest (as root, through exec) before a
 * tunnel to port 22: starts OpenSSH's sshd unless it already runs. Host keys
 * are made on first use (images ship none, so each sandbox gets its own);
 * root may log in with keys only.
 */

/** Exit code of the script when the image has no sshd. */
export const SSHD_MISSING_EXIT = 3;

export const SSHD_START_SCRIPT = `set -e
[ -x /usr/sbin/sshd ] || { echo "no /usr/sbin/sshd in this image" >&2; exit ${SSHD_MISSING_EXIT}; }
listening() { grep -qE '^ *[0-9]+: [0-9A-F]+:0016 [0-9A-F]+:0000 0A ' /proc/net/tcp /proc/net/tcp6 2>/dev/null; }
if ! { [ -s /run/sshd.pid ] && kill -0 "$(cat /run/sshd.pid)" 2>/dev/null; }; then
  mkdir -p /run/sshd
  chmod 0755 /run/sshd
  ssh-keygen -A >/dev/null
  # Options on the command line win over sshd_config (first value wins).
  /usr/sbin/sshd -o PermitRootLogin=prohibit-password -o PubkeyAuthentication=yes \\
    -o PasswordAuthentication=no -o KbdInteractiveAuthentication=no \\
    -o AuthorizedKeysFile=.ssh/authorized_keys -o PidFile=/run/sshd.pid
fi
# sshd daemonizes before it binds: wait until port 22 listens (up to ~20 s under TCG).
i=0
until listening; do
  i=$((i + 1))
  [ "$i" -le 200 ] || { echo "sshd is not listening on port 22" >&2; exit 1; }
  sleep 0.1
done
`;
