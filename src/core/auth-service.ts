/**
 * API keys: generation, hashing (sha256 of a 256-bit random key), lookup with
 * a short positive cache, and the bootstrap key of the first user.
 */
import { createHash, randomBytes, timingSafeEqual } from "node:crypto";
import type { UserRecord, UserRepository } from "./repositories.js";

/** Name of the user that owns the bootstrap key. */
export const BOOTSTRAP_USER = "admin";

/** sha256 (hex) of an API key: what the database stores. */
export function hashApiKey(key: string): string {
  return createHash("sha256").update(key, "utf8").digest("hex");
}

/** A fresh high-entropy key, `hk_<43 base64url chars>`. */
export function generateApiKey(): string {
  return `hk_${randomBytes(32).toString("base64url")}`;
}

export interface AuthServiceOptions {
  /**
   * How long a successful lookup is reused. Misses are never cached, so a key
   * created by `hutch keys create` works at once on a running server.
   */
  cacheTtlMs?: number;
}

/** Resolves API keys to users; used by the API's auth plugin on every request. */
export class AuthService {
  readonly #users: UserRepository;
  readonly #ttl: number;
  readonly #cache = new Map<string, { user: UserRecord; expires: number }>();

  constructor(users: UserRepository, opts: AuthServiceOptions = {}) {
    this.#users = users;
    this.#ttl = opts.cacheTtlMs ?? 5000;
  }

  /** The user owning `key`, or undefined when the key is missing or unknown. */
  async authenticate(key: string | undefined): Promise<UserRecord | undefined> {
    if (!key || key.length > 256) return undefined;
    const hash = hashApiKey(key);
    const now = Date.now();
    const hit = this.#cache.get(hash);
    if (hit && hit.expires > now) return hit.user;
    const user = await this.#users.findByKeyHash(hash);
    if (!user) return undefined;
    // The row was found by its hash; compare once more without early exit so
    // the answer never depends on how many leading characters matched.
    const stored = Buffer.from(user.keyHash, "hex");
    const given = Buffer.from(hash, "hex");
    if (stored.length !== given.length || !timingSafeEqual(stored, given)) return undefined;
    const record: UserRecord = { id: user.id, name: user.name, createdAt: user.createdAt };
    if (this.#cache.size > 10_000) this.#cache.clear();
    this.#cache.set(hash, { user: record, expires: now + this.#ttl });
    return record;
  }

  /** Creates `userName` if needed and a new key for it; returns the key (shown once). */
  async createKey(userName: string): Promise<{ key: string; user: UserRecord }> {
    const user = await this.#users.ensureUser(userName);
    const key = generateApiKey();
    await this.#users.addKey(user.id, hashApiKey(key));
    return { key, user };
  }

  /**
   * Makes sure the first user has a key. With `envKey` (HUTCH_API_KEY) that key
   * is registered for the bootstrap user; otherwise, when no key exists at
   * all, a new one is generated and returned (`generated: true`) so the caller
   * can print and store it.
   */
  async ensureBootstrapKey(envKey?: string): Promise<{ key: string; generated: boolean } | undefined> {
    if (envKey) {
      const user = await this.#users.ensureUser(BOOTSTRAP_USER);
      await this.#users.addKey(user.id, hashApiKey(envKey));
      return { key: envKey, generated: false };
    }
    if ((await this.#users.countKeys()) > 0) return undefined;
    const { key } = await this.createKey(BOOTSTRAP_USER);
    return { key, generated: true };
  }
}
