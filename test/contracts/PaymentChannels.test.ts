import { expect } from "chai";
import { ethers, network } from "hardhat";
import { time } from "@nomicfoundation/hardhat-network-helpers";
import type { BaseContract, Signer } from "ethers";
import {
  openAuthorizationNonce as tsOpenAuthorizationNonce,
  topUpAuthorizationNonce as tsTopUpAuthorizationNonce,
} from "../../src/protocol/authorization";
import {
  channelIdFor,
  MAX_AMOUNT,
  VOUCHER_TYPE_STRING,
  voucherDigest as tsVoucherDigest,
} from "../../src/protocol/voucher";
import type {
  MockBlocklistToken,
  MockERC1271Wallet,
  MockFalseReturnToken,
  MockFeeOnTransferToken,
  MockUSDC,
} from "../../typechain-types";
import { setSignerNonce } from "../helpers/evm";
import {
  claimsOf,
  batch,
  claimItem,
  compactSignature,
  DELAY,
  DEPOSIT,
  deployFixture,
  eventNamesOf,
  eventsOf,
  highSTwin,
  INITIAL_BALANCE,
  joinSignature,
  openChannel,
  openedChannelId,
  receiptOf,
  signOpenAuthorization,
  signPermit,
  signTopUpAuthorization,
  signVoucher,
  splitSignature,
  usdcDomain,
  type Fixture,
  type Hex,
} from "../helpers/fixture";

const MIN_DELAY = 15 * 60;
const MAX_DELAY = 30 * 24 * 3600;
const SALT = ethers.id("salt-1");
const FAR_FUTURE = 1n << 48n;

enum SkipReason {
  UnknownChannel,
  ChannelClosed,
  StaleAmount,
  AmountExceedsDeposit,
  InvalidSignature,
}

enum WalletMode {
  Honest,
  WrongMagic,
  Revert,
  BurnGas,
  LongReturn,
}

const STATUS_OPEN = 1n;
const STATUS_CLOSED = 2n;

/** getChannel as a plain object. */
async function channelOf(f: Fixture, id: bigint) {
  const c = await f.channels.getChannel(id);
  return {
    payer: c.payer,
    payee: c.payee,
    token: c.token,
    signer: c.signer,
    deposit: c.deposit,
    claimed: c.claimed,
    withdrawDelay: c.withdrawDelay,
    withdrawReadyAt: c.withdrawReadyAt,
    status: c.status,
  };
}

/** Transfers `token` emitted from `from` in a receipt, as [to, value] pairs. */
async function transfersFrom(
  receipt: Awaited<ReturnType<typeof receiptOf>>,
  token: BaseContract,
  from: string,
): Promise<[string, bigint][]> {
  return (await eventsOf(receipt, token, "Transfer"))
    .filter(([src]) => src === from)
    .map(([, to, value]) => [to as string, value as bigint]);
}

async function deploy<T>(name: string, ...args: unknown[]): Promise<T> {
  const contract = await ethers.deployContract(name, args);
  await contract.waitForDeployment();
  return contract as unknown as T;
}

/** A session key whose voucher for (`channelId`, some amount) has the wanted v, with that amount and signature. */
async function voucherWithV(f: Fixture, channelId: bigint, v: 27 | 28): Promise<{ amount: bigint; signature: Hex }> {
  for (let amount = 1n; amount < 64n; amount++) {
    const signature = await signVoucher(f.session, f.domain, channelId, amount);
    if (splitSignature(signature).v === v) return { amount, signature };
  }
  throw new Error(`no voucher with v = ${v} among 63 amounts`);
}

