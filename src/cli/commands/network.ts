/** `hutch network down`: removes the host network of the sandboxes. */
import { HostNetwork } from "../../runtime/network/host-network.js";
import { loadConfig } from "../../config.js";

export async function networkDownCommand(flags: { networkCidr?: string }): Promise<void> {
  const config = loadConfig(flags.networkCidr ? { networkCidr: flags.networkCidr } : {});
  const log = { info: (o: object | string, m?: string) => console.error(m ?? o), warn: (o: object | string, m?: string) => console.error(m ?? o) };
  await new HostNetwork({ nsName: config.netns, cidr: config.networkCidr, log }).teardown();
  console.error("sandbox network removed");
}
