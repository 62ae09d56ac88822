/**
 * AES-256-GCM sealing of secrets at rest (sandbox envs). The key lives in
 * `<data dir>/secret.key` (32 random bytes, mode 0600), created on first start.
 */
import { createCipheriv, createDecipheriv, randomBytes } from "node:crypto";
import { chmod, readFile, writeFile } from "node:fs/promises";

const VERSION = "v1";

/** Encrypts and decrypts small secrets with one AES-256-GCM key. */
export class SecretBox {
  readonly #key: Buffer;

  constructor(key: Buffer) {
    if (key.length !== 32) throw new Error("secret key must be 32 bytes");
    this.#key = key;
  }

  /** Reads the key file, creating it (0600) when it does not exist yet. */
  static async fromKeyFile(path: string): Promise<SecretBox> {
    try {
      return new SecretBox(await readFile(path));
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== "ENOENT") throw err;
    }
    const key = randomBytes(32);
    try {
      // "wx": never overwrite a key another process wrote meanwhile.
      await writeFile(path, key, { mode: 0o600, flag: "wx" });
      await chmod(path, 0o600);
      return new SecretBox(key);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== "EEXIST") throw err;
      return new SecretBox(await readFile(path));
    }
  }

  /** `v1.<iv>.<tag>.<ciphertext>` (base64url) of the UTF-8 text. */
  seal(plaintext: string): string {
    const iv = randomBytes(12);
    const cipher = createCipheriv("aes-256-gcm", this.#key, iv);
    const ct = Buffer.concat([cipher.update(plaintext, "utf8"), cipher.final()]);
    return [VERSION, iv.toString("base64url"), cipher.getAuthTag().toString("base64url"), ct.toString("base64url")].join(".");
  }

  /** Inverse of {@link seal}; throws when the text was tampered with or the key differs. */
  open(sealed: string): string {
    const [version, iv, tag, ct] = sealed.split(".");
    if (version !== VERSION || iv === undefined || tag === undefined || ct === undefined) {
      throw new Error("unknown sealed format");
    }
    const decipher = createDecipheriv("aes-256-gcm", this.#key, Buffer.from(iv, "base64url"));
    decipher.setAuthTag(Buffer.from(tag, "base64url"));
    return Buffer.concat([decipher.update(Buffer.from(ct, "base64url")), decipher.final()]).toString("utf8");
  }
}
