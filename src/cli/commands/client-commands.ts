/**
 * The API client commands of `hutch`: registered on the program by main.ts,
 * each loaded lazily. They reach the server named by HUTCH_URL/HUTCH_API_KEY
 * or the `hutch login` config file.
 */
import { Command, Option } from "commander";
import { collect, collectEnv, collectSshKeys, integer, onOff, port } from "../client/flag-parsers.js";
import { runAction } from "../client/run-action.js";

/** Adds login, create, ls, get, rm, exec, shell, tunnel, push, pull, pause, resume, fork, edit, shapes, rootfs. */
export function registerClientCommands(program: Command): void {
  program
    .command("login")
    .description("save the server URL and API key to ~/.config/hutch/config.json (mode 0600)")
    .option("--url <url>", "server URL (default HUTCH_URL or http://127.0.0.1:8080)")
    .option("--api-key <key>", "API key (read from stdin when omitted)")
    .option("--no-verify", "save without checking the key against the server")
    .action((flags) => runAction(async (ctx) => (await import("./login.js")).loginCommand(ctx, flags)));

  program
    .command("create")
    .description("create a sandbox and wait until it runs; prints its id")
    .option("--shape <id>", "shape (see `hutch shapes`)", "s-1vcpu-256mb")
    .option("--rootfs <name>", "root filesystem (see `hutch rootfs`)")
    .option("--name <name>", "sandbox name (also its hostname)")
    .option("--disk-mib <n>", "disk size in MiB", integer)
    .option("--ssh-key <key|file>", "SSH public key or .pub file (repeatable)", collectSshKeys)
    .option("--env <K=V>", "environment variable of every exec (repeatable)", collectEnv)
    .option("--ingress", "enable HTTP ingress")
    .option("--egress <rule>", "egress allow rule, e.g. example.com:443 (repeatable)", collect)
    .option("--auto-pause <seconds>", "pause after this long without activity", integer)
    .option("--host-id <id>", "place on this host")
    .option("--region <name>", "place in this region")
    .option("--network <id>", "join this network (repeatable)", collect)
    .option("--json", "print the full response as JSON")
    .action((flags) => runAction(async (ctx) => (await import("./create.js")).createCommand(ctx, flags)));

  program
    .command("ls")
    .description("list sandboxes")
    .option("--status <status>", "only running, creating, destroyed or failed")
    .option("--json", "print JSON")
    .action((flags) => runAction(async (ctx) => (await import("./list.js")).listCommand(ctx, flags)));

  program
    .command("get")
    .description("show one sandbox")
    .argument("<id|name>")
    .option("--json", "print JSON")
    .action((ref: string, flags) => runAction(async (ctx) => (await import("./list.js")).getCommand(ctx, ref, flags)));

  program
    .command("rm")
    .description("destroy sandboxes")
    .argument("<id|name...>")
    .option("--wait", "wait until each is destroyed")
    .action((refs: string[], flags) => runAction(async (ctx) => (await import("./rm.js")).rmCommand(ctx, refs, flags)));

  program
    .command("exec")
    .description("run a command (not through a shell), stream its output, exit with its code")
    .argument("<id|name>")
    .argument("<cmd...>", "command and arguments (put them after --)")
    .option("--env <K=V>", "override a declared env key (repeatable)", collectEnv)
    .option("--stdin", "send all of stdin to the command")
    .action((ref: string, argv: string[], flags) => runAction(async (ctx) => (await import("./exec.js")).execCommand(ctx, ref, argv, flags)));

  program
    .command("shell")
    .description("interactive shell (PTY) in the sandbox; --ssh uses the system ssh through a tunnel")
    .argument("<id|name>")
    .argument("[ssh-args...]", "with --ssh: passed on to ssh (after --)")
    .option("--ssh", "use ssh (ProxyCommand: hutch tunnel --stdio ID 22)")
    .option("--user <name>", "ssh user", "root")
    .option("-i, --identity <file>", "ssh private key")
    .action((ref: string, extra: string[], flags) => runAction(async (ctx) => (await import("./shell.js")).shellCommand(ctx, ref, extra, flags)));

  program
    .command("tunnel")
    .description("forward a local port (each connection a new tunnel) or stdio to a port in the sandbox")
    .argument("<id|name>")
    .argument("<remote-port>", "port in the sandbox", port)
    .option("--local <port>", "local port (default: the remote port; 0 picks one)", port)
    .option("--bind <addr>", "local address to listen on", "127.0.0.1")
    .option("--stdio", "pipe stdin/stdout through one tunnel (for ssh ProxyCommand)")
    .action((ref: string, remotePort: number, flags) =>
      runAction(async (ctx) => (await import("./tunnel.js")).tunnelCommand(ctx, ref, remotePort, flags)),
    );

  program
    .command("push")
    .description("copy a local file or directory into the sandbox")
    .argument("<id|name>")
    .argument("<local>")
    .argument("<remote>", "absolute path; a directory's contents go into it")
    .action((ref: string, local: string, remote: string) => runAction(async (ctx) => (await import("./push.js")).pushCommand(ctx, ref, local, remote)));

  program
    .command("pull")
    .description("copy a file or directory out of the sandbox")
    .argument("<id|name>")
    .argument("<remote>", "absolute path")
    .argument("<local>", "a directory's contents go into it")
    .action((ref: string, remote: string, local: string) => runAction(async (ctx) => (await import("./pull.js")).pullCommand(ctx, ref, remote, local)));

  for (const [name, what] of [
    ["pause", "snapshot a sandbox and free its host resources"],
    ["resume", "resume a paused sandbox"],
  ] as const) {
    program
      .command(name)
      .description(what)
      .argument("<id|name>")
      .option("--no-wait", "return once accepted")
      .option("--json", "print the sandbox as JSON")
      .action((ref: string, flags) =>
        runAction(async (ctx) => {
          const m = await import("./lifecycle.js");
          return name === "pause" ? m.pauseCommand(ctx, ref, flags) : m.resumeCommand(ctx, ref, flags);
        }),
      );
  }

  program
    .command("fork")
    .description("fork a paused sandbox; prints the child's id")
    .argument("<id|name>")
    .option("--start-paused", "leave the child paused")
    .option("--ssh-key <key|file>", "SSH public keys of the child (repeatable)", collectSshKeys)
    .option("--egress <rule>", "egress rules of the child (repeatable)", collect)
    .addOption(new Option("--ingress <on|off>", "ingress of the child").argParser(onOff))
    .option("--env <K=V>", "envs of the child (repeatable)", collectEnv)
    .option("--bandwidth-quota <bytes>", "egress quota of the child", integer)
    .option("--json", "print the child as JSON")
    .action((ref: string, flags) => runAction(async (ctx) => (await import("./lifecycle.js")).forkCommand(ctx, ref, flags)));

  program
    .command("edit")
    .description("change ingress or auto-pause")
    .argument("<id|name>")
    .addOption(new Option("--ingress <on|off>", "HTTP ingress").argParser(onOff))
    .option("--auto-pause <seconds|off>", "auto-pause delay, or off")
    .option("--json", "print the sandbox as JSON")
    .action((ref: string, flags) => runAction(async (ctx) => (await import("./edit.js")).editCommand(ctx, ref, flags)));

  program
    .command("shapes")
    .description("list the shapes (vCPU, memory, disk)")
    .option("--json", "print JSON")
    .action((flags) => runAction(async (ctx) => (await import("./catalog.js")).shapesCommand(ctx, flags)));

  program
    .command("rootfs")
    .description("list the root filesystems")
    .option("--json", "print JSON")
    .action((flags) => runAction(async (ctx) => (await import("./catalog.js")).rootfsCommand(ctx, flags)));
}
