import { deployments, ethers } from "hardhat";
import type { HardhatEthersSigner } from "@nomicfoundation/hardhat-ethers/signers";
import type { ContractTransactionResponse, Signer, Wallet } from "ethers";
import { voucherDomain, type VoucherDomain } from "../../src/protocol/voucher";
import type { IERC20, MockUSDC, PaymentChannels } from "../../typechain-types";
import { authorizationStruct, signReceiveAuthorization, usdcDomain, type Hex, type TypedDataSigner } from "./signing";

export * from "./signing";
export * from "./events";

/** Tokens minted to `payer` and `other` by the fixture: 1,000,000 USDC (6 decimals). */
export const INITIAL_BALANCE = 1_000_000_000_000n;
/** Default channel deposit used by {openChannel}: 1,000 USDC. */
export const DEPOSIT = 1_000_000_000n;
/** Default withdraw delay used by {openChannel}: one hour. */
export const DELAY = 3600;

/** Everything a contract test needs, deployed by the hardhat-deploy "local" scripts. */
export interface Fixture {
  channels: PaymentChannels;
  usdc: MockUSDC;
  channelsAddress: Hex;
  usdcAddress: Hex;
  /** Account 0: deployed the contracts. */
  deployer: HardhatEthersSigner;
  /** Account 1: funds channels; holds INITIAL_BALANCE USDC, no allowance given. */
  payer: HardhatEthersSigner;
  /** Account 2: receives claims. */
  payee: HardhatEthersSigner;
  /** Account 3: a second payer or payee; holds INITIAL_BALANCE USDC. */
  other: HardhatEthersSigner;
  /** Account 4: submits transactions for others (gasless flows). */
  relayer: HardhatEthersSigner;
  /** Account 5: an adversary. */
  attacker: HardhatEthersSigner;
  /** An off-chain session key (never sends transactions); the default voucher signer of {openChannel}. */
  session: Wallet;
  chainId: number;
  /** The voucher EIP-712 domain of `channels` on this chain. */
  domain: VoucherDomain;
}

/**
 * Deploys MockUSDC and PaymentChannels with `deployments.fixture(["local"])` and funds two payers.
 * The first call deploys and snapshots; later calls revert to the snapshot, so each test can call
 * it in a `beforeEach` (or at its start) and get a fresh chain quickly.
 */
export const deployFixture = deployments.createFixture<Fixture, unknown>(async (hre) => {
  await hre.deployments.fixture(["local"]);
  const [deployer, payer, payee, other, relayer, attacker] = await hre.ethers.getSigners();
  const usdcAddress = (await hre.deployments.get("MockUSDC")).address as Hex;
  const channelsAddress = (await hre.deployments.get("PaymentChannels")).address as Hex;
  const usdc = (await hre.ethers.getContractAt("MockUSDC", usdcAddress)) as unknown as MockUSDC;
  const channels = (await hre.ethers.getContractAt("PaymentChannels", channelsAddress)) as unknown as PaymentChannels;
  const chainId = Number((await hre.ethers.provider.getNetwork()).chainId);
  await (await usdc.mint(payer.address, INITIAL_BALANCE)).wait();
  await (await usdc.mint(other.address, INITIAL_BALANCE)).wait();
  const session = new hre.ethers.Wallet(hre.ethers.id("paychan test session key"));
  return {
    channels,
    usdc,
    channelsAddress,
    usdcAddress,
    deployer,
    payer,
    payee,
    other,
    relayer,
    attacker,
    session,
    chainId,
    domain: voucherDomain(chainId, channelsAddress),
  };
});

/** Options of {openChannel}; every field has a default. */
export interface OpenChannelOptions {
  /** Funds the channel (default f.payer); must hold the tokens. */
  payer?: Signer;
  /** Default f.payee. */
  payee?: string;
  /** Token address (default USDC). */
  token?: string;
  /** Voucher signer (default f.session); the zero address means the payer. */
  signer?: string;
  /** Default DELAY. */
  withdrawDelay?: number;
  /** Amount pulled from the payer (default DEPOSIT). */
  amount?: bigint;
}

