import { expect } from "chai";
import { createPublicClient, http as httpTransport, type Address, type PublicClient } from "viem";
import { generatePrivateKey, privateKeyToAccount } from "viem/accounts";
import { hardhat } from "viem/chains";
import { usdcAbi } from "../../src/chain/abi";
import { startHardhatNode, type HardhatNode } from "../helpers/hardhatNode";
import { runPaychan as cli } from "../helpers/cli";

/**
 * `paychan faucet` against a real `hardhat node`: mints the mock USDC (and sends ETH) to an
 * address, so a newcomer needs no script of their own; refused on real networks and for a token
 * that is not the mock.
 */

describe("CLI: paychan faucet (hardhat node)", function () {
  this.timeout(120_000);

  let node: HardhatNode;
  let publicClient: PublicClient;
  let usdc: Address;
  let contract: Address;
  const balance = (owner: Address) =>
    publicClient.readContract({ address: usdc, abi: usdcAbi, functionName: "balanceOf", args: [owner] });

  before(async () => {
    node = await startHardhatNode({ deploy: true });
    usdc = node.deployments!.MockUSDC;
    contract = node.deployments!.PaymentChannels;
    publicClient = createPublicClient({ chain: hardhat, transport: httpTransport(node.url) }) as PublicClient;
  });

  after(async () => {
    await node?.stop();
  });

  it("mints mock USDC and sends ETH to an address, or to the payer key's address by default", async () => {
    const newcomer = privateKeyToAccount(generatePrivateKey()).address;
    const minted = await cli([
      "faucet",
      newcomer,
      "--amount",
      "25",
      "--eth",
      "0.5",
      "--token",
      usdc,
      "--rpc",
      node.url,
    ]);
    expect(minted.code, minted.stderr).to.equal(0);
    expect(JSON.parse(minted.stdout)).to.deep.equal({
      address: newcomer,
      token: usdc,
      minted: "25000000",
      balance: "25000000",
      ethSent: "500000000000000000",
      ethBalance: "500000000000000000",
      network: "localhost",
    });
    expect(await balance(newcomer)).to.equal(25_000_000n);
    expect(await publicClient.getBalance({ address: newcomer })).to.equal(500_000_000_000_000_000n);

    const payerKey = generatePrivateKey();
    const payer = privateKeyToAccount(payerKey).address;
    const byDefault = await cli(["faucet", "--token", usdc], {
      PAYCHAN_PAYER_PRIVATE_KEY: payerKey,
      LOCALHOST_RPC_URL: node.url,
    });
    expect(byDefault.code, byDefault.stderr).to.equal(0);
    expect(JSON.parse(byDefault.stdout)).to.deep.include({ address: payer, minted: "100000000", ethSent: "0" });
    expect(await balance(payer)).to.equal(100_000_000n);
  });

  it("refuses real networks, a token that is not the mock, and a missing address, saying what to do", async () => {
    const someone = privateKeyToAccount(generatePrivateKey()).address;
    const [testnet, mainnet, notToken, noAddress] = await Promise.all([
      cli(["faucet", someone, "--network", "base-sepolia"]),
      cli(["faucet", someone, "--network", "base"]),
      cli(["faucet", someone, "--token", contract, "--rpc", node.url]),
      cli(["faucet", "--token", usdc, "--rpc", node.url]),
    ]);
    expect(testnet.code).to.equal(2);
    expect(testnet.stderr).to.equal(
      "paychan faucet: the faucet mints the local mock USDC and works on localhost only; base-sepolia holds Circle's USDC\n" +
        "  fix: get base-sepolia test USDC from Circle's faucet (https://faucet.circle.com) and ETH from a base-sepolia faucet\n",
    );
    expect(mainnet.code).to.equal(2);
    expect(mainnet.stderr).to.include("fix: base is a real network: fund the wallet with real USDC and ETH");
    expect(notToken.code).to.equal(1);
    expect(notToken.stderr).to.include(`paychan faucet: ${contract} is not a token on this node`);
    expect(noAddress.code).to.equal(2);
    expect(noAddress.stderr).to.include("paychan faucet: no address to fund\n  fix: pass it (paychan faucet 0x…)");
    for (const run of [testnet, mainnet, notToken, noAddress]) expect(run.stdout).to.equal("");
    expect(await balance(someone)).to.equal(0n);
  });
});
