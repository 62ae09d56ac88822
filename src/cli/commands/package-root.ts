/** Paths inside the installed package (works from src/ with tsx and from dist/). */
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

/** The package root: the directory holding package.json. */
export const PACKAGE_ROOT = resolve(dirname(fileURLToPath(import.meta.url)), "../../..");

/** The C guest agent's directory (`<package root>/agent`). */
export const AGENT_DIR = join(PACKAGE_ROOT, "agent");
