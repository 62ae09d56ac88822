/**
 * Hutch agent wire protocol constants, mirrored name for name from
 * `agent/protocol.h` (the C agent) and described in docs/agent-protocol.md.
 * Any change to the bytes on the wire bumps `HP_VERSION` on both sides.
 */

export const HP_VERSION = 3;
/** Oldest agent protocol the host still speaks: the agent answers HELLO with
 *  the lower of the host's version and its own (agents in older images say 1). */
export const HP_MIN_VERSION = 1;
/** From this version on, exec output flows within `HP_EXEC_WINDOW` (CREDIT). */
export const HP_VERSION_EXEC_CREDIT = 2;
/** From this version on, CONFIGURE ends with a u8 of `HP_KEEP_*` flags. */
export const HP_VERSION_CONFIGURE_KEEP = 3;
/** CONFIGURE keep flags: the guest leaves that part as it has it (its field is sent empty). */
export const HP_KEEP_ENVS = 0x01;
export const HP_KEEP_KEYS = 0x02;
/** Name of the virtio serial port the agent looks for (`-device virtserialport,name=…`). */
export const HP_PORT_NAME = "hutch.agent";
/** "HTCH" as a big-endian u32: the first 4 bytes of every frame. */
export const HP_MAGIC = 0x48544348;
/** magic u32 | length u32 | type u16 | flags u16 | channel u32 | crc32 u32 */
export const HP_HEADER_SIZE = 20;
/** Largest payload either end accepts; a bigger length is a protocol error. */
export const HP_MAX_PAYLOAD = 256 * 1024;
/** Largest payload either end produces for streamed data. */
export const HP_CHUNK_SIZE = 64 * 1024;
/** FILE_DATA bytes the agent may send on a read channel before a CREDIT. */
export const HP_READ_WINDOW = 256 * 1024;
/** TCP_DATA bytes either end may send on a relay channel before a CREDIT. */
export const HP_TCP_WINDOW = 256 * 1024;
/** STDOUT+STDERR bytes the agent may send on an exec channel before a CREDIT
 *  (protocol >= `HP_VERSION_EXEC_CREDIT`): a slow consumer holds the command. */
export const HP_EXEC_WINDOW = 512 * 1024;
export const HP_NONCE_SIZE = 16;
/** The agent drops a partial frame whose bytes stop arriving this long. */
export const HP_STALL_MS = 500;
/** After a command's main process exits, the agent waits this long for pipe EOF. */
export const HP_EXIT_GRACE_MS = 100;

export const HP_HELLO = 0x01;
export const HP_CONFIGURE = 0x02;
export const HP_PING = 0x03;
export const HP_PONG = 0x04;
export const HP_OK = 0x05;
export const HP_ERROR = 0x06;
export const HP_CREDIT = 0x07;

export const HP_EXEC_START = 0x10;
export const HP_STDIN = 0x11;
export const HP_STDIN_EOF = 0x12;
export const HP_STDOUT = 0x13;
export const HP_STDERR = 0x14;
export const HP_EXIT = 0x15;
export const HP_KILL = 0x16;

export const HP_FILE_WRITE_OPEN = 0x20;
export const HP_FILE_READ = 0x21;
export const HP_FILE_DATA = 0x22;
export const HP_FILE_END = 0x23;

/** Port relay to 127.0.0.1:port in the guest. */
export const HP_TCP_CONNECT = 0x30;
export const HP_TCP_DATA = 0x31;
export const HP_TCP_EOF = 0x32;
export const HP_TCP_CLOSE = 0x33;
/** Interactive shell on a pseudo-terminal; its bytes travel as STDIN/STDOUT. */
export const HP_PTY_OPEN = 0x40;
export const HP_PTY_RESIZE = 0x41;

/** Frame type names, for logs and errors. */
export const FRAME_TYPE_NAMES: Readonly<Record<number, string>> = {
  [HP_HELLO]: "HELLO",
  [HP_CONFIGURE]: "CONFIGURE",
  [HP_PING]: "PING",
  [HP_PONG]: "PONG",
  [HP_OK]: "OK",
  [HP_ERROR]: "ERROR",
  [HP_CREDIT]: "CREDIT",
  [HP_EXEC_START]: "EXEC_START",
  [HP_STDIN]: "STDIN",
  [HP_STDIN_EOF]: "STDIN_EOF",
  [HP_STDOUT]: "STDOUT",
  [HP_STDERR]: "STDERR",
  [HP_EXIT]: "EXIT",
  [HP_KILL]: "KILL",
  [HP_FILE_WRITE_OPEN]: "FILE_WRITE_OPEN",
  [HP_FILE_READ]: "FILE_READ",
  [HP_FILE_DATA]: "FILE_DATA",
  [HP_FILE_END]: "FILE_END",
  [HP_TCP_CONNECT]: "TCP_CONNECT",
  [HP_TCP_DATA]: "TCP_DATA",
  [HP_TCP_EOF]: "TCP_EOF",
  [HP_TCP_CLOSE]: "TCP_CLOSE",
  [HP_PTY_OPEN]: "PTY_OPEN",
  [HP_PTY_RESIZE]: "PTY_RESIZE",
};

/** Linux errno values carried in ERROR frames (the guest is always Linux). */
export const ERRNO = {
  EPERM: 1,
  ENOENT: 2,
  EACCES: 13,
  EEXIST: 17,
  ENOTDIR: 20,
  EISDIR: 21,
  EINVAL: 22,
  ENOSPC: 28,
  EROFS: 30,
  ENAMETOOLONG: 36,
  ENOSYS: 38,
  ECONNREFUSED: 111,
  ELOOP: 40,
  EPROTO: 71,
  EMSGSIZE: 90,
} as const;
