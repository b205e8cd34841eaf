import { expect } from "chai";
import { deployments, ethers } from "hardhat";
import { time } from "@nomicfoundation/hardhat-network-helpers";
import { openAuthorizationNonce } from "../../src/protocol/authorization";
import { MOCK_EUR_USD_ANSWER, MOCK_EUR_USD_DECIMALS } from "../../deploy/004_deploy_mock_eur_usd_feed";
import type {
  MockBlocklistToken,
  MockEURC,
  MockPriceFeed,
  MockERC1271Wallet,
  MockFalseReturnToken,
  MockFeeOnTransferToken,
  MockReentrantToken,
} from "../../typechain-types";
import { deployFixture, type Fixture } from "../helpers/fixture";
import { authorizationStruct, signReceiveAuthorization, usdcDomain, type Hex } from "../helpers/signing";

/** The mocks behave as the adversarial tests assume. */
describe("test mocks", () => {
  let f: Fixture;

  beforeEach(async () => {
    f = await deployFixture();
  });

  async function deploy<T>(name: string, ...args: unknown[]): Promise<T> {
    const contract = await ethers.deployContract(name, args);
    await contract.waitForDeployment();
    return contract as unknown as T;
  }

  it("MockFeeOnTransferToken burns 1% of every transfer and transferFrom, not of mints", async () => {
    const token = await deploy<MockFeeOnTransferToken>("MockFeeOnTransferToken");
    await token.mint(f.payer.address, 1_000_000n);
    expect(await token.balanceOf(f.payer.address)).to.equal(1_000_000n);
    await token.connect(f.payer).transfer(f.payee.address, 10_000n);
    expect(await token.balanceOf(f.payee.address)).to.equal(9_900n);
    await token.connect(f.payer).approve(f.other.address, 10_000n);
    await token.connect(f.other).transferFrom(f.payer.address, f.other.address, 10_000n);
    expect(await token.balanceOf(f.other.address)).to.equal(9_900n);
    expect(await token.balanceOf(f.payer.address)).to.equal(980_000n);
    expect(await token.totalSupply()).to.equal(1_000_000n - 200n);
    await token.setFeeBps(10_000);
    await token.connect(f.payer).transfer(f.payee.address, 500n);
    expect(await token.balanceOf(f.payee.address)).to.equal(9_900n);
  });

  it("MockFalseReturnToken returns false from transfer without moving tokens until switched off", async () => {
    const token = await deploy<MockFalseReturnToken>("MockFalseReturnToken");
    await token.mint(f.payer.address, 100n);
    expect(await token.connect(f.payer).transfer.staticCall(f.payee.address, 10n)).to.equal(false);
    await token.connect(f.payer).transfer(f.payee.address, 10n);
    expect(await token.balanceOf(f.payee.address)).to.equal(0n);
    await token.connect(f.payer).approve(f.other.address, 10n);
    await token.connect(f.other).transferFrom(f.payer.address, f.other.address, 10n);
    expect(await token.balanceOf(f.other.address)).to.equal(10n);
    await token.setFailing(false);
    await token.connect(f.payer).transfer(f.payee.address, 10n);
    expect(await token.balanceOf(f.payee.address)).to.equal(10n);
  });

  it("MockBlocklistToken reverts transfers from or to a blocklisted account", async () => {
    const token = await deploy<MockBlocklistToken>("MockBlocklistToken");
    await token.mint(f.payer.address, 100n);
    await token.setBlocklisted(f.payee.address, true);
    await expect(token.connect(f.payer).transfer(f.payee.address, 1n))
      .to.be.revertedWithCustomError(token, "MockBlocklistTokenBlocked")
      .withArgs(f.payee.address);
    await token.setBlocklisted(f.payer.address, true);
    await expect(token.connect(f.payer).transfer(f.other.address, 1n))
      .to.be.revertedWithCustomError(token, "MockBlocklistTokenBlocked")
      .withArgs(f.payer.address);
    await token.setBlocklisted(f.payer.address, false);
    await token.connect(f.payer).transfer(f.other.address, 1n);
    expect(await token.balanceOf(f.other.address)).to.equal(1n);
  });

  it("MockERC1271Wallet accepts its owner's 65-byte signatures only, and only its owner controls it", async () => {
    const wallet = await deploy<MockERC1271Wallet>("MockERC1271Wallet", f.other.address);
    const digest = ethers.id("message");
    // signMessage signs the EIP-191 hash of the 32 bytes; the wallet checks the digest it is given.
    const ownerSig = await f.other.signMessage(ethers.getBytes(digest));
    const ethSignDigest = ethers.hashMessage(ethers.getBytes(digest));
    expect(await wallet.isValidSignature(ethSignDigest, ownerSig)).to.equal("0x1626ba7e");
    expect(await wallet.isValidSignature(digest, ownerSig)).to.equal("0xffffffff");
    const strangerSig = await f.attacker.signMessage(ethers.getBytes(digest));
    expect(await wallet.isValidSignature(ethSignDigest, strangerSig)).to.equal("0xffffffff");
    expect(await wallet.isValidSignature(ethSignDigest, ethers.dataSlice(ownerSig, 0, 64))).to.equal("0xffffffff");

    await wallet.connect(f.other).setMode(1);
    expect(await wallet.isValidSignature(ethSignDigest, ownerSig)).to.equal("0x1626ba7f");
    await wallet.connect(f.other).setMode(2);
    await expect(wallet.isValidSignature(ethSignDigest, ownerSig)).to.be.revertedWithCustomError(
      wallet,
      "MockERC1271WalletRevert",
    );

    await expect(wallet.connect(f.attacker).setMode(0))
      .to.be.revertedWithCustomError(wallet, "MockERC1271WalletUnauthorized")
      .withArgs(f.attacker.address);
    const approve = f.usdc.interface.encodeFunctionData("approve", [f.payee.address, 5n]);
    await expect(wallet.connect(f.attacker).execute(f.usdcAddress, approve))
      .to.be.revertedWithCustomError(wallet, "MockERC1271WalletUnauthorized")
      .withArgs(f.attacker.address);
    await wallet.connect(f.other).execute(f.usdcAddress, approve);
    expect(await f.usdc.allowance(await wallet.getAddress(), f.payee.address)).to.equal(5n);
    const transfer = f.usdc.interface.encodeFunctionData("transfer", [f.payee.address, 5n]);
    await expect(wallet.connect(f.other).execute(f.usdcAddress, transfer))
      .to.be.revertedWithCustomError(f.usdc, "ERC20InsufficientBalance")
      .withArgs(await wallet.getAddress(), 0n, 5n);
  });

  it("MockReentrantToken fires its armed call once, records the outcome and completes the transfer", async () => {
    const token = await deploy<MockReentrantToken>("MockReentrantToken");
    await token.mint(f.payer.address, 100n);
    const data = f.usdc.interface.encodeFunctionData("balanceOf", [f.payer.address]);
    await token.arm(2, f.usdcAddress, data); // TransferFrom: a plain transfer does not fire it
    await expect(token.connect(f.payer).transfer(f.payee.address, 1n)).to.not.emit(token, "Reentered");
    await token.connect(f.payer).approve(f.other.address, 10n);
    await expect(token.connect(f.other).transferFrom(f.payer.address, f.other.address, 2n))
      .to.emit(token, "Reentered")
      .withArgs(true, ethers.toBeHex(1_000_000_000_000n, 32));
    expect(await token.reentered()).to.equal(true);
    expect(await token.lastCallSucceeded()).to.equal(true);
    expect(await token.hook()).to.equal(0n);
    await expect(token.connect(f.other).transferFrom(f.payer.address, f.other.address, 2n)).to.not.emit(
      token,
      "Reentered",
    );
    expect(await token.balanceOf(f.other.address)).to.equal(4n);
  });

  it("MockEURC is deployed by the local scripts with EURC's domain and opens a channel gaslessly like USDC", async () => {
    const address = (await deployments.get("MockEURC")).address;
    const eurc = (await ethers.getContractAt("MockEURC", address)) as unknown as MockEURC;
    expect([await eurc.name(), await eurc.symbol(), await eurc.decimals()]).to.deep.equal(["EURC", "EURC", 6n]);
    const domain = usdcDomain(f.chainId, address, "EURC", "2");
    expect(await eurc.DOMAIN_SEPARATOR()).to.equal(ethers.TypedDataEncoder.hashDomain(domain));
    expect(await eurc.DOMAIN_SEPARATOR()).to.not.equal(await f.usdc.DOMAIN_SEPARATOR());
    await eurc.mint(f.payer.address, 5_000_000n);

    const salt = ethers.id("eurc channel") as Hex;
    const delay = 3600;
    const channelsAddress = await f.channels.getAddress();
    const nonce = openAuthorizationNonce({
      payee: f.payee.address as Hex,
      signer: f.session.address as Hex,
      withdrawDelay: delay,
      salt,
    });
    const message = { from: f.payer.address, to: channelsAddress, value: 2_000_000n, validAfter: 0n, nonce };
    const expired = await signReceiveAuthorization(f.payer, domain, { ...message, validBefore: 1n });
    const args = [f.payer.address, f.payee.address, address, f.session.address, delay, 2_000_000n] as const;
    await expect(
      f.channels.connect(f.relayer).openWithAuthorization(...args, authorizationStruct(expired, 0n, 1n, salt)),
    ).to.be.revertedWithCustomError(eurc, "MockUSDCAuthorizationExpired");
    // Signed in USDC's domain: EURC refuses it.
    const validBefore = BigInt(await time.latest()) + 3600n;
    const wrongDomain = await signReceiveAuthorization(f.payer, usdcDomain(f.chainId, address), {
      ...message,
      validBefore,
    });
    await expect(
      f.channels
        .connect(f.relayer)
        .openWithAuthorization(...args, authorizationStruct(wrongDomain, 0n, validBefore, salt)),
    ).to.be.revertedWithCustomError(eurc, "MockUSDCInvalidSigner");

    const good = await signReceiveAuthorization(f.payer, domain, { ...message, validBefore });
    const id = await f.channels.nextChannelId(f.session.address);
    await expect(
      f.channels.connect(f.relayer).openWithAuthorization(...args, authorizationStruct(good, 0n, validBefore, salt)),
    )
      .to.emit(f.channels, "ChannelOpened")
      .withArgs(id, f.payer.address, f.payee.address, address, 2_000_000n, delay);
    expect(await eurc.balanceOf(channelsAddress)).to.equal(2_000_000n);
    expect(await eurc.authorizationState(f.payer.address, nonce)).to.equal(true);
  });

  it("MockPriceFeed answers latestRoundData like a Chainlink feed and takes new or back-dated answers", async () => {
    const address = (await deployments.get("MockEurUsdFeed")).address;
    const feed = (await ethers.getContractAt("MockPriceFeed", address)) as unknown as MockPriceFeed;
    expect(await feed.decimals()).to.equal(BigInt(MOCK_EUR_USD_DECIMALS));
    expect(await feed.description()).to.equal("EUR / USD");
    const [round1, answer1, , updated1, answeredIn1] = await feed.latestRoundData();
    expect([round1, answer1, answeredIn1]).to.deep.equal([1n, MOCK_EUR_USD_ANSWER, 1n]);
    expect(updated1).to.be.greaterThan(0n);

    await expect(feed.setAnswer(113_400_000n)).to.emit(feed, "AnswerUpdated");
    const now = BigInt(await time.latest());
    const [round2, answer2, startedAt2, updated2] = await feed.latestRoundData();
    expect([round2, answer2, startedAt2, updated2]).to.deep.equal([2n, 113_400_000n, now, now]);
    expect(await feed.latestAnswer()).to.equal(113_400_000n);

    await feed.setAnswerAt(100_000_000n, now - 7200n);
    const [, answer3, , updated3] = await feed.latestRoundData();
    expect([answer3, updated3]).to.deep.equal([100_000_000n, now - 7200n]);
    expect((await feed.getRoundData(1n))[1]).to.equal(MOCK_EUR_USD_ANSWER);
    await expect(feed.getRoundData(9n)).to.be.revertedWithCustomError(feed, "MockPriceFeedNoData").withArgs(9n);
    await expect(feed.setAnswerAt(1n, now + 1000n)).to.be.revertedWithCustomError(feed, "MockPriceFeedFutureTimestamp");
  });
});
