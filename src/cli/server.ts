import type { Command } from "./index";
import { parseServeArgs, serve, SERVE_USAGE } from "../server/main";
import type { PaymentMetrics } from "../server/metrics";
import { settle } from "../settler/main";
import type { Settler } from "../settler/settler";

const NO_SETTLER = "--no-settler";

const USAGE = `${SERVE_USAGE}
The batch settler runs in the same process (see \`paychan settle --help\`), started once the
proxy runs; ${NO_SETTLER} runs the proxy alone, for when \`paychan settle\` runs elsewhere. Both
ways, and \`paychan settle\`, refuse to start without the chain, with the same message and exit code.
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
    // The settler starts once the server runs, so a start-up failure (the chain unreachable, say)
    // is reported once, by the server, and the process never runs half of the service. Each part
    // stops on SIGINT/SIGTERM; a settler that fails stops the server.
    const stopSettler = new AbortController();
    // The settler's figures join the server's /metrics once both parts run.
    let settled: Promise<number> | undefined;
    const served = serve(parsed.configPath, {
      onStarted: (server) => {
        settled = settle(parsed.configPath, {
          abort: stopSettler.signal,
          onStarted: (settler) => exposeSettlerMetrics(server.metrics, settler),
        });
        void settled.then((code) => {
          if (code !== 0 && !stopSettler.signal.aborted) process.kill(process.pid, "SIGTERM");
        });
      },
    });
    const serverCode = await served;
    stopSettler.abort();
    const settlerCode = settled ? await settled : 0;
    return Math.max(serverCode, settlerCode);
  },
};

/** Publishes the settler's figures as gauges read at scrape time. */
function exposeSettlerMetrics(metrics: PaymentMetrics, settler: Settler): void {
  const m = settler.metrics;
  metrics.gauge("paychan_settler_unclaimed_atomic", "Accepted but not yet claimed, atomic units.", () => [
    { value: m.unclaimedAmount },
  ]);
  metrics.gauge("paychan_settler_unclaimed_channels", "Channels with an unclaimed voucher.", () => [
    { value: m.unclaimedCount },
  ]);
  metrics.gauge("paychan_settler_oldest_unclaimed_seconds", "Age of the oldest unclaimed voucher.", () => [
    { value: m.oldestUnclaimedAgeSec },
  ]);
  metrics.gauge("paychan_settler_batches_sent", "Claim transactions confirmed since start.", () => [
    { value: m.batchesSent },
  ]);
  metrics.gauge("paychan_settler_channels_claimed", "Channel claims confirmed since start.", () => [
    { value: m.channelsClaimed },
  ]);
  metrics.gauge("paychan_settler_gas_per_channel", "Gas per channel of the last claim batch.", () => [
    { value: m.lastGasPerChannel },
  ]);
  metrics.gauge(
    "paychan_settler_failures",
    "Settler failures since start, by cause.",
    () => Object.entries(m.failures).map(([cause, value]) => ({ labels: { cause }, value })),
    ["cause"],
  );
}