describe("PaymentChannels", () => {
  let f: Fixture;

  beforeEach(async () => {
    f = await deployFixture();
  });

  describe("constants and views", () => {
    it("exposes the documented constants", async () => {
      expect(await f.channels.MIN_WITHDRAW_DELAY()).to.equal(MIN_DELAY);
      expect(await f.channels.MAX_WITHDRAW_DELAY()).to.equal(MAX_DELAY);
      expect(await f.channels.BATCH_ITEM_SIZE()).to.equal(99n);
      expect(await f.channels.ERC1271_GAS_LIMIT()).to.equal(100_000n);
      expect(await f.channels.VOUCHER_TYPEHASH()).to.equal(ethers.id(VOUCHER_TYPE_STRING));
    });

    it("domainSeparator is the EIP-712 hash of {paychan, 1, chainId, contract}", async () => {
      expect(f.chainId).to.equal(31337);
      expect(await f.channels.domainSeparator()).to.equal(
        ethers.TypedDataEncoder.hashDomain({
          name: "paychan",
          version: "1",
          chainId: f.chainId,
          verifyingContract: f.channelsAddress,
        }),
      );
    });

    it("voucherDigest equals the off-chain digest of src/protocol/voucher.ts and ethers", async () => {
      const cases: [bigint, bigint][] = [
        [0n, 0n],
        [channelIdFor(f.session.address as Hex, 7n), 123_456n],
        [(1n << 184n) - 1n, MAX_AMOUNT],
      ];
      for (const [channelId, amount] of cases) {
        const onChain = await f.channels.voucherDigest(channelId, amount);
        expect(onChain).to.equal(tsVoucherDigest(f.domain, { channelId, cumulativeAmount: amount }));
        expect(onChain).to.equal(
          ethers.TypedDataEncoder.hash(
            f.domain,
            {
              Voucher: [
                { name: "channelId", type: "uint256" },
                { name: "cumulativeAmount", type: "uint96" },
              ],
            },
            { channelId, cumulativeAmount: amount },
          ),
        );
      }
      expect(await f.channels.voucherDigest(1n, 2n)).to.not.equal(await f.channels.voucherDigest(1n, 3n));
    });

    it("openAuthorizationNonce and topUpAuthorizationNonce match src/protocol/authorization.ts", async () => {
      const params = {
        payee: f.payee.address as Hex,
        signer: f.session.address as Hex,
        withdrawDelay: DELAY,
        salt: SALT,
      };
      expect(await f.channels.openAuthorizationNonce(params.payee, params.signer, params.withdrawDelay, SALT)).to.equal(
        tsOpenAuthorizationNonce(params as Parameters<typeof tsOpenAuthorizationNonce>[0]),
      );
      expect(
        await f.channels.openAuthorizationNonce(params.payee, params.signer, params.withdrawDelay + 1, SALT),
      ).to.not.equal(tsOpenAuthorizationNonce(params as Parameters<typeof tsOpenAuthorizationNonce>[0]));
      expect(await f.channels.topUpAuthorizationNonce(42n, SALT)).to.equal(tsTopUpAuthorizationNonce(42n, SALT as Hex));
      expect(await f.channels.topUpAuthorizationNonce(43n, SALT)).to.not.equal(
        tsTopUpAuthorizationNonce(42n, SALT as Hex),
      );
    });

    it("nextChannelId is signer << 24 | nonce and counts per signer", async () => {
      const s = f.session.address;
      expect(await f.channels.nextChannelId(s)).to.equal((BigInt(s) << 24n) | 0n);
      const id0 = await openChannel(f);
      expect(id0).to.equal(BigInt(s) << 24n);
      expect(await f.channels.nextChannelId(s)).to.equal((BigInt(s) << 24n) | 1n);
      const id1 = await openChannel(f);
      expect(id1).to.equal((BigInt(s) << 24n) | 1n);
      // Another signer's counter is independent.
      expect(await f.channels.nextChannelId(f.payer.address)).to.equal(BigInt(f.payer.address) << 24n);
    });

    it("getChannel of an unknown id is all zero", async () => {
      expect(await channelOf(f, 12345n)).to.deep.equal({
        payer: ethers.ZeroAddress,
        payee: ethers.ZeroAddress,
        token: ethers.ZeroAddress,
        signer: ethers.ZeroAddress,
        deposit: 0n,
        claimed: 0n,
        withdrawDelay: 0n,
        withdrawReadyAt: 0n,
        status: 0n,
      });
    });

    it("ids at or above 2^184 never alias an issued channel", async () => {
      const id = await openChannel(f);
      for (const alias of [id | (1n << 184n), id | (1n << 255n)]) {
        const c = await channelOf(f, alias);
        expect(c.status).to.equal(0n);
        expect(c.deposit).to.equal(0n);
        expect(c.signer).to.equal(ethers.ZeroAddress);
        const sig = await signVoucher(f.session, f.domain, alias, 1n);
        await expect(f.channels.claim(alias, 1n, sig))
          .to.be.revertedWithCustomError(f.channels, "PaymentChannelsUnknownChannel")
          .withArgs(alias);
      }
    });

    it("owed is zero for an account with no failed payout", async () => {
      expect(await f.channels.owed(f.payee.address, f.usdcAddress)).to.equal(0n);
    });
  });

  describe("open", () => {
    it("pulls the deposit, stores the channel and emits ChannelOpened", async () => {
      await f.usdc.connect(f.payer).approve(f.channelsAddress, DEPOSIT);
      const id = await f.channels.nextChannelId(f.session.address);
      await expect(f.channels.connect(f.payer).open(f.payee.address, f.usdcAddress, f.session.address, DELAY, DEPOSIT))
        .to.emit(f.channels, "ChannelOpened")
        .withArgs(id, f.payer.address, f.payee.address, f.usdcAddress, DEPOSIT, DELAY)
        .and.to.emit(f.usdc, "Transfer")
        .withArgs(f.payer.address, f.channelsAddress, DEPOSIT);
      expect(await channelOf(f, id)).to.deep.equal({
        payer: f.payer.address,
        payee: f.payee.address,
        token: f.usdcAddress,
        signer: f.session.address,
        deposit: DEPOSIT,
        claimed: 0n,
        withdrawDelay: BigInt(DELAY),
        withdrawReadyAt: 0n,
        status: STATUS_OPEN,
      });
      expect(await f.usdc.balanceOf(f.channelsAddress)).to.equal(DEPOSIT);
      expect(await f.usdc.balanceOf(f.payer.address)).to.equal(INITIAL_BALANCE - DEPOSIT);
    });

    it("a zero signer means the payer signs", async () => {
      const id = await openChannel(f, { signer: ethers.ZeroAddress });
      expect(id).to.equal(BigInt(f.payer.address) << 24n);
      expect((await channelOf(f, id)).signer).to.equal(f.payer.address);
      const sig = await signVoucher(f.payer, f.domain, id, 10n);
      await expect(f.channels.claim(id, 10n, sig))
        .to.emit(f.channels, "ChannelClaimed")
        .withArgs(id, 10n);
    });

    it("keeps payee and token of every channel apart when routes are shared or distinct", async () => {
      const usdc2 = await deploy<MockUSDC>("MockUSDC");
      await usdc2.mint(f.payer.address, DEPOSIT);
      const a = await openChannel(f);
      const b = await openChannel(f, { payee: f.other.address });
      const c = await openChannel(f, { token: await usdc2.getAddress() });
      const d = await openChannel(f);
      expect([(await channelOf(f, a)).payee, (await channelOf(f, a)).token]).to.deep.equal([
        f.payee.address,
        f.usdcAddress,
      ]);
      expect([(await channelOf(f, b)).payee, (await channelOf(f, b)).token]).to.deep.equal([
        f.other.address,
        f.usdcAddress,
      ]);
      expect([(await channelOf(f, c)).payee, (await channelOf(f, c)).token]).to.deep.equal([
        f.payee.address,
        await usdc2.getAddress(),
      ]);
      expect([(await channelOf(f, d)).payee, (await channelOf(f, d)).token]).to.deep.equal([
        f.payee.address,
        f.usdcAddress,
      ]);
    });

    it("keeps each channel's withdraw delay when one payee and token use several delays", async () => {
      const short = await openChannel(f, { withdrawDelay: MIN_DELAY });
      const long = await openChannel(f, { withdrawDelay: MAX_DELAY });
      const again = await openChannel(f, { withdrawDelay: MIN_DELAY });
      expect((await channelOf(f, short)).withdrawDelay).to.equal(BigInt(MIN_DELAY));
      expect((await channelOf(f, long)).withdrawDelay).to.equal(BigInt(MAX_DELAY));
      expect((await channelOf(f, again)).withdrawDelay).to.equal(BigInt(MIN_DELAY));
      const at = (await time.latest()) + 100;
      await time.setNextBlockTimestamp(at);
      await expect(f.channels.connect(f.payer).requestWithdrawal(long))
        .to.emit(f.channels, "WithdrawalRequested")
        .withArgs(long, at + MAX_DELAY);
    });

    it("a signer shared by two payers: each channel keeps its own payer for top-ups, exits and refunds", async () => {
      // The payer's word is written only for a payer other than the signer's first one.
      const first = await openChannel(f);
      const second = await openChannel(f, { payer: f.other });
      const third = await openChannel(f);
      expect((await channelOf(f, first)).payer).to.equal(f.payer.address);
      expect((await channelOf(f, second)).payer).to.equal(f.other.address);
      expect((await channelOf(f, third)).payer).to.equal(f.payer.address);
      await f.usdc.connect(f.payer).approve(f.channelsAddress, 5n);
      await expect(f.channels.connect(f.payer).topUp(second, 5n))
        .to.be.revertedWithCustomError(f.channels, "PaymentChannelsUnauthorized")
        .withArgs(second, f.payer.address);
      await expect(f.channels.connect(f.payer).requestWithdrawal(second))
        .to.be.revertedWithCustomError(f.channels, "PaymentChannelsUnauthorized")
        .withArgs(second, f.payer.address);
      await expect(f.channels.connect(f.other).requestWithdrawal(first))
        .to.be.revertedWithCustomError(f.channels, "PaymentChannelsUnauthorized")
        .withArgs(first, f.other.address);
      await f.usdc.connect(f.other).approve(f.channelsAddress, 5n);
      await expect(f.channels.connect(f.other).topUp(second, 5n)).to.emit(f.channels, "ChannelToppedUp");
      await f.channels.connect(f.other).requestWithdrawal(second);
      await time.increase(DELAY);
      const before = await f.usdc.balanceOf(f.other.address);
      await expect(f.channels.connect(f.attacker).finalizeWithdrawal(second))
        .to.emit(f.channels, "ChannelClosed")
        .withArgs(second, 0n, DEPOSIT + 5n);
      expect(await f.usdc.balanceOf(f.other.address)).to.equal(before + DEPOSIT + 5n);
    });

    it("accepts the withdraw delay bounds and refuses values outside them", async () => {
      await f.usdc.connect(f.payer).approve(f.channelsAddress, ethers.MaxUint256);
      const open = (delay: number) =>
        f.channels.connect(f.payer).open(f.payee.address, f.usdcAddress, f.session.address, delay, 1n);
      await expect(open(MIN_DELAY - 1))
        .to.be.revertedWithCustomError(f.channels, "PaymentChannelsInvalidWithdrawDelay")
        .withArgs(MIN_DELAY - 1);
      await expect(open(MAX_DELAY + 1))
        .to.be.revertedWithCustomError(f.channels, "PaymentChannelsInvalidWithdrawDelay")
        .withArgs(MAX_DELAY + 1);
      await expect(open(MIN_DELAY)).to.emit(f.channels, "ChannelOpened");
      await expect(open(MAX_DELAY)).to.emit(f.channels, "ChannelOpened");
    });

    it("refuses a zero payee", async () => {
      await f.usdc.connect(f.payer).approve(f.channelsAddress, DEPOSIT);
      await expect(
        f.channels.connect(f.payer).open(ethers.ZeroAddress, f.usdcAddress, f.session.address, DELAY, DEPOSIT),
      ).to.be.revertedWithCustomError(f.channels, "PaymentChannelsZeroAddress");
    });

    it("refuses the zero token address even when code answers there", async () => {
      // With no code at address zero the token calls themselves revert first; put a token there so the
      // contract's own zero-token check is what refuses.
      const template = await deploy<MockFeeOnTransferToken>("MockFeeOnTransferToken");
      await network.provider.send("hardhat_setCode", [
        ethers.ZeroAddress,
        await ethers.provider.getCode(await template.getAddress()),
      ]);
      const zeroToken = (await ethers.getContractAt(
        "MockFeeOnTransferToken",
        ethers.ZeroAddress,
      )) as unknown as MockFeeOnTransferToken;
      await zeroToken.mint(f.payer.address, DEPOSIT);
      await zeroToken.connect(f.payer).approve(f.channelsAddress, DEPOSIT);
      await expect(
        f.channels.connect(f.payer).open(f.payee.address, ethers.ZeroAddress, f.session.address, DELAY, DEPOSIT),
      ).to.be.revertedWithCustomError(f.channels, "PaymentChannelsZeroAddress");
      await network.provider.send("hardhat_setCode", [ethers.ZeroAddress, "0x"]);
    });

    it("refuses a zero amount and a deposit above 2^96 - 1", async () => {
      await f.usdc.mint(f.payer.address, 1n << 97n);
      await f.usdc.connect(f.payer).approve(f.channelsAddress, ethers.MaxUint256);
      const open = (amount: bigint) =>
        f.channels.connect(f.payer).open(f.payee.address, f.usdcAddress, f.session.address, DELAY, amount);
      await expect(open(0n)).to.be.revertedWithCustomError(f.channels, "PaymentChannelsInvalidAmount").withArgs(0n);
      await expect(open(MAX_AMOUNT + 1n))
        .to.be.revertedWithCustomError(f.channels, "PaymentChannelsInvalidAmount")
        .withArgs(MAX_AMOUNT + 1n);
      const id = await f.channels.nextChannelId(f.session.address);
      await expect(open(MAX_AMOUNT))
        .to.emit(f.channels, "ChannelOpened")
        .withArgs(id, f.payer.address, f.payee.address, f.usdcAddress, MAX_AMOUNT, DELAY);
    });

    it("reverts without an allowance", async () => {
      await expect(f.channels.connect(f.payer).open(f.payee.address, f.usdcAddress, f.session.address, DELAY, DEPOSIT))
        .to.be.revertedWithCustomError(f.usdc, "ERC20InsufficientAllowance")
        .withArgs(f.channelsAddress, 0n, DEPOSIT);
    });

    it("issues the last nonce 2^24 - 1, then refuses the signer with SignerExhausted", async () => {
      // Opening 2^24 channels is out of reach for a test, so the signer's counter is set in storage.
      await setSignerNonce(f.channelsAddress, f.session.address, (1n << 24n) - 1n, f.payer.address);
      expect(await f.channels.nextChannelId(f.session.address)).to.equal(
        (BigInt(f.session.address) << 24n) | 0xffffffn,
      );
      const last = await openChannel(f);
      expect(last).to.equal((BigInt(f.session.address) << 24n) | 0xffffffn);
      expect((await channelOf(f, last)).signer).to.equal(f.session.address);
      await f.usdc.connect(f.payer).approve(f.channelsAddress, DEPOSIT);
      await expect(f.channels.connect(f.payer).open(f.payee.address, f.usdcAddress, f.session.address, DELAY, DEPOSIT))
        .to.be.revertedWithCustomError(f.channels, "PaymentChannelsSignerExhausted")
        .withArgs(f.session.address);
      // Other signers are unaffected.
      await expect(openChannel(f, { signer: f.payer.address })).to.not.be.reverted;
    });
  });

  describe("openWithPermit", () => {
    async function permit(value: bigint, deadline = FAR_FUTURE) {
      const nonce = await f.usdc.nonces(f.payer.address);
      return signPermit(f.payer, usdcDomain(f.chainId, f.usdcAddress), f.channelsAddress, value, nonce, deadline);
    }

    it("opens with a permit instead of an approval", async () => {
      const { v, r, s } = await permit(DEPOSIT);
      const id = await f.channels.nextChannelId(f.session.address);
      await expect(
        f.channels
          .connect(f.payer)
          .openWithPermit(f.payee.address, f.usdcAddress, f.session.address, DELAY, DEPOSIT, FAR_FUTURE, v, r, s),
      )
        .to.emit(f.channels, "ChannelOpened")
        .withArgs(id, f.payer.address, f.payee.address, f.usdcAddress, DEPOSIT, DELAY);
      expect(await f.usdc.nonces(f.payer.address)).to.equal(1n);
      expect(await f.usdc.allowance(f.payer.address, f.channelsAddress)).to.equal(0n);
      expect((await channelOf(f, id)).deposit).to.equal(DEPOSIT);
    });

    it("ignores a front-run permit and uses the allowance it created", async () => {
      const { v, r, s } = await permit(DEPOSIT);
      // The attacker submits the permit first (it is public in the mempool).
      await f.usdc.connect(f.attacker).permit(f.payer.address, f.channelsAddress, DEPOSIT, FAR_FUTURE, v, r, s);
      const id = await f.channels.nextChannelId(f.session.address);
      await expect(
        f.channels
          .connect(f.payer)
          .openWithPermit(f.payee.address, f.usdcAddress, f.session.address, DELAY, DEPOSIT, FAR_FUTURE, v, r, s),
      )
        .to.emit(f.channels, "ChannelOpened")
        .withArgs(id, f.payer.address, f.payee.address, f.usdcAddress, DEPOSIT, DELAY);
      expect(await f.usdc.balanceOf(f.channelsAddress)).to.equal(DEPOSIT);
    });

    it("reverts when the permit fails and there is no allowance", async () => {
      const { v, r, s } = await permit(DEPOSIT, 1n); // expired deadline
      await expect(
        f.channels
          .connect(f.payer)
          .openWithPermit(f.payee.address, f.usdcAddress, f.session.address, DELAY, DEPOSIT, 1n, v, r, s),
      )
        .to.be.revertedWithCustomError(f.usdc, "ERC20InsufficientAllowance")
        .withArgs(f.channelsAddress, 0n, DEPOSIT);
    });

    it("works with a token that has no permit at all, through a prior approval", async () => {
      const token = await deploy<MockFeeOnTransferToken>("MockFeeOnTransferToken");
      await token.setFeeBps(0);
      await token.mint(f.payer.address, DEPOSIT);
      await token.connect(f.payer).approve(f.channelsAddress, DEPOSIT);
      await expect(
        f.channels
          .connect(f.payer)
          .openWithPermit(
            f.payee.address,
            await token.getAddress(),
            f.session.address,
            DELAY,
            DEPOSIT,
            FAR_FUTURE,
            27,
            ethers.ZeroHash,
            ethers.ZeroHash,
          ),
      ).to.emit(f.channels, "ChannelOpened");
    });
  });

  describe("openWithAuthorization", () => {
    it("lets a relayer open a channel funded by the payer's EIP-3009 signature", async () => {
      const auth = await signOpenAuthorization(f, f.payer, {
        payee: f.payee.address,
        signer: f.session.address,
        withdrawDelay: DELAY,
        amount: DEPOSIT,
        salt: SALT,
      });
      const id = await f.channels.nextChannelId(f.session.address);
      const nonce = await f.channels.openAuthorizationNonce(f.payee.address, f.session.address, DELAY, SALT);
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
        .to.emit(f.channels, "ChannelOpened")
        .withArgs(id, f.payer.address, f.payee.address, f.usdcAddress, DEPOSIT, DELAY)
        .and.to.emit(f.usdc, "AuthorizationUsed")
        .withArgs(f.payer.address, nonce);
      expect(await channelOf(f, id)).to.deep.include({ payer: f.payer.address, deposit: DEPOSIT, status: STATUS_OPEN });
      expect(await f.usdc.balanceOf(f.payer.address)).to.equal(INITIAL_BALANCE - DEPOSIT);
      expect(await f.usdc.balanceOf(f.relayer.address)).to.equal(0n);
      expect(await f.usdc.authorizationState(f.payer.address, nonce)).to.equal(true);
    });

    it("a zero signer in the authorization means the payer signs", async () => {
      const auth = await signOpenAuthorization(f, f.payer, {
        payee: f.payee.address,
        signer: ethers.ZeroAddress,
        withdrawDelay: DELAY,
        amount: DEPOSIT,
        salt: SALT,
      });
      const tx = await f.channels
        .connect(f.relayer)
        .openWithAuthorization(
          f.payer.address,
          f.payee.address,
          f.usdcAddress,
          ethers.ZeroAddress,
          DELAY,
          DEPOSIT,
          auth,
        );
      const id = await openedChannelId(f.channels, tx);
      expect((await channelOf(f, id)).signer).to.equal(f.payer.address);
    });

    it("refuses a replayed or expired authorization", async () => {
      const params = {
        payee: f.payee.address,
        signer: f.session.address,
        withdrawDelay: DELAY,
        amount: DEPOSIT,
        salt: SALT,
      };
      const auth = await signOpenAuthorization(f, f.payer, params);
      const open = () =>
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
          );
      await open();
      const nonce = await f.channels.openAuthorizationNonce(f.payee.address, f.session.address, DELAY, SALT);
      await expect(open())
        .to.be.revertedWithCustomError(f.usdc, "MockUSDCAuthorizationUsed")
        .withArgs(f.payer.address, nonce);

      const now = BigInt(await time.latest());
      const expired = await signOpenAuthorization(f, f.payer, { ...params, salt: ethers.id("2"), validBefore: now });
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
            expired,
          ),
      )
        .to.be.revertedWithCustomError(f.usdc, "MockUSDCAuthorizationExpired")
        .withArgs(now);
    });

    it("applies the open checks to an authorized open", async () => {
      const auth = await signOpenAuthorization(f, f.payer, {
        payee: f.payee.address,
        signer: f.session.address,
        withdrawDelay: 60,
        amount: DEPOSIT,
        salt: SALT,
      });
      await expect(
        f.channels
          .connect(f.relayer)
          .openWithAuthorization(f.payer.address, f.payee.address, f.usdcAddress, f.session.address, 60, DEPOSIT, auth),
      )
        .to.be.revertedWithCustomError(f.channels, "PaymentChannelsInvalidWithdrawDelay")
        .withArgs(60);
    });
  });

  describe("topUp", () => {
    let id: bigint;
    beforeEach(async () => {
      id = await openChannel(f);
    });

    it("adds to the deposit and emits ChannelToppedUp with the new total", async () => {
      await f.usdc.connect(f.payer).approve(f.channelsAddress, 500n);
      await expect(f.channels.connect(f.payer).topUp(id, 500n))
        .to.emit(f.channels, "ChannelToppedUp")
        .withArgs(id, 500n, DEPOSIT + 500n);
      expect((await channelOf(f, id)).deposit).to.equal(DEPOSIT + 500n);
      expect(await f.usdc.balanceOf(f.channelsAddress)).to.equal(DEPOSIT + 500n);
    });

    it("is for the payer only", async () => {
      await f.usdc.connect(f.other).approve(f.channelsAddress, 500n);
      await expect(f.channels.connect(f.other).topUp(id, 500n))
        .to.be.revertedWithCustomError(f.channels, "PaymentChannelsUnauthorized")
        .withArgs(id, f.other.address);
    });

    it("refuses unknown and closed channels", async () => {
      await expect(f.channels.connect(f.payer).topUp(id + 1n, 1n))
        .to.be.revertedWithCustomError(f.channels, "PaymentChannelsUnknownChannel")
        .withArgs(id + 1n);
      await f.channels.connect(f.payee).close(id, 0n, "0x");
      await expect(f.channels.connect(f.payer).topUp(id, 1n))
        .to.be.revertedWithCustomError(f.channels, "PaymentChannelsChannelClosed")
        .withArgs(id);
    });

    it("is refused while a withdrawal is pending, and allowed again after cancelling", async () => {
      await f.usdc.connect(f.payer).approve(f.channelsAddress, 500n);
      await f.channels.connect(f.payer).requestWithdrawal(id);
      const { withdrawReadyAt } = await channelOf(f, id);
      await expect(f.channels.connect(f.payer).topUp(id, 500n))
        .to.be.revertedWithCustomError(f.channels, "PaymentChannelsWithdrawalPending")
        .withArgs(id, withdrawReadyAt);
      await f.channels.connect(f.payer).cancelWithdrawal(id);
      await expect(f.channels.connect(f.payer).topUp(id, 500n)).to.emit(f.channels, "ChannelToppedUp");
    });

    it("refuses a zero amount and a deposit above 2^96 - 1", async () => {
      await f.usdc.mint(f.payer.address, 1n << 96n);
      await f.usdc.connect(f.payer).approve(f.channelsAddress, ethers.MaxUint256);
      await expect(f.channels.connect(f.payer).topUp(id, 0n))
        .to.be.revertedWithCustomError(f.channels, "PaymentChannelsInvalidAmount")
        .withArgs(0n);
      const room = MAX_AMOUNT - DEPOSIT;
      await expect(f.channels.connect(f.payer).topUp(id, room + 1n))
        .to.be.revertedWithCustomError(f.channels, "PaymentChannelsInvalidAmount")
        .withArgs(room + 1n);
      await expect(f.channels.connect(f.payer).topUp(id, room))
        .to.emit(f.channels, "ChannelToppedUp")
        .withArgs(id, room, MAX_AMOUNT);
    });

    it("topUpWithPermit tops up with a permit, and with the allowance when the permit was front-run", async () => {
      const domain = usdcDomain(f.chainId, f.usdcAddress);
      const p1 = await signPermit(f.payer, domain, f.channelsAddress, 300n, 0n, FAR_FUTURE);
      await expect(f.channels.connect(f.payer).topUpWithPermit(id, 300n, FAR_FUTURE, p1.v, p1.r, p1.s))
        .to.emit(f.channels, "ChannelToppedUp")
        .withArgs(id, 300n, DEPOSIT + 300n);
      expect(await f.usdc.nonces(f.payer.address)).to.equal(1n);
      const p2 = await signPermit(f.payer, domain, f.channelsAddress, 200n, 1n, FAR_FUTURE);
      await f.usdc.connect(f.attacker).permit(f.payer.address, f.channelsAddress, 200n, FAR_FUTURE, p2.v, p2.r, p2.s);
      await expect(f.channels.connect(f.payer).topUpWithPermit(id, 200n, FAR_FUTURE, p2.v, p2.r, p2.s))
        .to.emit(f.channels, "ChannelToppedUp")
        .withArgs(id, 200n, DEPOSIT + 500n);
    });

    it("topUpWithPermit is for the payer only", async () => {
      const p = await signPermit(f.other, usdcDomain(f.chainId, f.usdcAddress), f.channelsAddress, 1n, 0n, FAR_FUTURE);
      await expect(f.channels.connect(f.other).topUpWithPermit(id, 1n, FAR_FUTURE, p.v, p.r, p.s))
        .to.be.revertedWithCustomError(f.channels, "PaymentChannelsUnauthorized")
        .withArgs(id, f.other.address);
    });

    it("topUpWithAuthorization lets anyone submit the payer's authorization", async () => {
      const auth = await signTopUpAuthorization(f, f.payer, id, 700n, SALT);
      await expect(f.channels.connect(f.relayer).topUpWithAuthorization(id, 700n, auth))
        .to.emit(f.channels, "ChannelToppedUp")
        .withArgs(id, 700n, DEPOSIT + 700n);
      expect(await f.usdc.balanceOf(f.payer.address)).to.equal(INITIAL_BALANCE - DEPOSIT - 700n);
      // The nonce binds the channel: the same authorization cannot top up another channel of the payer.
      const id2 = await openChannel(f);
      await expect(f.channels.connect(f.relayer).topUpWithAuthorization(id2, 700n, auth)).to.be.revertedWithCustomError(
        f.usdc,
        "MockUSDCInvalidSigner",
      );
    });

    it("topUpWithAuthorization refuses unknown channels and pending withdrawals", async () => {
      const auth = await signTopUpAuthorization(f, f.payer, id, 700n, SALT);
      await expect(f.channels.connect(f.relayer).topUpWithAuthorization(id + 5n, 700n, auth))
        .to.be.revertedWithCustomError(f.channels, "PaymentChannelsUnknownChannel")
        .withArgs(id + 5n);
      await f.channels.connect(f.payer).requestWithdrawal(id);
      const { withdrawReadyAt } = await channelOf(f, id);
      await expect(f.channels.connect(f.relayer).topUpWithAuthorization(id, 700n, auth))
        .to.be.revertedWithCustomError(f.channels, "PaymentChannelsWithdrawalPending")
        .withArgs(id, withdrawReadyAt);
    });
  });

  describe("claim", () => {
    let id: bigint;
    beforeEach(async () => {
      id = await openChannel(f);
    });

    it("pays a 65-byte voucher to the payee, then only the increase of the next one", async () => {
      const sig1 = await signVoucher(f.session, f.domain, id, 100n);
      expect(ethers.getBytes(sig1).length).to.equal(65);
      await expect(f.channels.connect(f.relayer).claim(id, 100n, sig1))
        .to.emit(f.channels, "ChannelClaimed")
        .withArgs(id, 100n)
        .and.to.emit(f.usdc, "Transfer")
        .withArgs(f.channelsAddress, f.payee.address, 100n);
      const sig2 = await signVoucher(f.session, f.domain, id, 250n);
      await expect(f.channels.connect(f.payee).claim(id, 250n, sig2))
        .to.emit(f.channels, "ChannelClaimed")
        .withArgs(id, 250n)
        .and.to.emit(f.usdc, "Transfer")
        .withArgs(f.channelsAddress, f.payee.address, 150n);
      expect(await f.usdc.balanceOf(f.payee.address)).to.equal(250n);
      expect(await f.usdc.balanceOf(f.relayer.address)).to.equal(0n);
      expect(await channelOf(f, id)).to.deep.include({ claimed: 250n, deposit: DEPOSIT, status: STATUS_OPEN });
    });

    it("accepts a 64-byte EIP-2098 compact signature", async () => {
      const sig = compactSignature(await signVoucher(f.session, f.domain, id, 100n));
      expect(ethers.getBytes(sig).length).to.equal(64);
      await expect(f.channels.claim(id, 100n, sig))
        .to.emit(f.channels, "ChannelClaimed")
        .withArgs(id, 100n);
    });

    it("accepts both recovery ids (v = 27 and v = 28) in 65- and 64-byte form", async () => {
      for (const v of [27, 28] as const) {
        for (const form of ["65-byte", "64-byte"] as const) {
          const channelId = await openChannel(f);
          const { amount, signature } = await voucherWithV(f, channelId, v);
          const sig = form === "65-byte" ? signature : compactSignature(signature);
          await expect(f.channels.claim(channelId, amount, sig), `v = ${v}, ${form}`)
            .to.emit(f.channels, "ChannelClaimed")
            .withArgs(channelId, amount);
        }
      }
    });

    it("accepts recovery ids written as 0/1 and refuses any other than 27, 28, 0 or 1", async () => {
      const good = splitSignature(await signVoucher(f.session, f.domain, id, 100n));
      await expect(f.channels.claim(id, 100n, joinSignature(good.r, good.s, good.v - 27)))
        .to.emit(f.channels, "ChannelClaimed")
        .withArgs(id, 100n);
      const { r, s } = splitSignature(await signVoucher(f.session, f.domain, id, 200n));
      for (const v of [2, 26, 29]) {
        await expect(f.channels.claim(id, 200n, joinSignature(r, s, v)))
          .to.be.revertedWithCustomError(f.channels, "PaymentChannelsInvalidSignature")
          .withArgs(id);
      }
    });

    it("refuses signatures of other lengths, a non-signer's signature and the payer's signature", async () => {
      const good = await signVoucher(f.session, f.domain, id, 100n);
      for (const bad of [
        "0x",
        ethers.dataSlice(good, 0, 63),
        ethers.concat([good, "0x00"]),
        await signVoucher(f.attacker, f.domain, id, 100n),
        await signVoucher(f.payer, f.domain, id, 100n),
      ]) {
        await expect(f.channels.claim(id, 100n, bad))
          .to.be.revertedWithCustomError(f.channels, "PaymentChannelsInvalidSignature")
          .withArgs(id);
      }
      // The signature covers the amount.
      await expect(f.channels.claim(id, 101n, good))
        .to.be.revertedWithCustomError(f.channels, "PaymentChannelsInvalidSignature")
        .withArgs(id);
    });

    it("refuses the high-s twin of a valid signature", async () => {
      const good = await signVoucher(f.session, f.domain, id, 100n);
      await expect(f.channels.claim(id, 100n, highSTwin(good)))
        .to.be.revertedWithCustomError(f.channels, "PaymentChannelsInvalidSignature")
        .withArgs(id);
      await expect(f.channels.claim(id, 100n, good)).to.emit(f.channels, "ChannelClaimed");
    });

    it("refuses stale amounts (equal to or below the claimed total)", async () => {
      await f.channels.claim(id, 100n, await signVoucher(f.session, f.domain, id, 100n));
      for (const amount of [100n, 99n]) {
        await expect(f.channels.claim(id, amount, await signVoucher(f.session, f.domain, id, amount)))
          .to.be.revertedWithCustomError(f.channels, "PaymentChannelsStaleAmount")
          .withArgs(id, amount, 100n);
      }
      const id2 = await openChannel(f);
      await expect(f.channels.claim(id2, 0n, await signVoucher(f.session, f.domain, id2, 0n)))
        .to.be.revertedWithCustomError(f.channels, "PaymentChannelsStaleAmount")
        .withArgs(id2, 0n, 0n);
    });

    it("pays up to the deposit and refuses more", async () => {
      await expect(f.channels.claim(id, DEPOSIT + 1n, await signVoucher(f.session, f.domain, id, DEPOSIT + 1n)))
        .to.be.revertedWithCustomError(f.channels, "PaymentChannelsAmountExceedsDeposit")
        .withArgs(id, DEPOSIT + 1n, DEPOSIT);
      await expect(f.channels.claim(id, DEPOSIT, await signVoucher(f.session, f.domain, id, DEPOSIT)))
        .to.emit(f.channels, "ChannelClaimed")
        .withArgs(id, DEPOSIT);
      expect(await f.usdc.balanceOf(f.channelsAddress)).to.equal(0n);
    });

    it("refuses unknown and closed channels", async () => {
      const unknown = channelIdFor(f.attacker.address as Hex, 0n);
      await expect(f.channels.claim(unknown, 1n, await signVoucher(f.attacker, f.domain, unknown, 1n)))
        .to.be.revertedWithCustomError(f.channels, "PaymentChannelsUnknownChannel")
        .withArgs(unknown);
      await f.channels.connect(f.payee).close(id, 0n, "0x");
      await expect(f.channels.claim(id, 1n, await signVoucher(f.session, f.domain, id, 1n)))
        .to.be.revertedWithCustomError(f.channels, "PaymentChannelsChannelClosed")
        .withArgs(id);
    });

    it("still pays while a withdrawal is pending and after it is ready, until it is finalized", async () => {
      await f.channels.connect(f.payer).requestWithdrawal(id);
      await expect(f.channels.claim(id, 10n, await signVoucher(f.session, f.domain, id, 10n))).to.emit(
        f.channels,
        "ChannelClaimed",
      );
      await time.increase(DELAY + 10);
      await expect(f.channels.claim(id, 20n, await signVoucher(f.session, f.domain, id, 20n))).to.emit(
        f.channels,
        "ChannelClaimed",
      );
      expect(await f.usdc.balanceOf(f.payee.address)).to.equal(20n);
    });
  });

  describe("EIP-1271 wallets", () => {
    let wallet: MockERC1271Wallet;
    let walletAddress: string;
    let id: bigint;

    beforeEach(async () => {
      // `other` owns the wallet; the wallet itself funds the channel and is its signer.
      wallet = await deploy<MockERC1271Wallet>("MockERC1271Wallet", f.other.address);
      walletAddress = await wallet.getAddress();
      await f.usdc.mint(walletAddress, DEPOSIT);
      await wallet
        .connect(f.other)
        .execute(f.usdcAddress, f.usdc.interface.encodeFunctionData("approve", [f.channelsAddress, DEPOSIT]));
      id = await f.channels.nextChannelId(walletAddress);
      await expect(
        wallet
          .connect(f.other)
          .execute(
            f.channelsAddress,
            f.channels.interface.encodeFunctionData("open", [
              f.payee.address,
              f.usdcAddress,
              ethers.ZeroAddress,
              DELAY,
              DEPOSIT,
            ]),
          ),
      )
        .to.emit(f.channels, "ChannelOpened")
        .withArgs(id, walletAddress, f.payee.address, f.usdcAddress, DEPOSIT, DELAY);
    });

    it("a wallet can be payer and signer; its owner's signature claims through isValidSignature", async () => {
      expect(await channelOf(f, id)).to.deep.include({ payer: walletAddress, signer: walletAddress });
      const sig = await signVoucher(f.other, f.domain, id, 100n);
      await expect(f.channels.claim(id, 100n, sig))
        .to.emit(f.channels, "ChannelClaimed")
        .withArgs(id, 100n);
      expect(await f.usdc.balanceOf(f.payee.address)).to.equal(100n);
      // The wallet sees the signature bytes as given: its 64-byte form is not one it accepts.
      const compact = compactSignature(await signVoucher(f.other, f.domain, id, 200n));
      await expect(f.channels.claim(id, 200n, compact))
        .to.be.revertedWithCustomError(f.channels, "PaymentChannelsInvalidSignature")
        .withArgs(id);
    });

    it("refuses a signature by someone other than the wallet's owner", async () => {
      await expect(f.channels.claim(id, 100n, await signVoucher(f.attacker, f.domain, id, 100n)))
        .to.be.revertedWithCustomError(f.channels, "PaymentChannelsInvalidSignature")
        .withArgs(id);
    });

    for (const [mode, label] of [
      [WalletMode.WrongMagic, "answers a wrong magic value"],
      [WalletMode.Revert, "reverts"],
      [WalletMode.BurnGas, "burns all the gas it is given"],
      [WalletMode.LongReturn, "answers more than 32 bytes"],
    ] as const) {
      it(`refuses a voucher when the wallet ${label}`, async () => {
        const sig = await signVoucher(f.other, f.domain, id, 100n);
        await wallet.connect(f.other).setMode(mode);
        await expect(f.channels.claim(id, 100n, sig, { gasLimit: 2_000_000 }))
          .to.be.revertedWithCustomError(f.channels, "PaymentChannelsInvalidSignature")
          .withArgs(id);
        // With an explicit gas limit the failed claim is mined: the wallet got at most ERC1271_GAS_LIMIT.
        const block = await ethers.provider.getBlock("latest");
        const receipt = await ethers.provider.getTransactionReceipt(block!.transactions[0]);
        expect(receipt!.to).to.equal(f.channelsAddress);
        expect(receipt!.status).to.equal(0);
        expect(receipt!.gasUsed).to.be.lessThan(200_000n);
        await wallet.connect(f.other).setMode(WalletMode.Honest);
        await expect(f.channels.claim(id, 100n, sig))
          .to.emit(f.channels, "ChannelClaimed")
          .withArgs(id, 100n);
      });
    }

    it("claimBatch verifies wallet vouchers as r ‖ s ‖ v and skips hostile wallets without failing the batch", async () => {
      const sid = await openChannel(f);
      const w1 = await signVoucher(f.other, f.domain, id, 100n);
      const s1 = await signVoucher(f.session, f.domain, sid, 40n);
      let receipt = await receiptOf(f.channels.claimBatch(batch(claimItem(id, 100n, w1), claimItem(sid, 40n, s1))));
      expect(await claimsOf(receipt, f.channels)).to.deep.equal([
        [id, 100n],
        [sid, 40n],
      ]);
      expect(await f.usdc.balanceOf(f.payee.address)).to.equal(140n);

      for (const mode of [WalletMode.WrongMagic, WalletMode.Revert, WalletMode.BurnGas, WalletMode.LongReturn]) {
        await wallet.connect(f.other).setMode(mode);
        const amount = 200n + BigInt(mode);
        const claimedBefore = (await channelOf(f, sid)).claimed;
        const w = await signVoucher(f.other, f.domain, id, amount);
        const s = await signVoucher(f.session, f.domain, sid, claimedBefore + 1n);
        receipt = await receiptOf(
          f.channels.claimBatch(batch(claimItem(id, amount, w), claimItem(sid, claimedBefore + 1n, s)), {
            gasLimit: 2_000_000,
          }),
        );
        expect(await eventsOf(receipt, f.channels, "ClaimSkipped")).to.deep.equal([
          [id, amount, BigInt(SkipReason.InvalidSignature)],
        ]);
        expect(await claimsOf(receipt, f.channels)).to.deep.equal([[sid, claimedBefore + 1n]]);
        if (mode === WalletMode.BurnGas) {
          // The wallet got at most ERC1271_GAS_LIMIT: the whole batch stays far below the 2M limit.
          expect(receipt.gasUsed).to.be.lessThan(300_000n);
        }
      }
      expect((await channelOf(f, id)).claimed).to.equal(100n);
    });
  });

  describe("claimBatch", () => {
    it("claims channels of several payees and tokens and pays one transfer per payee and token", async () => {
      const usdc2 = await deploy<MockUSDC>("MockUSDC");
      const usdc2Address = await usdc2.getAddress();
      await usdc2.mint(f.payer.address, INITIAL_BALANCE);
      const session2 = new ethers.Wallet(ethers.id("second session"));
      const a = await openChannel(f); // payee, USDC
      const b = await openChannel(f, { token: usdc2Address, signer: session2.address }); // payee, USDC2
      const c = await openChannel(f, { payee: f.other.address }); // other, USDC
      const d = await openChannel(f, { signer: ethers.ZeroAddress }); // payee, USDC, signed by the payer
      const e = await openChannel(f, { token: usdc2Address }); // payee, USDC2
      const g = await openChannel(f, { payee: f.other.address, signer: session2.address }); // other, USDC
      const items = [
        claimItem(a, 100n, await signVoucher(f.session, f.domain, a, 100n)),
        claimItem(b, 200n, await signVoucher(session2, f.domain, b, 200n)),
        claimItem(c, 300n, await signVoucher(f.session, f.domain, c, 300n)),
        claimItem(d, 400n, compactSignature(await signVoucher(f.payer, f.domain, d, 400n))),
        claimItem(e, 50n, await signVoucher(f.session, f.domain, e, 50n)),
        claimItem(g, 25n, await signVoucher(session2, f.domain, g, 25n)),
      ];
      const payload = batch(...items);
      expect(ethers.getBytes(payload).length).to.equal(6 * 99);
      expect(await f.channels.claimBatch.staticCall(payload)).to.equal(6n);

      const usdcBefore = await f.usdc.balanceOf(f.channelsAddress);
      const usdc2Before = await usdc2.balanceOf(f.channelsAddress);
      const receipt = await receiptOf(f.channels.connect(f.relayer).claimBatch(payload));
      expect(await claimsOf(receipt, f.channels)).to.deep.equal([
        [a, 100n],
        [b, 200n],
        [c, 300n],
        [d, 400n],
        [e, 50n],
        [g, 25n],
      ]);
      expect(await eventsOf(receipt, f.channels, "ClaimSkipped")).to.deep.equal([]);
      // Aggregated: one transfer per (payee, token), in order of first appearance.
      expect(await transfersFrom(receipt, f.usdc, f.channelsAddress)).to.deep.equal([
        [f.payee.address, 500n],
        [f.other.address, 325n],
      ]);
      expect(await transfersFrom(receipt, usdc2, f.channelsAddress)).to.deep.equal([[f.payee.address, 250n]]);
      expect(await f.usdc.balanceOf(f.payee.address)).to.equal(500n);
      expect(await f.usdc.balanceOf(f.other.address)).to.equal(INITIAL_BALANCE + 325n);
      expect(await usdc2.balanceOf(f.payee.address)).to.equal(250n);
      expect(await f.usdc.balanceOf(f.channelsAddress)).to.equal(usdcBefore - 825n);
      expect(await usdc2.balanceOf(f.channelsAddress)).to.equal(usdc2Before - 250n);
      for (const [id, amount] of [
        [a, 100n],
        [b, 200n],
        [c, 300n],
        [d, 400n],
        [e, 50n],
        [g, 25n],
      ] as const) {
        expect((await channelOf(f, id)).claimed).to.equal(amount);
      }
    });

    it("skips invalid items with the first failing reason and claims the rest", async () => {
      const open = await openChannel(f);
      const claimed = await openChannel(f);
      await f.channels.claim(claimed, 100n, await signVoucher(f.session, f.domain, claimed, 100n));
      const closed = await openChannel(f);
      await f.channels.connect(f.payee).close(closed, 0n, "0x");
      const unknown = channelIdFor(f.attacker.address as Hex, 3n);
      const sign = (id: bigint, amount: bigint) => signVoucher(f.session, f.domain, id, amount);
      const items: [bigint, bigint, Hex][] = [
        [unknown, 5n, await signVoucher(f.attacker, f.domain, unknown, 5n)], // UnknownChannel
        [closed, 5n, await sign(closed, 5n)], // ChannelClosed
        [closed, 0n, await signVoucher(f.attacker, f.domain, closed, 0n)], // ChannelClosed first
        [claimed, 100n, await sign(claimed, 100n)], // StaleAmount (equal)
        [claimed, 50n, await signVoucher(f.attacker, f.domain, claimed, 50n)], // StaleAmount before signature
        [open, DEPOSIT + 1n, await sign(open, DEPOSIT + 1n)], // AmountExceedsDeposit
        [open, DEPOSIT + 1n, await signVoucher(f.attacker, f.domain, open, DEPOSIT + 1n)], // exceeds before sig
        [open, 10n, await signVoucher(f.attacker, f.domain, open, 10n)], // InvalidSignature
        [open, 10n, await sign(open, 11n)], // InvalidSignature: the signature covers another amount
        [open, 10n, await sign(open, 10n)], // claimed
      ];
      const payload = batch(...items.map(([id, amount, sig]) => claimItem(id, amount, sig)));
      expect(await f.channels.claimBatch.staticCall(payload)).to.equal(1n);
      const receipt = await receiptOf(f.channels.claimBatch(payload));
      expect(await eventsOf(receipt, f.channels, "ClaimSkipped")).to.deep.equal([
        [unknown, 5n, BigInt(SkipReason.UnknownChannel)],
        [closed, 5n, BigInt(SkipReason.ChannelClosed)],
        [closed, 0n, BigInt(SkipReason.ChannelClosed)],
        [claimed, 100n, BigInt(SkipReason.StaleAmount)],
        [claimed, 50n, BigInt(SkipReason.StaleAmount)],
        [open, DEPOSIT + 1n, BigInt(SkipReason.AmountExceedsDeposit)],
        [open, DEPOSIT + 1n, BigInt(SkipReason.AmountExceedsDeposit)],
        [open, 10n, BigInt(SkipReason.InvalidSignature)],
        [open, 10n, BigInt(SkipReason.InvalidSignature)],
      ]);
      expect(await claimsOf(receipt, f.channels)).to.deep.equal([[open, 10n]]);
      // Events come in item order.
      expect((await eventNamesOf(receipt, f.channels)).slice(-2)).to.deep.equal(["ClaimSkipped", "ChannelsClaimed"]);
      expect(await transfersFrom(receipt, f.usdc, f.channelsAddress)).to.deep.equal([[f.payee.address, 10n]]);
      await expect(f.channels.claimBatch(payload)).to.emit(f.channels, "ClaimSkipped").withArgs(open, 10n, 2);
    });

    it("reports the claimed items of a batch in one ChannelsClaimed, also when its data fills whole words", async () => {
      // 32 records of 35 bytes are exactly 35 words: the padding write must not touch the payout table.
      const other = await openChannel(f, { payee: f.other.address });
      const items: string[] = [];
      const expected: bigint[][] = [];
      for (let k = 0; k < 31; k++) {
        const id = await openChannel(f, { amount: 1_000n });
        items.push(claimItem(id, BigInt(k + 1), await signVoucher(f.session, f.domain, id, BigInt(k + 1))));
        expected.push([id, BigInt(k + 1)]);
      }
      items.push(claimItem(other, 7n, await signVoucher(f.session, f.domain, other, 7n)));
      expected.push([other, 7n]);
      const receipt = await receiptOf(f.channels.claimBatch(batch(...items)));
      expect(await eventNamesOf(receipt, f.channels)).to.deep.equal(["ChannelsClaimed"]);
      const [[claims]] = await eventsOf(receipt, f.channels, "ChannelsClaimed");
      expect(ethers.dataLength(claims as string)).to.equal(32 * 35);
      expect(await claimsOf(receipt, f.channels)).to.deep.equal(expected);
      expect(await transfersFrom(receipt, f.usdc, f.channelsAddress)).to.deep.equal([
        [f.payee.address, (31n * 32n) / 2n],
        [f.other.address, 7n],
      ]);
    });

    it("emits no ChannelsClaimed when every item is skipped", async () => {
      const id = await openChannel(f);
      const receipt = await receiptOf(
        f.channels.claimBatch(claimItem(id, DEPOSIT + 1n, await signVoucher(f.session, f.domain, id, DEPOSIT + 1n))),
      );
      expect(await eventNamesOf(receipt, f.channels)).to.deep.equal(["ClaimSkipped"]);
    });

    it("claims the same channel twice in one batch, paying the total increase once", async () => {
      const id = await openChannel(f);
      const payload = batch(
        claimItem(id, 100n, await signVoucher(f.session, f.domain, id, 100n)),
        claimItem(id, 300n, await signVoucher(f.session, f.domain, id, 300n)),
        claimItem(id, 300n, await signVoucher(f.session, f.domain, id, 300n)),
        claimItem(id, 200n, await signVoucher(f.session, f.domain, id, 200n)),
      );
      const receipt = await receiptOf(f.channels.claimBatch(payload));
      expect(await claimsOf(receipt, f.channels)).to.deep.equal([
        [id, 100n],
        [id, 300n],
      ]);
      expect(await eventsOf(receipt, f.channels, "ClaimSkipped")).to.deep.equal([
        [id, 300n, BigInt(SkipReason.StaleAmount)],
        [id, 200n, BigInt(SkipReason.StaleAmount)],
      ]);
      expect(await transfersFrom(receipt, f.usdc, f.channelsAddress)).to.deep.equal([[f.payee.address, 300n]]);
      expect((await channelOf(f, id)).claimed).to.equal(300n);
    });

    it("accepts an empty batch and pays nothing", async () => {
      expect(await f.channels.claimBatch.staticCall("0x")).to.equal(0n);
      const receipt = await receiptOf(f.channels.claimBatch("0x"));
      expect(receipt.logs).to.have.length(0);
    });

    it("makes no transfer when every item is skipped", async () => {
      const id = await openChannel(f);
      const receipt = await receiptOf(
        f.channels.claimBatch(claimItem(id, 1n, await signVoucher(f.attacker, f.domain, id, 1n))),
      );
      expect(await eventNamesOf(receipt, f.channels)).to.deep.equal(["ClaimSkipped"]);
      expect(await transfersFrom(receipt, f.usdc, f.channelsAddress)).to.deep.equal([]);
    });

    it("refuses a payload whose length is not a multiple of 99 bytes", async () => {
      const id = await openChannel(f);
      const item = claimItem(id, 1n, await signVoucher(f.session, f.domain, id, 1n));
      for (const payload of [ethers.dataSlice(item, 0, 98), ethers.concat([item, "0x00"]), "0x01"]) {
        await expect(f.channels.claimBatch(payload))
          .to.be.revertedWithCustomError(f.channels, "PaymentChannelsMalformedBatch")
          .withArgs(ethers.getBytes(payload).length);
      }
    });
  });

  describe("close", () => {
    let id: bigint;
    beforeEach(async () => {
      id = await openChannel(f);
    });

    it("without a new voucher: refunds the unclaimed deposit to the payer", async () => {
      await f.channels.claim(id, 300n, await signVoucher(f.session, f.domain, id, 300n));
      const receipt = await receiptOf(f.channels.connect(f.payee).close(id, 0n, "0x"));
      expect(await eventNamesOf(receipt, f.channels)).to.deep.equal(["ChannelClosed"]);
      expect(await eventsOf(receipt, f.channels, "ChannelClosed")).to.deep.equal([[id, 300n, DEPOSIT - 300n]]);
      expect(await transfersFrom(receipt, f.usdc, f.channelsAddress)).to.deep.equal([
        [f.payer.address, DEPOSIT - 300n],
      ]);
      expect(await channelOf(f, id)).to.deep.include({ status: STATUS_CLOSED, claimed: 300n, deposit: DEPOSIT });
      expect(await f.usdc.balanceOf(f.channelsAddress)).to.equal(0n);
      expect(await f.usdc.balanceOf(f.payer.address)).to.equal(INITIAL_BALANCE - 300n);
    });

    it("with a final voucher: claims it, pays the payee and refunds the payer in one transaction", async () => {
      await f.channels.claim(id, 300n, await signVoucher(f.session, f.domain, id, 300n));
      const sig = await signVoucher(f.session, f.domain, id, 700n);
      const receipt = await receiptOf(f.channels.connect(f.payee).close(id, 700n, sig));
      expect(await eventNamesOf(receipt, f.channels)).to.deep.equal(["ChannelClaimed", "ChannelClosed"]);
      expect(await claimsOf(receipt, f.channels)).to.deep.equal([[id, 700n]]);
      expect(await eventsOf(receipt, f.channels, "ChannelClosed")).to.deep.equal([[id, 700n, DEPOSIT - 700n]]);
      expect(await transfersFrom(receipt, f.usdc, f.channelsAddress)).to.deep.equal([
        [f.payer.address, DEPOSIT - 700n],
        [f.payee.address, 400n],
      ]);
      expect(await f.usdc.balanceOf(f.payee.address)).to.equal(700n);
      expect(await f.usdc.balanceOf(f.payer.address)).to.equal(INITIAL_BALANCE - 700n);
    });

    it("with a voucher for the whole deposit: no refund transfer", async () => {
      const sig = compactSignature(await signVoucher(f.session, f.domain, id, DEPOSIT));
      const receipt = await receiptOf(f.channels.connect(f.payee).close(id, DEPOSIT, sig));
      expect(await eventsOf(receipt, f.channels, "ChannelClosed")).to.deep.equal([[id, DEPOSIT, 0n]]);
      expect(await transfersFrom(receipt, f.usdc, f.channelsAddress)).to.deep.equal([[f.payee.address, DEPOSIT]]);
    });

    it("ignores an amount not above the claimed total, and its signature", async () => {
      await f.channels.claim(id, 300n, await signVoucher(f.session, f.domain, id, 300n));
      const receipt = await receiptOf(f.channels.connect(f.payee).close(id, 300n, "0xdead"));
      expect(await eventNamesOf(receipt, f.channels)).to.deep.equal(["ChannelClosed"]);
      expect(await eventsOf(receipt, f.channels, "ChannelClosed")).to.deep.equal([[id, 300n, DEPOSIT - 300n]]);
    });

    it("checks the final voucher like claim", async () => {
      await expect(f.channels.connect(f.payee).close(id, 10n, await signVoucher(f.attacker, f.domain, id, 10n)))
        .to.be.revertedWithCustomError(f.channels, "PaymentChannelsInvalidSignature")
        .withArgs(id);
      await expect(f.channels.connect(f.payee).close(id, DEPOSIT + 1n, "0x"))
        .to.be.revertedWithCustomError(f.channels, "PaymentChannelsAmountExceedsDeposit")
        .withArgs(id, DEPOSIT + 1n, DEPOSIT);
    });

    it("is for the payee only", async () => {
      for (const caller of [f.payer, f.relayer, f.attacker]) {
        await expect(f.channels.connect(caller).close(id, 0n, "0x"))
          .to.be.revertedWithCustomError(f.channels, "PaymentChannelsUnauthorized")
          .withArgs(id, caller.address);
      }
    });

    it("refuses unknown and closed channels", async () => {
      await expect(f.channels.connect(f.payee).close(id + 1n, 0n, "0x"))
        .to.be.revertedWithCustomError(f.channels, "PaymentChannelsUnknownChannel")
        .withArgs(id + 1n);
      await f.channels.connect(f.payee).close(id, 0n, "0x");
      await expect(f.channels.connect(f.payee).close(id, 0n, "0x"))
        .to.be.revertedWithCustomError(f.channels, "PaymentChannelsChannelClosed")
        .withArgs(id);
    });
  });

  describe("payer withdrawal", () => {
    let id: bigint;
    beforeEach(async () => {
      id = await openChannel(f);
    });

    async function request(): Promise<bigint> {
      const at = (await time.latest()) + 100;
      await time.setNextBlockTimestamp(at);
      await expect(f.channels.connect(f.payer).requestWithdrawal(id))
        .to.emit(f.channels, "WithdrawalRequested")
        .withArgs(id, at + DELAY);
      return BigInt(at + DELAY);
    }

    it("requestWithdrawal records readyAt = now + delay", async () => {
      const readyAt = await request();
      expect((await channelOf(f, id)).withdrawReadyAt).to.equal(readyAt);
    });

    it("requestWithdrawal refuses a second request", async () => {
      const readyAt = await request();
      await expect(f.channels.connect(f.payer).requestWithdrawal(id))
        .to.be.revertedWithCustomError(f.channels, "PaymentChannelsWithdrawalPending")
        .withArgs(id, readyAt);
    });

    it("only the payer may request or cancel", async () => {
      for (const caller of [f.payee, f.attacker]) {
        await expect(f.channels.connect(caller).requestWithdrawal(id))
          .to.be.revertedWithCustomError(f.channels, "PaymentChannelsUnauthorized")
          .withArgs(id, caller.address);
      }
      await request();
      await expect(f.channels.connect(f.attacker).cancelWithdrawal(id))
        .to.be.revertedWithCustomError(f.channels, "PaymentChannelsUnauthorized")
        .withArgs(id, f.attacker.address);
    });

    it("cancelWithdrawal clears the request and emits WithdrawalCancelled", async () => {
      await request();
      await expect(f.channels.connect(f.payer).cancelWithdrawal(id))
        .to.emit(f.channels, "WithdrawalCancelled")
        .withArgs(id);
      expect((await channelOf(f, id)).withdrawReadyAt).to.equal(0n);
      await expect(f.channels.connect(f.payer).cancelWithdrawal(id))
        .to.be.revertedWithCustomError(f.channels, "PaymentChannelsNoWithdrawalRequested")
        .withArgs(id);
      await time.increase(DELAY * 2);
      await expect(f.channels.finalizeWithdrawal(id))
        .to.be.revertedWithCustomError(f.channels, "PaymentChannelsNoWithdrawalRequested")
        .withArgs(id);
      // A new request starts a new full delay.
      await request();
    });

    it("finalizeWithdrawal refuses before readyAt and succeeds at readyAt, for anyone, refunding the payer", async () => {
      await f.channels.claim(id, 250n, await signVoucher(f.session, f.domain, id, 250n));
      const readyAt = await request();
      await time.setNextBlockTimestamp(readyAt - 1n);
      await expect(f.channels.connect(f.relayer).finalizeWithdrawal(id))
        .to.be.revertedWithCustomError(f.channels, "PaymentChannelsWithdrawalNotReady")
        .withArgs(id, readyAt, readyAt - 1n);
      await time.setNextBlockTimestamp(readyAt);
      const receipt = await receiptOf(f.channels.connect(f.relayer).finalizeWithdrawal(id));
      expect(await eventsOf(receipt, f.channels, "ChannelClosed")).to.deep.equal([[id, 250n, DEPOSIT - 250n]]);
      expect(await transfersFrom(receipt, f.usdc, f.channelsAddress)).to.deep.equal([
        [f.payer.address, DEPOSIT - 250n],
      ]);
      expect(await f.usdc.balanceOf(f.payer.address)).to.equal(INITIAL_BALANCE - 250n);
      expect(await f.usdc.balanceOf(f.relayer.address)).to.equal(0n);
      expect((await channelOf(f, id)).status).to.equal(STATUS_CLOSED);
    });

    it("request, cancel and finalize refuse unknown and closed channels", async () => {
      const unknown = id + 1n;
      for (const call of [
        () => f.channels.connect(f.payer).requestWithdrawal(unknown),
        () => f.channels.connect(f.payer).cancelWithdrawal(unknown),
        () => f.channels.finalizeWithdrawal(unknown),
      ]) {
        await expect(call())
          .to.be.revertedWithCustomError(f.channels, "PaymentChannelsUnknownChannel")
          .withArgs(unknown);
      }
      await request();
      await time.increase(DELAY);
      await f.channels.finalizeWithdrawal(id);
      for (const call of [
        () => f.channels.connect(f.payer).requestWithdrawal(id),
        () => f.channels.connect(f.payer).cancelWithdrawal(id),
        () => f.channels.finalizeWithdrawal(id),
      ]) {
        await expect(call()).to.be.revertedWithCustomError(f.channels, "PaymentChannelsChannelClosed").withArgs(id);
      }
    });
  });

  describe("failed payouts and withdrawOwed", () => {
    it("defers a payout to a blocklisted payee and lets it pull the amount once unblocked", async () => {
      const token = await deploy<MockBlocklistToken>("MockBlocklistToken");
      const tokenAddress = await token.getAddress();
      await token.mint(f.payer.address, DEPOSIT);
      const id = await openChannel(f, { token: tokenAddress });
      await token.setBlocklisted(f.payee.address, true);

      await expect(f.channels.claim(id, 100n, await signVoucher(f.session, f.domain, id, 100n)))
        .to.emit(f.channels, "PayoutDeferred")
        .withArgs(f.payee.address, tokenAddress, 100n)
        .and.to.emit(f.channels, "ChannelClaimed")
        .withArgs(id, 100n);
      // A later claim in a batch adds to what is owed.
      const receipt = await receiptOf(
        f.channels.claimBatch(claimItem(id, 150n, await signVoucher(f.session, f.domain, id, 150n))),
      );
      expect(await eventsOf(receipt, f.channels, "PayoutDeferred")).to.deep.equal([
        [f.payee.address, tokenAddress, 50n],
      ]);
      expect(await f.channels.owed(f.payee.address, tokenAddress)).to.equal(150n);
      expect(await token.balanceOf(f.channelsAddress)).to.equal(DEPOSIT);

      await expect(f.channels.connect(f.payee).withdrawOwed(tokenAddress))
        .to.be.revertedWithCustomError(token, "MockBlocklistTokenBlocked")
        .withArgs(f.payee.address);
      expect(await f.channels.owed(f.payee.address, tokenAddress)).to.equal(150n);

      await token.setBlocklisted(f.payee.address, false);
      await expect(f.channels.connect(f.payee).withdrawOwed(tokenAddress))
        .to.emit(f.channels, "OwedWithdrawn")
        .withArgs(f.payee.address, tokenAddress, 150n)
        .and.to.emit(token, "Transfer")
        .withArgs(f.channelsAddress, f.payee.address, 150n);
      expect(await f.channels.owed(f.payee.address, tokenAddress)).to.equal(0n);
      expect(await token.balanceOf(f.payee.address)).to.equal(150n);
      await expect(f.channels.connect(f.payee).withdrawOwed(tokenAddress))
        .to.be.revertedWithCustomError(f.channels, "PaymentChannelsNothingOwed")
        .withArgs(f.payee.address, tokenAddress);
    });

    it("defers refunds and payouts of a token whose transfer returns false", async () => {
      const token = await deploy<MockFalseReturnToken>("MockFalseReturnToken");
      const tokenAddress = await token.getAddress();
      await token.mint(f.payer.address, DEPOSIT);
      const id = await openChannel(f, { token: tokenAddress });
      const sig = await signVoucher(f.session, f.domain, id, 400n);
      const receipt = await receiptOf(f.channels.connect(f.payee).close(id, 400n, sig));
      expect(await eventsOf(receipt, f.channels, "PayoutDeferred")).to.deep.equal([
        [f.payer.address, tokenAddress, DEPOSIT - 400n],
        [f.payee.address, tokenAddress, 400n],
      ]);
      expect(await f.channels.owed(f.payer.address, tokenAddress)).to.equal(DEPOSIT - 400n);
      expect(await f.channels.owed(f.payee.address, tokenAddress)).to.equal(400n);
      expect((await channelOf(f, id)).status).to.equal(STATUS_CLOSED);

      await expect(f.channels.connect(f.payer).withdrawOwed(tokenAddress))
        .to.be.revertedWithCustomError(f.channels, "SafeERC20FailedOperation")
        .withArgs(tokenAddress);
      await token.setFailing(false);
      await expect(f.channels.connect(f.payer).withdrawOwed(tokenAddress))
        .to.emit(f.channels, "OwedWithdrawn")
        .withArgs(f.payer.address, tokenAddress, DEPOSIT - 400n);
      await expect(f.channels.connect(f.payee).withdrawOwed(tokenAddress))
        .to.emit(f.channels, "OwedWithdrawn")
        .withArgs(f.payee.address, tokenAddress, 400n);
      expect(await token.balanceOf(f.payer.address)).to.equal(DEPOSIT - 400n);
      expect(await token.balanceOf(f.payee.address)).to.equal(400n);
      expect(await token.balanceOf(f.channelsAddress)).to.equal(0n);
    });

    it("a failing route in a batch does not stop the other routes", async () => {
      const token = await deploy<MockBlocklistToken>("MockBlocklistToken");
      const tokenAddress = await token.getAddress();
      await token.mint(f.payer.address, DEPOSIT);
      const bad = await openChannel(f, { token: tokenAddress });
      const good = await openChannel(f);
      await token.setBlocklisted(f.payee.address, true);
      const receipt = await receiptOf(
        f.channels.claimBatch(
          batch(
            claimItem(bad, 60n, await signVoucher(f.session, f.domain, bad, 60n)),
            claimItem(good, 70n, await signVoucher(f.session, f.domain, good, 70n)),
          ),
        ),
      );
      expect(await eventsOf(receipt, f.channels, "PayoutDeferred")).to.deep.equal([
        [f.payee.address, tokenAddress, 60n],
      ]);
      expect(await transfersFrom(receipt, f.usdc, f.channelsAddress)).to.deep.equal([[f.payee.address, 70n]]);
      expect(await f.channels.owed(f.payee.address, tokenAddress)).to.equal(60n);
    });

    it("withdrawOwed refuses when nothing is owed", async () => {
      await expect(f.channels.connect(f.payee).withdrawOwed(f.usdcAddress))
        .to.be.revertedWithCustomError(f.channels, "PaymentChannelsNothingOwed")
        .withArgs(f.payee.address, f.usdcAddress);
    });
  });

  describe("a payer EOA other than msg.sender cannot be charged", () => {
    it("open always charges msg.sender", async () => {
      // The payer approved the contract, but someone else opening cannot use that allowance.
      await f.usdc.connect(f.payer).approve(f.channelsAddress, DEPOSIT);
      await expect(
        f.channels
          .connect(f.attacker as Signer)
          .open(f.attacker.address, f.usdcAddress, f.attacker.address, DELAY, DEPOSIT),
      )
        .to.be.revertedWithCustomError(f.usdc, "ERC20InsufficientAllowance")
        .withArgs(f.channelsAddress, 0n, DEPOSIT);
      expect(await f.usdc.balanceOf(f.payer.address)).to.equal(INITIAL_BALANCE);
    });
  });
});
