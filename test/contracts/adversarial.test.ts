import { expect } from "chai";
import { ethers } from "hardhat";
import { time } from "@nomicfoundation/hardhat-network-helpers";
import { channelIdFor, voucherDomain } from "../../src/protocol/voucher";
import type { MockFeeOnTransferToken, MockReentrantToken, PaymentChannels } from "../../typechain-types";
import { patchImmutables } from "../helpers/evm";
import {
  claimsOf,
  batch,
  claimItem,
  compactSignature,
  DELAY,
  DEPOSIT,
  deployFixture,
  eventsOf,
  HALF_N,
  highSTwin,
  INITIAL_BALANCE,
  openChannel,
  rawClaimItem,
  receiptOf,
  SECP256K1_N,
  signOpenAuthorization,
  signTopUpAuthorization,
  signVoucher,
  splitSignature,
  type Fixture,
  type Hex,
} from "../helpers/fixture";

const INVALID_SIGNATURE = 4n;
const CHANNEL_CLOSED = 1n;

enum Hook {
  None,
  Transfer,
  TransferFrom,
}

async function deploy<T>(name: string, ...args: unknown[]): Promise<T> {
  const contract = await ethers.deployContract(name, args);
  await contract.waitForDeployment();
  return contract as unknown as T;
}

/** What ecrecover (precompile 0x01) returns for a digest and a 65-byte signature; zero address if nothing. */
async function ecrecover(digest: string, signature: string): Promise<string> {
  const { r, s, v } = splitSignature(signature);
  const out = await ethers.provider.call({
    to: "0x0000000000000000000000000000000000000001",
    data: ethers.concat([digest, ethers.toBeHex(v, 32), r, ethers.toBeHex(s, 32)]),
  });
  return out === "0x" ? ethers.ZeroAddress : ethers.getAddress(ethers.dataSlice(out, 12));
}

