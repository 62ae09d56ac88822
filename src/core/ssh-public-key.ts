/**
 * Validation of OpenSSH public keys (`type base64-blob [comment]`): the blob
 * must decode and start with the same key type string.
 */

/** Key types accepted in `ssh_pubkeys`. */
export const SSH_KEY_TYPES = [
  "ssh-ed25519",
  "ssh-rsa",
  "ecdsa-sha2-nistp256",
  "ecdsa-sha2-nistp384",
  "ecdsa-sha2-nistp521",
  "sk-ssh-ed25519@openssh.com",
  "sk-ecdsa-sha2-nistp256@openssh.com",
] as const;

/** True when `line` is a single OpenSSH public key whose blob matches its type. */
export function isOpenSshPublicKey(line: string): boolean {
  if (line.length > 16384 || /[\r\n\0]/.test(line)) return false;
  const parts = line.trim().split(/\s+/);
  const [type, blob] = parts;
  if (!type || !blob || !(SSH_KEY_TYPES as readonly string[]).includes(type)) return false;
  if (!/^[A-Za-z0-9+/]+={0,2}$/.test(blob) || blob.length % 4 !== 0) return false;
  const raw = Buffer.from(blob, "base64");
  if (raw.length < 4) return false;
  const len = raw.readUInt32BE(0);
  if (len !== type.length || raw.length < 4 + len + 4) return false;
  return raw.subarray(4, 4 + len).toString("latin1") === type;
}
