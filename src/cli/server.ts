import type { Command } from "./index";
import { parseServeArgs, serve, SERVE_USAGE } from "../server/main";

/** `paychan server [--config <file>]`: see src/server/main.ts. */
export const command: Command = {
  summary: "run the paying reverse proxy",
  usage: SERVE_USAGE,
  async run(args) {
    const parsed = parseServeArgs(args);
    if ("help" in parsed) {
      process.stdout.write(SERVE_USAGE);
      return 0;
    }
    if ("error" in parsed) {
      process.stderr.write(`paychan server: ${parsed.error}\n\n${SERVE_USAGE}`);
      return 2;
    }
    return serve(parsed.configPath);
  },
};
