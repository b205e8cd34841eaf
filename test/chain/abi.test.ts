import { expect } from "chai";
import { artifacts } from "hardhat";
import { paymentChannelsAbi, usdcAbi } from "../../src/chain/abi";

describe("runtime ABIs", () => {
  it("paymentChannelsAbi equals the compiled PaymentChannels ABI", async () => {
    const artifact = await artifacts.readArtifact("PaymentChannels");
    expect(paymentChannelsAbi).to.deep.equal(artifact.abi);
  });

  it("every usdcAbi entry exists in the compiled MockUSDC ABI", async () => {
    const artifact = await artifacts.readArtifact("MockUSDC");
    for (const entry of usdcAbi) expect(artifact.abi).to.deep.include(entry);
  });
});
