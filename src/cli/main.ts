#!/usr/bin/env node
/**
 * `hutch` (alias `fcctl`): serve the API, manage API keys, build images,
 * tear down the host network. Commands are loaded lazily so `keys` works
 * without loading the VM runtime.
 */
import { Command } from "commander";
import { registerClientCommands } from "./commands/client-commands.js";

const program = new Command();
program.name("hutch").description("Self-hosted sandbox microVMs behind the CreateOS Sandboxes API (v1)");

program
  .command("serve")
  .description("run the control plane and the VMs of this host")
  .option("--listen <host:port>", "listen address (HUTCH_LISTEN, default 127.0.0.1:8080)")
  .option("--data-dir <dir>", "state: database, sandbox dirs (HUTCH_DATA_DIR)")
  .option("--cache-dir <dir>", "built images (HUTCH_CACHE_DIR)")
  .option("--region <name>", "region of this control plane (HUTCH_REGION, default local)")
  .option("--accel <kvm|tcg>", "VM accelerator (HUTCH_ACCEL)")
  .option("--network-cidr <cidr>", "sandbox network (HUTCH_NETWORK_CIDR, default 192.168.0.0/16)")
  .option("--log-level <level>", "HUTCH_LOG_LEVEL (default info)")
  .action(async (flags) => {
    const { serve } = await import("./commands/serve.js");
    await serve(flags);
  });

const keys = program.command("keys").description("API keys");
keys
  .command("create")
  .description("create a key for a user (created if missing); prints the key as the last line")
  .requiredOption("--user <name>", "user name")
  .option("--data-dir <dir>", "same data dir as the server (HUTCH_DATA_DIR)")
  .action(async (flags: { user: string; dataDir?: string }) => {
    const { createKeyCommand } = await import("./commands/keys.js");
    await createKeyCommand(flags);
  });

const images = program.command("images").description("rootfs images");
images
  .command("build")
  .description("build missing or stale images into the cache")
  .option("--cache-dir <dir>", "HUTCH_CACHE_DIR")
  .option("--only <name>", "build only this image")
  .action(async (flags: { cacheDir?: string; only?: string }) => {
    const { imagesBuildCommand } = await import("./commands/images.js");
    process.exitCode = await imagesBuildCommand(flags);
  });

const network = program.command("network").description("host network of the sandboxes");
network
  .command("down")
  .description("remove the sandbox bridge, namespace and NAT (VMs lose their network)")
  .option("--network-cidr <cidr>", "HUTCH_NETWORK_CIDR")
  .action(async (flags: { networkCidr?: string }) => {
    const { networkDownCommand } = await import("./commands/network.js");
    await networkDownCommand(flags);
  });

// API client commands (login, create, ls, exec, shell, tunnel, push, ...).
registerClientCommands(program);

program.parseAsync(process.argv).catch((err: unknown) => {
  process.stderr.write(`hutch: ${err instanceof Error ? err.message : String(err)}\n`);
  if (err instanceof Error && err.cause) process.stderr.write(`  cause: ${String((err.cause as Error).message ?? err.cause)}\n`);
  process.exit(1);
});
