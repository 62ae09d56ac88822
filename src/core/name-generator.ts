/**
 * Auto-generated sandbox names, `<adjective>-<animal>`: valid DNS labels
 * that are easy to read and say.
 */
import { randomInt } from "node:crypto";

const ADJECTIVES = [
  "able", "agile", "amber", "ample", "aqua", "arctic", "azure", "bold", "brave", "breezy",
  "bright", "brisk", "calm", "candid", "clever", "cosmic", "cozy", "crisp", "curious", "daring",
  "dapper", "eager", "early", "earnest", "easy", "elegant", "epic", "fair", "fancy", "fast",
  "fearless", "fluffy", "frank", "fresh", "friendly", "frosty", "gentle", "giddy", "glad", "golden",
  "grand", "happy", "hardy", "hasty", "humble", "icy", "jolly", "jovial", "keen", "kind",
  "lively", "lucky", "lunar", "mellow", "merry", "mighty", "misty", "modest", "neat", "nimble",
  "noble", "polite", "proud", "quick", "quiet", "rapid", "ready", "rosy", "rustic", "sandy",
  "serene", "sharp", "shiny", "silent", "silver", "sleek", "smart", "snowy", "solar", "sonic",
  "spry", "steady", "stellar", "sunny", "swift", "tidy", "tranquil", "trusty", "upbeat", "valiant",
  "vivid", "warm", "wise", "witty", "zany", "zesty", "zippy",
];

const ANIMALS = [
  "alpaca", "ant", "antelope", "badger", "bat", "bear", "beaver", "bee", "bison", "bobcat",
  "buffalo", "camel", "caribou", "cat", "cheetah", "cobra", "condor", "cougar", "coyote", "crab",
  "crane", "cricket", "crow", "deer", "dingo", "dolphin", "donkey", "dove", "duck", "eagle",
  "eel", "egret", "elk", "falcon", "ferret", "finch", "fox", "frog", "gazelle", "gecko",
  "gibbon", "giraffe", "goat", "goose", "gopher", "gorilla", "hare", "hawk", "hedgehog", "heron",
  "hippo", "horse", "ibex", "ibis", "iguana", "jackal", "jaguar", "kestrel", "kiwi", "koala",
  "lemur", "leopard", "lion", "llama", "lobster", "lynx", "magpie", "marmot", "meerkat", "mink",
  "mole", "moose", "narwhal", "newt", "ocelot", "octopus", "orca", "otter", "owl", "panda",
  "panther", "parrot", "pelican", "penguin", "puffin", "puma", "quail", "rabbit", "raccoon", "raven",
  "robin", "salmon", "seal", "shark", "sloth", "sparrow", "squid", "stork", "swan", "tapir",
  "tiger", "toucan", "turtle", "viper", "walrus", "weasel", "whale", "wolf", "wombat", "yak", "zebra",
];

function pick(list: readonly string[]): string {
  return list[randomInt(list.length)]!;
}

/**
 * A fresh `<adjective>-<animal>` name; with `suffix`, a 4-hex-digit tail is
 * appended (used after repeated collisions).
 */
export function generateName(suffix = false): string {
  const base = `${pick(ADJECTIVES)}-${pick(ANIMALS)}`;
  return suffix ? `${base}-${randomInt(0x10000).toString(16).padStart(4, "0")}` : base;
}

const DNS_LABEL = /^(?!-)[a-z0-9-]{1,63}(?<!-)$/;

/** True for a valid sandbox name: a lowercase DNS label. */
export function isDnsLabel(name: string): boolean {
  return DNS_LABEL.test(name);
}
