import { expect } from "chai";
import { runDemoMcp } from "../../scripts/demo-mcp";

/**
 * `npm run demo:mcp` end to end (its whole run but the process exit): hardhat node, an MCP server
 * of the official SDK with a tool priced through paychan's gate, 50 paid calls through one
 * channel opened gaslessly, the claim compared with what was charged, and the latency step.
 */
describe("npm run demo:mcp", function () {
  this.timeout(240_000);

  it("makes 50 paid MCP tool calls, claims on-chain what they were charged, and measures a paid call", async () => {
    const lines: string[] = [];
    const summary = await runDemoMcp((line) => lines.push(line), 30);
    expect(summary.mcpPaidCalls).to.equal(50);
    expect(summary.chargedTotal).to.equal((50n * 1_000n).toString());
    expect(summary.claimedOnChain).to.equal(summary.chargedTotal);
    expect(summary.latency?.calls).to.equal(30);
    expect(summary.latency!.paidP50).to.be.greaterThan(0);
    expect(lines[0]).to.equal("paychan MCP demo");
  });
});
