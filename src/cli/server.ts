import type { Command } from "./index";
import { parseServeArgs, serve, SERVE_USAGE } from "../server/main";
import { settle } from "../settler/main";

const NO_SETTLER = "--no-settler";

const USAGE = `${SERVE_USAGE}
The batch settler runs in the same process (see \`paychan settle --help\`); ${NO_SETTLER} runs the
proxy alone, for when \`paychan settle\` runs elsewhere.
`;

/**
 * `paychan server [--config <file>] [--no-settler]`: the paying reverse proxy and, by default,
 * the batch settler in the same process, so accepted vouchers are claimed (and claimed at once
 * when a payer starts to withdraw) without a second service to run.
 */
export const command: Command = {
  summary: "run the paying reverse proxy (with its batch settler)",
  usage: USAGE,
  async run(args) {
    const withSettler = !args.includes(NO_SETTLER);
    const parsed = parseServeArgs(args.filter((arg) => arg !== NO_SETTLER));
    if ("help" in parsed) {
      process.stdout.write(USAGE);
      return 0;
    }
    if ("error" in parsed) {
      process.stderr.write(`paychan server: ${parsed.error}\n\n${USAGE}`);
      return 2;
    }
    if (!withSettler) return serve(parsed.configPath);
    // Each part stops on SIGINT/SIGTERM; whichever ends first (a start-up failure included)
    // stops the other, so the process never runs half of the service.
    const stopSettler = new AbortController();
    const settled = settle(parsed.configPath, { abort: stopSettler.signal });
    const served = serve(parsed.configPath);
    const first = await Promise.race([
      served.then((code) => ({ code, part: "server" })),
      settled.then((code) => ({ code, part: "settler" })),
    ]);
    if (first.part === "server") stopSettler.abort();
    else if (first.code !== 0) process.kill(process.pid, "SIGTERM");
    const [serverCode, settlerCode] = await Promise.all([served, settled]);
    return Math.max(serverCode, settlerCode);
  },
};
