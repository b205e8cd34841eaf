import { expect } from "chai";
import { runDemoX402 } from "../../scripts/demo-x402";

/**
 * `npm run demo:x402` end to end (its whole run but the process exit): hardhat node, the official
 * @x402/fetch client with paychan's plug-in, an exact-only client through the fallback, an
 * @x402/express app with the server plug-in, and the batch claim compared with the ledgers.
 */
describe("npm run demo:x402", function () {
  this.timeout(240_000);

  it("pays 100 channel requests (bursts of 32), 10 exact ones (a replay refused), 20 to the express app, and claims what was charged", async () => {
    const lines: string[] = [];
    const summary = await runDemoX402((line) => lines.push(line));
    expect(summary).to.deep.include({
      channelPaid: 100,
      channelConcurrent: 32,
      exactPaid: 10,
      exactReplayRefused: true,
      expressPaid: 20,
    });
    // 100 × $0.001 through the proxy's channel, 20 × $0.002 through the express app's.
    expect(summary.chargedTotal).to.equal((100n * 1_000n + 20n * 2_000n).toString());
    expect(summary.claimedOnChain).to.equal(summary.chargedTotal);
    expect(lines[0]).to.equal("paychan x402 demo");
  });
});
