/**
 * Marks a plugin as non-encapsulated (its hooks and decorators apply to the
 * parent), like the `fastify-plugin` package, which is not a dependency.
 */
import type { FastifyPluginAsync } from "fastify";

/** Returns `plugin` flagged to skip Fastify's encapsulation. */
export default function fp<T extends FastifyPluginAsync<any>>(plugin: T, name: string): T {
  const p = plugin as unknown as Record<symbol, unknown>;
  p[Symbol.for("skip-override")] = true;
  p[Symbol.for("fastify.display-name")] = name;
  return plugin;
}