/** The channel id announced by the ChannelOpened event of a transaction. */
export async function openedChannelId(channels: PaymentChannels, tx: ContractTransactionResponse): Promise<bigint> {
  const receipt = await tx.wait();
  if (!receipt) throw new Error("no receipt");
  const address = (await channels.getAddress()).toLowerCase();
  for (const log of receipt.logs) {
    if (log.address.toLowerCase() !== address) continue;
    const parsed = channels.interface.parseLog(log);
    if (parsed?.name === "ChannelOpened") return parsed.args.channelId as bigint;
  }
  throw new Error("no ChannelOpened event");
}

/** Approves exactly `amount` and opens a channel with {PaymentChannels.open}; returns its id. */
export async function openChannel(f: Fixture, options: OpenChannelOptions = {}): Promise<bigint> {
  const payer = options.payer ?? f.payer;
  const token = options.token ?? f.usdcAddress;
  const amount = options.amount ?? DEPOSIT;
  const erc20 = (await ethers.getContractAt(
    "@openzeppelin/contracts/token/ERC20/IERC20.sol:IERC20",
    token,
    payer,
  )) as unknown as IERC20;
  await (await erc20.approve(f.channelsAddress, amount)).wait();
  const tx = await f.channels
    .connect(payer)
    .open(
      options.payee ?? f.payee.address,
      token,
      options.signer ?? f.session.address,
      options.withdrawDelay ?? DELAY,
      amount,
    );
  return openedChannelId(f.channels, tx);
}

/** Parameters of a gasless open signed by the payer. */
export interface OpenAuthorizationOptions {
  payee: string;
  signer: string;
  withdrawDelay: number;
  amount: bigint;
  salt: string;
  /** Default 0. */
  validAfter?: bigint;
  /** Default 2^48 (far future). */
  validBefore?: bigint;
}

/**
 * Has `payer` sign the EIP-3009 `receiveWithAuthorization` that {PaymentChannels.openWithAuthorization}
 * redeems (nonce = openAuthorizationNonce(payee, signer, withdrawDelay, salt)); returns the struct to pass.
 */
export async function signOpenAuthorization(
  f: Fixture,
  payer: TypedDataSigner & { getAddress(): Promise<string> },
  o: OpenAuthorizationOptions,
) {
  const validAfter = o.validAfter ?? 0n;
  const validBefore = o.validBefore ?? 1n << 48n;
  const nonce = await f.channels.openAuthorizationNonce(o.payee, o.signer, o.withdrawDelay, o.salt);
  const signature = await signReceiveAuthorization(payer, usdcDomain(f.chainId, f.usdcAddress), {
    from: await payer.getAddress(),
    to: f.channelsAddress,
    value: o.amount,
    validAfter,
    validBefore,
    nonce,
  });
  return authorizationStruct(signature, validAfter, validBefore, o.salt);
}

/**
 * Has `payer` sign the EIP-3009 authorization that {PaymentChannels.topUpWithAuthorization} redeems
 * (nonce = topUpAuthorizationNonce(channelId, salt)); returns the struct to pass.
 */
export async function signTopUpAuthorization(
  f: Fixture,
  payer: TypedDataSigner & { getAddress(): Promise<string> },
  channelId: bigint,
  amount: bigint,
  salt: string,
  validAfter = 0n,
  validBefore = 1n << 48n,
) {
  const nonce = await f.channels.topUpAuthorizationNonce(channelId, salt);
  const signature = await signReceiveAuthorization(payer, usdcDomain(f.chainId, f.usdcAddress), {
    from: await payer.getAddress(),
    to: f.channelsAddress,
    value: amount,
    validAfter,
    validBefore,
    nonce,
  });
  return authorizationStruct(signature, validAfter, validBefore, salt);
}
