import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { expect } from "chai";
import hre, { artifacts } from "hardhat";
import { paymentChannelsAbi, priceFeedAbi, usdcAbi } from "../../src/chain/abi";
import { ABI_MODULE, renderAbiModule } from "../../scripts/generate-abi";

describe("runtime ABIs", () => {
  it("src/chain/abi.ts is exactly what scripts/generate-abi.ts renders from the compiled contracts", async () => {
    const rendered = await renderAbiModule(hre.config.paths.artifacts);
    expect(readFileSync(ABI_MODULE, "utf8")).to.equal(
      rendered,
      "src/chain/abi.ts is out of date with the contracts: run `npm run build`",
    );
  });

  it("renders something else when a contract's ABI changes", async () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), "paychan-abi-"));
    try {
      const source = "contracts/PaymentChannels.sol";
      for (const [from, contract] of [
        [source, "PaymentChannels"],
        ["contracts/mocks/MockUSDC.sol", "MockUSDC"],
        ["contracts/mocks/MockPriceFeed.sol", "MockPriceFeed"],
      ]) {
        cpSync(
          path.join(hre.config.paths.artifacts, from, `${contract}.json`),
          path.join(dir, from, `${contract}.json`),
        );
      }
      const file = path.join(dir, source, "PaymentChannels.json");
      const artifact = JSON.parse(readFileSync(file, "utf8")) as { abi: { name?: string }[] };
      artifact.abi = artifact.abi.filter((entry) => entry.name !== "claimBatch");
      writeFileSync(file, JSON.stringify(artifact));
      const rendered = await renderAbiModule(dir);
      expect(rendered).to.not.equal(readFileSync(ABI_MODULE, "utf8"));
      expect(rendered).to.not.include('name: "claimBatch"');
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it("paymentChannelsAbi equals the compiled PaymentChannels ABI", async () => {
    const artifact = await artifacts.readArtifact("PaymentChannels");
    expect(paymentChannelsAbi).to.deep.equal(artifact.abi);
  });

  it("every usdcAbi entry exists in the compiled MockUSDC ABI", async () => {
    const artifact = await artifacts.readArtifact("MockUSDC");
    for (const entry of usdcAbi) expect(artifact.abi).to.deep.include(entry);
  });

  it("priceFeedAbi is decimals and latestRoundData of the compiled MockPriceFeed ABI", async () => {
    const artifact = await artifacts.readArtifact("MockPriceFeed");
    expect(priceFeedAbi.map((entry) => entry.name)).to.deep.equal(["decimals", "latestRoundData"]);
    for (const entry of priceFeedAbi) expect(artifact.abi).to.deep.include(entry);
  });
});
