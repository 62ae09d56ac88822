/**
 * Golden frames of protocol version 1, also listed in docs/agent-protocol.md
 * and decoded by the C parser (agent/test/frame-test.c). Changing the bytes of
 * any of these is a wire change: bump HP_VERSION.
 */
export const GOLDEN_FRAMES = [
  {
    name: "PING channel 7, payload 'hi'",
    hex: "48544348000000020003000000000007ee1f94e56869",
    type: 0x03,
    channel: 7,
    payloadHex: "6869",
  },
  {
    name: "HELLO host→agent: version 1, nonce 00..0f",
    hex: "48544348000000180001000000000000de0ad8800000000100000010000102030405060708090a0b0c0d0e0f",
    type: 0x01,
    channel: 0,
    payloadHex: "0000000100000010000102030405060708090a0b0c0d0e0f",
  },
  {
    name: "EXIT channel 0x01020304: code 127, no signal, error 'no'",
    hex: "485443480000000e001500000102030405397f770000007f00000000000000026e6f",
    type: 0x15,
    channel: 0x01020304,
    payloadHex: "0000007f00000000000000026e6f",
  },
  {
    name: "STDOUT channel 1, empty payload",
    hex: "485443480000000000130000000000014e548598",
    type: 0x13,
    channel: 1,
    payloadHex: "",
  },
] as const;
