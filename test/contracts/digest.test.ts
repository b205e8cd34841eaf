import { expect } from "chai";
import { ethers } from "hardhat";
import { getTypesForEIP712Domain, hashDomain, toHex, type Address, type Hex } from "viem";
import { openAuthorizationNonce, topUpAuthorizationNonce } from "../../src/protocol/authorization";
import { channelIdFor, MAX_AMOUNT, voucherDigest, voucherDomain } from "../../src/protocol/voucher";
import type { MockUSDC, PaymentChannels } from "../../typechain-types";
import { createRandom } from "../helpers/random";

const random = createRandom(0x5eed_d16e);
const randomBytes32 = (): Hex => toHex(random.below(256), { size: 32 });

describe("TypeScript and contract digests agree", () => {
  let channels: PaymentChannels;
  let usdc: MockUSDC;
  let chainId: number;
  let address: Address;

  before(async () => {
    channels = await (await ethers.getContractFactory("PaymentChannels")).deploy();
    usdc = await (await ethers.getContractFactory("MockUSDC")).deploy();
    chainId = Number((await ethers.provider.getNetwork()).chainId);
    address = (await channels.getAddress()) as Address;
  });

  it("voucherDigest matches for 256 random (channelId < 2^184, amount < 2^96) pairs and the extremes", async () => {
    const domain = voucherDomain(chainId, address);
    const pairs: [bigint, bigint][] = [
      [0n, 0n],
      [(1n << 184n) - 1n, MAX_AMOUNT],
      [1n, 1n],
    ];
    while (pairs.length < 256) pairs.push([random.below(184), random.below(96)]);
    const onChain = await Promise.all(pairs.map(([id, amount]) => channels.voucherDigest(id, amount)));
    pairs.forEach(([channelId, cumulativeAmount], i) => {
      expect(
        voucherDigest(domain, { channelId, cumulativeAmount }),
        `pair ${i}: ${channelId}, ${cumulativeAmount}`,
      ).to.equal(onChain[i]);
    });
    // The check is sensitive to both fields: a neighbouring voucher has a different digest.
    const [id, amount] = pairs[5];
    expect(voucherDigest(domain, { channelId: id, cumulativeAmount: amount + 1n })).to.not.equal(onChain[5]);
    expect(voucherDigest(domain, { channelId: id ^ 1n, cumulativeAmount: amount })).to.not.equal(onChain[5]);
  });

  it("domainSeparator matches viem's hashDomain and depends on the verifying contract", async () => {
    const separatorOf = (verifyingContract: Address): Hex => {
      const domain = voucherDomain(chainId, verifyingContract);
      const types = {
        EIP712Domain: [
          { name: "name", type: "string" },
          { name: "version", type: "string" },
          { name: "chainId", type: "uint256" },
          { name: "verifyingContract", type: "address" },
        ],
      } as const;
      // The field list must be what viem derives for this domain, or the comparison proves little.
      expect(getTypesForEIP712Domain({ domain })).to.deep.equal(types.EIP712Domain);
      return hashDomain({ domain: { ...domain, chainId: BigInt(domain.chainId) }, types });
    };
    const expected = separatorOf(address);
    expect(await channels.domainSeparator()).to.equal(expected);
    expect(separatorOf((await usdc.getAddress()) as Address)).to.not.equal(expected);
  });

  it("openAuthorizationNonce matches for 64 random parameter sets", async () => {
    const params = Array.from({ length: 64 }, (_, i) => ({
      payee: random.address(),
      signer: i === 0 ? ("0x0000000000000000000000000000000000000000" as Address) : random.address(),
      withdrawDelay: i === 1 ? 0xffffffff : Number(random.below(32)),
      salt: randomBytes32(),
    }));
    const onChain = await Promise.all(
      params.map((p) => channels.openAuthorizationNonce(p.payee, p.signer, p.withdrawDelay, p.salt)),
    );
    params.forEach((p, i) => expect(openAuthorizationNonce(p), `set ${i}`).to.equal(onChain[i]));
    expect(openAuthorizationNonce({ ...params[2], withdrawDelay: params[2].withdrawDelay ^ 1 })).to.not.equal(
      onChain[2],
    );
  });

  it("topUpAuthorizationNonce matches for 64 random (channelId, salt) pairs", async () => {
    const pairs = Array.from({ length: 64 }, (_, i): [bigint, Hex] => [
      i === 0 ? (1n << 256n) - 1n : random.below(184),
      randomBytes32(),
    ]);
    const onChain = await Promise.all(pairs.map(([id, salt]) => channels.topUpAuthorizationNonce(id, salt)));
    pairs.forEach(([id, salt], i) => expect(topUpAuthorizationNonce(id, salt), `pair ${i}`).to.equal(onChain[i]));
    expect(topUpAuthorizationNonce(pairs[3][0] + 1n, pairs[3][1])).to.not.equal(onChain[3]);
  });

  it("channelIdFor(signer, nonce) equals nextChannelId(signer) for fresh and used signers", async () => {
    const fresh = Array.from({ length: 32 }, () => random.address());
    const next = await Promise.all(fresh.map((s) => channels.nextChannelId(s)));
    fresh.forEach((s, i) => expect(channelIdFor(s, 0n), s).to.equal(next[i]));

    const [payer, payee] = await ethers.getSigners();
    await usdc.mint(payer.address, 1_000_000n);
    await usdc.connect(payer).approve(address, 1_000_000n);
    const session = random.address();
    for (let nonce = 0n; nonce < 3n; nonce++) {
      expect(await channels.nextChannelId(session)).to.equal(channelIdFor(session, nonce));
      await channels.connect(payer).open(payee.address, await usdc.getAddress(), session, 3600, 1_000n);
      const opened = await channels.getChannel(channelIdFor(session, nonce));
      expect(opened.status).to.equal(1n);
      expect(opened.signer).to.equal(session);
    }
    expect(await channels.nextChannelId(session)).to.equal(channelIdFor(session, 3n));
  });
});
