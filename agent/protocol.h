/*
 * Hutch agent wire protocol, version 3. Described in docs/agent-protocol.md;
 * mirrored name for name in src/runtime/agent/protocol.ts. Any change to the
 * bytes on the wire bumps HP_VERSION.
 */
#ifndef HUTCH_PROTOCOL_H
#define HUTCH_PROTOCOL_H

#define HP_VERSION 3u
/* Oldest version still spoken: the agent answers HELLO with the lower of the
 * host's version and its own, and both ends speak that from then on. */
#define HP_MIN_VERSION 1u
/* From this version on, exec output flows within HP_EXEC_WINDOW (CREDIT). */
#define HP_VERSION_EXEC_CREDIT 2u
/* From this version on, CONFIGURE ends with a u8 of HP_KEEP_* flags. */
#define HP_VERSION_CONFIGURE_KEEP 3u
/* CONFIGURE keep flags: leave that part as the guest has it (its field is sent empty). */
#define HP_KEEP_ENVS 0x01u
#define HP_KEEP_KEYS 0x02u
/* Name of the virtio serial port the agent looks for (else /dev/hvc0). */
#define HP_PORT_NAME "hutch.agent"
/* "HTCH" read as a big-endian u32: the first 4 bytes of every frame. */
#define HP_MAGIC 0x48544348u
/* magic u32 | length u32 | type u16 | flags u16 | channel u32 | crc32 u32 */
#define HP_HEADER_SIZE 20u
/* Largest payload either end accepts; a bigger length is a protocol error. */
#define HP_MAX_PAYLOAD (256u * 1024u)
/* Largest payload either end produces for streamed data (output, files). */
#define HP_CHUNK_SIZE (64u * 1024u)
/* Bytes of FILE_DATA the agent may send on a read channel before CREDIT. */
#define HP_READ_WINDOW (256u * 1024u)
/* TCP_DATA bytes either end may send on a relay channel before CREDIT. */
#define HP_TCP_WINDOW (256u * 1024u)
/* STDOUT+STDERR bytes the agent may send on an exec channel before CREDIT
 * (protocol >= HP_VERSION_EXEC_CREDIT): a slow consumer holds the command. */
#define HP_EXEC_WINDOW (512u * 1024u)
#define HP_NONCE_SIZE 16u
/* A frame whose bytes stop arriving for this long is dropped (resync). */
#define HP_STALL_MS 500u
/* After the main process exits, how long the agent waits for pipe EOF. */
#define HP_EXIT_GRACE_MS 100u

/* Frame types. Replies use the channel id of the request. */
#define HP_HELLO 0x01u
#define HP_CONFIGURE 0x02u
#define HP_PING 0x03u
#define HP_PONG 0x04u
#define HP_OK 0x05u
#define HP_ERROR 0x06u
#define HP_CREDIT 0x07u

#define HP_EXEC_START 0x10u
#define HP_STDIN 0x11u
#define HP_STDIN_EOF 0x12u
#define HP_STDOUT 0x13u
#define HP_STDERR 0x14u
#define HP_EXIT 0x15u
#define HP_KILL 0x16u

#define HP_FILE_WRITE_OPEN 0x20u
#define HP_FILE_READ 0x21u
#define HP_FILE_DATA 0x22u
#define HP_FILE_END 0x23u

/* Port relay to 127.0.0.1:port (tcp.c). */
#define HP_TCP_CONNECT 0x30u
#define HP_TCP_DATA 0x31u
#define HP_TCP_EOF 0x32u
#define HP_TCP_CLOSE 0x33u
/* Interactive shell on a pseudo-terminal (pty.c); data uses STDIN/STDOUT. */
#define HP_PTY_OPEN 0x40u
#define HP_PTY_RESIZE 0x41u

#endif