describe("PaymentChannels under attack", () => {
  let f: Fixture;

  beforeEach(async () => {
    f = await deployFixture();
  });

  describe("voucher replay", () => {
    it("a voucher signed for another chain id is refused by claim and skipped by claimBatch", async () => {
      const id = await openChannel(f);
      const foreign = voucherDomain(1, f.channelsAddress);
      const sig = await signVoucher(f.session, foreign, id, 100n);
      await expect(f.channels.claim(id, 100n, sig))
        .to.be.revertedWithCustomError(f.channels, "PaymentChannelsInvalidSignature")
        .withArgs(id);
      await expect(f.channels.claimBatch(claimItem(id, 100n, sig)))
        .to.emit(f.channels, "ClaimSkipped")
        .withArgs(id, 100n, INVALID_SIGNATURE);
      expect((await f.channels.getChannel(id)).claimed).to.equal(0n);
    });

    it("after a chain id change (fork) vouchers of the deployment chain are refused and the new id is used", async () => {
      // Make the deployed code look as if it was deployed on chain 1: both cached immutables (chain id
      // and domain separator) now hold chain 1's values, while the chain runs as 31337.
      const id = await openChannel(f);
      const id2 = await openChannel(f);
      const original = await f.channels.domainSeparator();
      const chain1Separator = ethers.TypedDataEncoder.hashDomain(voucherDomain(1, f.channelsAddress));
      const patched = await patchImmutables(f.channelsAddress, {
        [ethers.toBeHex(f.chainId, 32)]: ethers.toBeHex(1, 32),
        [original]: chain1Separator,
      });
      expect(patched).to.be.greaterThanOrEqual(2);
      // Storage survived the code change.
      expect((await f.channels.getChannel(id)).deposit).to.equal(DEPOSIT);
      // The separator is recomputed for the running chain, not taken from the (stale) cache.
      expect(await f.channels.domainSeparator()).to.equal(original);
      expect(await f.channels.voucherDigest(id, 5n)).to.equal(
        ethers.TypedDataEncoder.hash(
          f.domain,
          {
            Voucher: [
              { name: "channelId", type: "uint256" },
              { name: "cumulativeAmount", type: "uint96" },
            ],
          },
          { channelId: id, cumulativeAmount: 5n },
        ),
      );

      const oldChain = voucherDomain(1, f.channelsAddress);
      await expect(f.channels.claim(id, 100n, await signVoucher(f.session, oldChain, id, 100n)))
        .to.be.revertedWithCustomError(f.channels, "PaymentChannelsInvalidSignature")
        .withArgs(id);
      await expect(f.channels.claim(id, 100n, await signVoucher(f.session, f.domain, id, 100n)))
        .to.emit(f.channels, "ChannelClaimed")
        .withArgs(id, 100n);

      const receipt = await receiptOf(
        f.channels.claimBatch(
          batch(
            claimItem(id2, 10n, await signVoucher(f.session, oldChain, id2, 10n)),
            claimItem(id2, 20n, await signVoucher(f.session, f.domain, id2, 20n)),
          ),
        ),
      );
      expect(await eventsOf(receipt, f.channels, "ClaimSkipped")).to.deep.equal([[id2, 10n, INVALID_SIGNATURE]]);
      expect(await claimsOf(receipt, f.channels)).to.deep.equal([[id2, 20n]]);
    });

    it("a voucher for one PaymentChannels instance is refused by another, even for the same channel id", async () => {
      const second = await deploy<PaymentChannels>("PaymentChannels");
      const secondAddress = await second.getAddress();
      const id = await openChannel(f);
      await f.usdc.connect(f.payer).approve(secondAddress, DEPOSIT);
      await second.connect(f.payer).open(f.payee.address, f.usdcAddress, f.session.address, DELAY, DEPOSIT);
      // Same signer, same nonce: the very same id exists on both contracts.
      expect((await second.getChannel(id)).deposit).to.equal(DEPOSIT);

      const forFirst = await signVoucher(f.session, f.domain, id, 100n);
      await expect(second.claim(id, 100n, forFirst))
        .to.be.revertedWithCustomError(second, "PaymentChannelsInvalidSignature")
        .withArgs(id);
      await expect(second.claimBatch(claimItem(id, 100n, forFirst)))
        .to.emit(second, "ClaimSkipped")
        .withArgs(id, 100n, INVALID_SIGNATURE);
      const forSecond = await signVoucher(f.session, voucherDomain(f.chainId, secondAddress as Hex), id, 100n);
      await expect(f.channels.claim(id, 100n, forSecond))
        .to.be.revertedWithCustomError(f.channels, "PaymentChannelsInvalidSignature")
        .withArgs(id);
      // Each voucher works where it belongs.
      await expect(f.channels.claim(id, 100n, forFirst)).to.emit(f.channels, "ChannelClaimed");
      await expect(second.claim(id, 100n, forSecond)).to.emit(second, "ChannelClaimed");
    });

    it("a voucher for one channel is refused on another channel of the same signer", async () => {
      const a = await openChannel(f);
      const b = await openChannel(f);
      expect(b).to.not.equal(a);
      const forA = await signVoucher(f.session, f.domain, a, 100n);
      await expect(f.channels.claim(b, 100n, forA))
        .to.be.revertedWithCustomError(f.channels, "PaymentChannelsInvalidSignature")
        .withArgs(b);
      await expect(f.channels.claimBatch(claimItem(b, 100n, forA)))
        .to.emit(f.channels, "ClaimSkipped")
        .withArgs(b, 100n, INVALID_SIGNATURE);
    });

    it("a closed channel's id is never reissued, so its vouchers cannot be replayed on a reopened channel", async () => {
      const first = await openChannel(f);
      const voucher = await signVoucher(f.session, f.domain, first, 100n);
      await f.channels.connect(f.payee).close(first, 100n, voucher);
      // The payer opens "the same channel" again: same payee, token, signer and delay.
      const reopened = await openChannel(f);
      expect(reopened).to.not.equal(first);
      expect(reopened).to.equal(first + 1n);
      await expect(f.channels.claim(reopened, 100n, voucher))
        .to.be.revertedWithCustomError(f.channels, "PaymentChannelsInvalidSignature")
        .withArgs(reopened);
      await expect(f.channels.claim(first, 100n, voucher))
        .to.be.revertedWithCustomError(f.channels, "PaymentChannelsChannelClosed")
        .withArgs(first);
      const receipt = await receiptOf(
        f.channels.claimBatch(batch(claimItem(first, 100n, voucher), claimItem(reopened, 100n, voucher))),
      );
      expect(await eventsOf(receipt, f.channels, "ClaimSkipped")).to.deep.equal([
        [first, 100n, CHANNEL_CLOSED],
        [reopened, 100n, INVALID_SIGNATURE],
      ]);
      expect(await f.usdc.balanceOf(f.payee.address)).to.equal(100n);
    });

    it("the same voucher pays once: a replay is stale", async () => {
      const id = await openChannel(f);
      const sig = await signVoucher(f.session, f.domain, id, 100n);
      await f.channels.claim(id, 100n, sig);
      await expect(f.channels.claim(id, 100n, sig))
        .to.be.revertedWithCustomError(f.channels, "PaymentChannelsStaleAmount")
        .withArgs(id, 100n, 100n);
      await expect(f.channels.claimBatch(claimItem(id, 100n, sig)))
        .to.emit(f.channels, "ClaimSkipped")
        .withArgs(id, 100n, 2n);
      expect(await f.usdc.balanceOf(f.payee.address)).to.equal(100n);
    });

    it("a voucher above the deposit is refused, and a top-up cannot be claimed by an older oversized voucher", async () => {
      const id = await openChannel(f);
      const big = await signVoucher(f.session, f.domain, id, DEPOSIT + 5n);
      await expect(f.channels.claim(id, DEPOSIT + 5n, big))
        .to.be.revertedWithCustomError(f.channels, "PaymentChannelsAmountExceedsDeposit")
        .withArgs(id, DEPOSIT + 5n, DEPOSIT);
      await expect(f.channels.claimBatch(claimItem(id, DEPOSIT + 5n, big)))
        .to.emit(f.channels, "ClaimSkipped")
        .withArgs(id, DEPOSIT + 5n, 3n);
      // The voucher is still a genuine promise: once the deposit covers it, it pays.
      await f.usdc.connect(f.payer).approve(f.channelsAddress, 5n);
      await f.channels.connect(f.payer).topUp(id, 5n);
      await expect(f.channels.claim(id, DEPOSIT + 5n, big)).to.emit(f.channels, "ChannelClaimed");
      expect(await f.usdc.balanceOf(f.channelsAddress)).to.equal(0n);
    });
  });

  describe("forged and malleable signatures", () => {
    it("claim refuses the high-s twin (r, n - s, v ^ 1) that ecrecover itself accepts", async () => {
      const id = await openChannel(f);
      const sig = await signVoucher(f.session, f.domain, id, 100n);
      const twin = highSTwin(sig);
      const digest = await f.channels.voucherDigest(id, 100n);
      // The twin is a valid ECDSA signature by the session key: only the low-s rule refuses it.
      expect(await ecrecover(digest, twin)).to.equal(f.session.address);
      expect(splitSignature(twin).s).to.be.greaterThan(HALF_N);
      await expect(f.channels.claim(id, 100n, twin))
        .to.be.revertedWithCustomError(f.channels, "PaymentChannelsInvalidSignature")
        .withArgs(id);
      await expect(f.channels.connect(f.payee).close(id, 100n, twin))
        .to.be.revertedWithCustomError(f.channels, "PaymentChannelsInvalidSignature")
        .withArgs(id);
      await expect(f.channels.claim(id, 100n, sig))
        .to.emit(f.channels, "ChannelClaimed")
        .withArgs(id, 100n);
    });

    it("claimBatch skips the high-s twin and still accepts the original", async () => {
      const id = await openChannel(f);
      const sig = await signVoucher(f.session, f.domain, id, 100n);
      const { r, s, v } = splitSignature(sig);
      const twinS = SECP256K1_N - s;
      // The twin in yParityAndS form (parity bit | n - s): n - s usually sets bit 255 itself.
      const twinItem = rawClaimItem(id, 100n, r, ((v === 27 ? 1n : 0n) << 255n) | twinS);
      const receipt = await receiptOf(f.channels.claimBatch(batch(twinItem, claimItem(id, 100n, sig))));
      expect(await eventsOf(receipt, f.channels, "ClaimSkipped")).to.deep.equal([[id, 100n, INVALID_SIGNATURE]]);
      expect(await claimsOf(receipt, f.channels)).to.deep.equal([[id, 100n]]);
    });

    it("claimBatch does not even run ecrecover for an s above n / 2", async () => {
      // A real signature cannot have its twin's s in (n/2, 2^255) in practice, so the batch's high-s
      // guard is observed through gas: an item with s = n/2 + 1 skips the 3,000-gas ecrecover that
      // an item with s = n/2 - 1 pays. Both are skipped as InvalidSignature; the calldata costs the same.
      const id = await openChannel(f);
      const { r } = splitSignature(await signVoucher(f.session, f.domain, id, 100n));
      const low = rawClaimItem(id, 100n, r, HALF_N - 1n);
      const high = rawClaimItem(id, 100n, r, HALF_N + 1n);
      for (const item of [low, high]) {
        await expect(f.channels.claimBatch(item)).to.emit(f.channels, "ClaimSkipped").withArgs(id, 100n, 4n);
      }
      const gasLow = await f.channels.claimBatch.estimateGas(low);
      const gasHigh = await f.channels.claimBatch.estimateGas(high);
      expect(gasLow - gasHigh).to.be.greaterThanOrEqual(3000n);
      expect(gasLow - gasHigh).to.be.lessThan(4000n);
    });

    it("signatures by anyone but the channel's signer are refused, including the payer's and the payee's", async () => {
      const id = await openChannel(f);
      for (const signer of [f.payer, f.payee, f.attacker]) {
        const sig = await signVoucher(signer, f.domain, id, 100n);
        await expect(f.channels.claim(id, 100n, sig))
          .to.be.revertedWithCustomError(f.channels, "PaymentChannelsInvalidSignature")
          .withArgs(id);
        await expect(f.channels.claimBatch(claimItem(id, 100n, compactSignature(sig))))
          .to.emit(f.channels, "ClaimSkipped")
          .withArgs(id, 100n, INVALID_SIGNATURE);
      }
      expect((await f.channels.getChannel(id)).claimed).to.equal(0n);
    });

    it("an all-zero signature never matches (ecrecover's zero address is not a signer)", async () => {
      const id = await openChannel(f);
      await expect(f.channels.claim(id, 1n, ethers.concat([ethers.ZeroHash, ethers.ZeroHash, "0x1b"])))
        .to.be.revertedWithCustomError(f.channels, "PaymentChannelsInvalidSignature")
        .withArgs(id);
      await expect(f.channels.claimBatch(rawClaimItem(id, 1n, ethers.ZeroHash, 0n)))
        .to.emit(f.channels, "ClaimSkipped")
        .withArgs(id, 1n, INVALID_SIGNATURE);
    });
  });

  describe("re-entrancy through the token", () => {
    let token: MockReentrantToken;
    let tokenAddress: string;
    let id: bigint;
    let guardError: string;

    beforeEach(async () => {
      token = await deploy<MockReentrantToken>("MockReentrantToken");
      tokenAddress = await token.getAddress();
      await token.mint(f.payer.address, INITIAL_BALANCE);
      await token.connect(f.payer).approve(f.channelsAddress, ethers.MaxUint256);
      id = await openChannel(f, { token: tokenAddress });
      await token.connect(f.payer).approve(f.channelsAddress, ethers.MaxUint256);
      guardError = f.channels.interface.encodeErrorResult("ReentrancyGuardReentrantCall", []);
    });

    /** Calldata for each guarded function, with arguments that would otherwise be acceptable. */
    async function guardedCalls(): Promise<[string, string][]> {
      const i = f.channels.interface;
      const sig = await signVoucher(f.session, f.domain, id, 10n);
      const auth = {
        validAfter: 0n,
        validBefore: 1n << 48n,
        salt: ethers.ZeroHash,
        v: 27,
        r: ethers.ZeroHash,
        s: ethers.ZeroHash,
      };
      const zero = ethers.ZeroHash;
      return [
        ["open", i.encodeFunctionData("open", [f.payee.address, tokenAddress, f.session.address, DELAY, 1n])],
        [
          "openWithPermit",
          i.encodeFunctionData("openWithPermit", [
            f.payee.address,
            tokenAddress,
            f.session.address,
            DELAY,
            1n,
            0n,
            27,
            zero,
            zero,
          ]),
        ],
        [
          "openWithAuthorization",
          i.encodeFunctionData("openWithAuthorization", [
            f.payer.address,
            f.payee.address,
            f.usdcAddress,
            f.session.address,
            DELAY,
            1n,
            auth,
          ]),
        ],
        ["topUp", i.encodeFunctionData("topUp", [id, 1n])],
        ["topUpWithPermit", i.encodeFunctionData("topUpWithPermit", [id, 1n, 0n, 27, zero, zero])],
        ["topUpWithAuthorization", i.encodeFunctionData("topUpWithAuthorization", [id, 1n, auth])],
        ["claim", i.encodeFunctionData("claim", [id, 10n, sig])],
        ["claimBatch", i.encodeFunctionData("claimBatch", [claimItem(id, 10n, sig)])],
        ["close", i.encodeFunctionData("close", [id, 10n, sig])],
        ["requestWithdrawal", i.encodeFunctionData("requestWithdrawal", [id])],
        ["cancelWithdrawal", i.encodeFunctionData("cancelWithdrawal", [id])],
        ["finalizeWithdrawal", i.encodeFunctionData("finalizeWithdrawal", [id])],
        ["withdrawOwed", i.encodeFunctionData("withdrawOwed", [tokenAddress])],
      ];
    }

    it("every state-changing function refuses a call from inside a deposit transferFrom", async () => {
      let deposit = DEPOSIT;
      for (const [name, data] of await guardedCalls()) {
        await token.arm(Hook.TransferFrom, f.channelsAddress, data);
        await expect(f.channels.connect(f.payer).topUp(id, 7n), name)
          .to.emit(token, "Reentered")
          .withArgs(false, guardError)
          .and.to.emit(f.channels, "ChannelToppedUp")
          .withArgs(id, 7n, deposit + 7n);
        deposit += 7n;
        expect(await token.reentered(), name).to.equal(true);
      }
      const channel = await f.channels.getChannel(id);
      expect(channel.deposit).to.equal(deposit);
      expect(channel.claimed).to.equal(0n);
      expect(channel.withdrawReadyAt).to.equal(0n);
      expect(channel.status).to.equal(1n);
      expect(await token.balanceOf(f.channelsAddress)).to.equal(deposit);
      // No second channel was opened from inside the hook.
      expect(await f.channels.nextChannelId(f.session.address)).to.equal(id + 1n);
    });

    it("every state-changing function refuses a call from inside a payout transfer", async () => {
      let claimed = 0n;
      for (const [name, data] of await guardedCalls()) {
        claimed += 1n;
        const sig = await signVoucher(f.session, f.domain, id, claimed);
        await token.arm(Hook.Transfer, f.channelsAddress, data);
        await expect(f.channels.claim(id, claimed, sig), name)
          .to.emit(token, "Reentered")
          .withArgs(false, guardError)
          .and.to.emit(f.channels, "ChannelClaimed")
          .withArgs(id, claimed);
      }
      const channel = await f.channels.getChannel(id);
      expect(channel.claimed).to.equal(claimed);
      expect(channel.deposit).to.equal(DEPOSIT);
      expect(await token.balanceOf(f.payee.address)).to.equal(claimed);
      expect(await token.balanceOf(f.channelsAddress)).to.equal(DEPOSIT - claimed);
    });

    it("a payee cannot double-claim by re-entering from its payout (claim, claimBatch, close)", async () => {
      const next = await signVoucher(f.session, f.domain, id, 500n);
      const first = await signVoucher(f.session, f.domain, id, 200n);
      await token.arm(
        Hook.Transfer,
        f.channelsAddress,
        f.channels.interface.encodeFunctionData("claimBatch", [claimItem(id, 500n, next)]),
      );
      await expect(f.channels.claim(id, 200n, first))
        .to.emit(token, "Reentered")
        .withArgs(false, guardError);
      expect((await f.channels.getChannel(id)).claimed).to.equal(200n);
      expect(await token.balanceOf(f.payee.address)).to.equal(200n);

      // Closing pays the refund first and the payee last; a re-entrant claim in either transfer fails.
      await token.arm(
        Hook.Transfer,
        f.channelsAddress,
        f.channels.interface.encodeFunctionData("claim", [id, 500n, next]),
      );
      const final = await signVoucher(f.session, f.domain, id, 300n);
      await expect(f.channels.connect(f.payee).close(id, 300n, final))
        .to.emit(token, "Reentered")
        .withArgs(false, guardError)
        .and.to.emit(f.channels, "ChannelClosed")
        .withArgs(id, 300n, DEPOSIT - 300n);
      expect(await token.balanceOf(f.payee.address)).to.equal(300n);
      expect(await token.balanceOf(f.payer.address)).to.equal(INITIAL_BALANCE - 300n);
      expect(await token.balanceOf(f.channelsAddress)).to.equal(0n);
    });

    it("a payer cannot claim twice its refund by re-entering finalizeWithdrawal", async () => {
      await f.channels.connect(f.payer).requestWithdrawal(id);
      await time.increase(DELAY);
      await token.arm(
        Hook.Transfer,
        f.channelsAddress,
        f.channels.interface.encodeFunctionData("finalizeWithdrawal", [id]),
      );
      await expect(f.channels.finalizeWithdrawal(id))
        .to.emit(token, "Reentered")
        .withArgs(false, guardError)
        .and.to.emit(f.channels, "ChannelClosed")
        .withArgs(id, 0n, DEPOSIT);
      expect(await token.balanceOf(f.payer.address)).to.equal(INITIAL_BALANCE);
      expect(await token.balanceOf(f.channelsAddress)).to.equal(0n);
      await expect(f.channels.finalizeWithdrawal(id))
        .to.be.revertedWithCustomError(f.channels, "PaymentChannelsChannelClosed")
        .withArgs(id);
    });
  });

  describe("gasless open front-running", () => {
    const salt = ethers.id("front-run salt");

    async function payerAuthorization() {
      return signOpenAuthorization(f, f.payer, {
        payee: f.payee.address,
        signer: f.session.address,
        withdrawDelay: DELAY,
        amount: DEPOSIT,
        salt,
      });
    }

    it("an attacker cannot change the payee, signer, delay, amount or payer of the payer's authorization", async () => {
      const auth = await payerAuthorization();
      const a = f.attacker.address;
      const variants: [string, Parameters<PaymentChannels["openWithAuthorization"]>][] = [
        ["payee", [f.payer.address, a, f.usdcAddress, f.session.address, DELAY, DEPOSIT, auth]],
        ["signer", [f.payer.address, f.payee.address, f.usdcAddress, a, DELAY, DEPOSIT, auth]],
        ["signer = payer", [f.payer.address, f.payee.address, f.usdcAddress, ethers.ZeroAddress, DELAY, DEPOSIT, auth]],
        ["delay", [f.payer.address, f.payee.address, f.usdcAddress, f.session.address, DELAY + 1, DEPOSIT, auth]],
        ["amount", [f.payer.address, f.payee.address, f.usdcAddress, f.session.address, DELAY, DEPOSIT - 1n, auth]],
        ["payer", [f.other.address, f.payee.address, f.usdcAddress, f.session.address, DELAY, DEPOSIT, auth]],
        [
          "salt",
          [
            f.payer.address,
            f.payee.address,
            f.usdcAddress,
            f.session.address,
            DELAY,
            DEPOSIT,
            { ...auth, salt: ethers.id("x") },
          ],
        ],
      ];
      for (const [label, args] of variants) {
        await expect(
          f.channels.connect(f.attacker).openWithAuthorization(...args),
          label,
        ).to.be.revertedWithCustomError(f.usdc, "MockUSDCInvalidSigner");
      }
      // The attacker cannot redeem it at the token either: only the recipient (the contract) may.
      const nonce = await f.channels.openAuthorizationNonce(f.payee.address, f.session.address, DELAY, salt);
      await expect(
        f.usdc
          .connect(f.attacker)
          .receiveWithAuthorization(
            f.payer.address,
            f.channelsAddress,
            DEPOSIT,
            auth.validAfter,
            auth.validBefore,
            nonce,
            auth.v,
            auth.r,
            auth.s,
          ),
      )
        .to.be.revertedWithCustomError(f.usdc, "MockUSDCCallerMustBePayee")
        .withArgs(f.attacker.address, f.channelsAddress);
      expect(await f.usdc.balanceOf(f.payer.address)).to.equal(INITIAL_BALANCE);
      expect(await f.channels.nextChannelId(f.session.address)).to.equal(channelIdFor(f.session.address as Hex, 0n));
    });

    it("submitting it unchanged opens exactly the payer's channel, and the payer's own submission then fails", async () => {
      const auth = await payerAuthorization();
      const id = await f.channels.nextChannelId(f.session.address);
      await expect(
        f.channels
          .connect(f.attacker)
          .openWithAuthorization(
            f.payer.address,
            f.payee.address,
            f.usdcAddress,
            f.session.address,
            DELAY,
            DEPOSIT,
            auth,
          ),
      )
        .to.emit(f.channels, "ChannelOpened")
        .withArgs(id, f.payer.address, f.payee.address, f.usdcAddress, DEPOSIT, DELAY);
      const c = await f.channels.getChannel(id);
      expect([c.payer, c.payee, c.token, c.signer, c.deposit, c.withdrawDelay, c.status]).to.deep.equal([
        f.payer.address,
        f.payee.address,
        f.usdcAddress,
        f.session.address,
        DEPOSIT,
        BigInt(DELAY),
        1n,
      ]);
      expect(await f.usdc.balanceOf(f.attacker.address)).to.equal(0n);
      expect(await f.usdc.balanceOf(f.payer.address)).to.equal(INITIAL_BALANCE - DEPOSIT);
      const nonce = await f.channels.openAuthorizationNonce(f.payee.address, f.session.address, DELAY, salt);
      await expect(
        f.channels
          .connect(f.relayer)
          .openWithAuthorization(
            f.payer.address,
            f.payee.address,
            f.usdcAddress,
            f.session.address,
            DELAY,
            DEPOSIT,
            auth,
          ),
      )
        .to.be.revertedWithCustomError(f.usdc, "MockUSDCAuthorizationUsed")
        .withArgs(f.payer.address, nonce);
      // Only the attacker's gas was spent; the payer can still exit with the full deposit.
      await f.channels.connect(f.payer).requestWithdrawal(id);
      await time.increase(DELAY);
      await f.channels.finalizeWithdrawal(id);
      expect(await f.usdc.balanceOf(f.payer.address)).to.equal(INITIAL_BALANCE);
    });

    it("a top-up authorization cannot be used to open a channel", async () => {
      const id = await openChannel(f);
      const topUpNonce = await f.channels.topUpAuthorizationNonce(id, salt);
      const openNonce = await f.channels.openAuthorizationNonce(f.payee.address, f.session.address, DELAY, salt);
      expect(topUpNonce).to.not.equal(openNonce);
      const auth = await signTopUpAuthorization(f, f.payer, id, DEPOSIT, salt);
      await expect(
        f.channels
          .connect(f.attacker)
          .openWithAuthorization(
            f.payer.address,
            f.payee.address,
            f.usdcAddress,
            f.session.address,
            DELAY,
            DEPOSIT,
            auth,
          ),
      ).to.be.revertedWithCustomError(f.usdc, "MockUSDCInvalidSigner");
    });
  });

  describe("closed channels and the withdrawal delay", () => {
    it("nothing can be claimed after finalizeWithdrawal, even with a voucher signed before", async () => {
      const id = await openChannel(f);
      const voucher = await signVoucher(f.session, f.domain, id, 100n);
      await f.channels.connect(f.payer).requestWithdrawal(id);
      await time.increase(DELAY);
      await f.channels.finalizeWithdrawal(id);
      await expect(f.channels.claim(id, 100n, voucher))
        .to.be.revertedWithCustomError(f.channels, "PaymentChannelsChannelClosed")
        .withArgs(id);
      await expect(f.channels.claimBatch(claimItem(id, 100n, voucher)))
        .to.emit(f.channels, "ClaimSkipped")
        .withArgs(id, 100n, CHANNEL_CLOSED);
      await expect(f.channels.connect(f.payee).close(id, 100n, voucher))
        .to.be.revertedWithCustomError(f.channels, "PaymentChannelsChannelClosed")
        .withArgs(id);
      expect(await f.usdc.balanceOf(f.payee.address)).to.equal(0n);
      expect(await f.usdc.balanceOf(f.channelsAddress)).to.equal(0n);
    });

    it("the payer cannot finalize before the delay, even one second early", async () => {
      const id = await openChannel(f, { withdrawDelay: 15 * 60 });
      await f.channels.connect(f.payer).requestWithdrawal(id);
      const readyAt = (await f.channels.getChannel(id)).withdrawReadyAt;
      await expect(f.channels.connect(f.payer).finalizeWithdrawal(id)).to.be.revertedWithCustomError(
        f.channels,
        "PaymentChannelsWithdrawalNotReady",
      );
      // Meanwhile the payee claims what it is owed.
      await f.channels.claim(id, 40n, await signVoucher(f.session, f.domain, id, 40n));
      await time.setNextBlockTimestamp(readyAt - 1n);
      await expect(f.channels.connect(f.payer).finalizeWithdrawal(id))
        .to.be.revertedWithCustomError(f.channels, "PaymentChannelsWithdrawalNotReady")
        .withArgs(id, readyAt, readyAt - 1n);
      await time.setNextBlockTimestamp(readyAt);
      await expect(f.channels.finalizeWithdrawal(id))
        .to.emit(f.channels, "ChannelClosed")
        .withArgs(id, 40n, DEPOSIT - 40n);
    });

    it("cancelling and re-requesting restarts the full delay", async () => {
      const id = await openChannel(f);
      await f.channels.connect(f.payer).requestWithdrawal(id);
      await time.increase(DELAY - 10);
      await f.channels.connect(f.payer).cancelWithdrawal(id);
      await f.channels.connect(f.payer).requestWithdrawal(id);
      const readyAt = (await f.channels.getChannel(id)).withdrawReadyAt;
      expect(readyAt).to.equal(BigInt(await time.latest()) + BigInt(DELAY));
      await time.increase(20);
      await expect(f.channels.finalizeWithdrawal(id)).to.be.revertedWithCustomError(
        f.channels,
        "PaymentChannelsWithdrawalNotReady",
      );
    });
  });

  describe("fee-on-transfer tokens", () => {
    it("a channel is credited only with what arrives, so it stays fully backed", async () => {
      const token = await deploy<MockFeeOnTransferToken>("MockFeeOnTransferToken");
      const tokenAddress = await token.getAddress();
      await token.mint(f.payer.address, 10_000_000n);
      const id = await f.channels.nextChannelId(f.session.address);
      await token.connect(f.payer).approve(f.channelsAddress, ethers.MaxUint256);
      await expect(
        f.channels.connect(f.payer).open(f.payee.address, tokenAddress, f.session.address, DELAY, 1_000_000n),
      )
        .to.emit(f.channels, "ChannelOpened")
        .withArgs(id, f.payer.address, f.payee.address, tokenAddress, 990_000n, DELAY);
      await expect(f.channels.connect(f.payer).topUp(id, 100_000n))
        .to.emit(f.channels, "ChannelToppedUp")
        .withArgs(id, 99_000n, 1_089_000n);
      expect(await token.balanceOf(f.channelsAddress)).to.equal(1_089_000n);
      expect((await f.channels.getChannel(id)).deposit).to.equal(1_089_000n);

      // A voucher for what the payer sent (before fees) exceeds what the channel holds.
      await expect(f.channels.claim(id, 1_100_000n, await signVoucher(f.session, f.domain, id, 1_100_000n)))
        .to.be.revertedWithCustomError(f.channels, "PaymentChannelsAmountExceedsDeposit")
        .withArgs(id, 1_100_000n, 1_089_000n);
      await f.channels.claim(id, 1_089_000n, await signVoucher(f.session, f.domain, id, 1_089_000n));
      expect(await token.balanceOf(f.channelsAddress)).to.equal(0n);
      expect(await token.balanceOf(f.payee.address)).to.equal(1_089_000n - 10_890n); // the token's fee on payout

      // A token that delivers nothing opens nothing.
      await token.setFeeBps(10_000);
      await expect(f.channels.connect(f.payer).open(f.payee.address, tokenAddress, f.session.address, DELAY, 1_000n))
        .to.be.revertedWithCustomError(f.channels, "PaymentChannelsInvalidAmount")
        .withArgs(0n);
    });
  });
});
