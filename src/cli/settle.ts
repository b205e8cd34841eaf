import type { Command } from "./index";
import { parseSettleArgs, settle, SETTLE_USAGE } from "../settler/main";

/** `paychan settle [--config <file>] [--now]`: see src/settler/main.ts. */
export const command: Command = {
  summary: "claim accepted vouchers on-chain in batches",
  usage: SETTLE_USAGE,
  async run(args) {
    const parsed = parseSettleArgs(args);
    if ("help" in parsed) {
      process.stdout.write(SETTLE_USAGE);
      return 0;
    }
    if ("error" in parsed) {
      process.stderr.write(`paychan settle: ${parsed.error}\n\n${SETTLE_USAGE}`);
      return 2;
    }
    return settle(parsed.configPath, { now: parsed.now });
  },
};
