import fs from "node:fs";
import path from "node:path";
import { ethers, deployments, config, run } from "hardhat";
import { time } from "@nomicfoundation/hardhat-network-helpers";
import type { Signer } from "ethers";
import { openAuthorizationNonce, receiveWithAuthorizationTypedData } from "../src/protocol/authorization";
import { encodeClaimItem, VOUCHER_TYPES, voucherDomain } from "../src/protocol/voucher";
import type { MockUSDC, PaymentChannels } from "../typechain-types";

/**
 * Gas figures of the channel contract on the in-process Hardhat chain: whole-transaction gas
 * used (21k base, calldata and payouts included), measured in steady state (the payee and payer
 * already hold tokens). Prints a table, then one JSON line as the last line of stdout.
 *
 * Snapshot: with `--snapshot` (argument) or GAS_SNAPSHOT=1 (environment) the JSON is also written
 * to gas-snapshot.json at the repository root, so gas changes show up in review. `hardhat run`
 * cannot forward arguments, hence the two forms:
 *
 *   npx hardhat run scripts/bench-gas.ts                          # measure only
 *   GAS_SNAPSHOT=1 npx hardhat run scripts/bench-gas.ts           # measure and write the snapshot
 *   npm run bench:gas:snapshot  # same, without `hardhat run`
 */
const DEPOSIT = 1_000_000_000n; // 1,000 USDC
const DELAY = 3600;
/** A realistic cumulative voucher amount: $0.25 (3 non-zero bytes in the 12-byte amount field). */
const VOUCHER_AMOUNT = 250_000n;
const SNAPSHOT_FILE = "gas-snapshot.json";

interface Fixture {
  usdc: MockUSDC;
  channels: PaymentChannels;
  chainId: number;
  payee: Signer;
  payer: Signer;
  /** A second funded payer that has never signed anything (for the gasless open). */
  gaslessPayer: Signer;
}

interface GasFigures {
  openGas: number;
  openWithAuthorizationGas: number;
  topUpGas: number;
  claimGas: number;
  claimBatchGasPerChannel: { "1": number; "10": number; "100": number };
  claimBatchCalldataBytesPerChannel: number;
  cooperativeCloseGas: number;
  finalizeWithdrawGas: number;
}

async function setup(): Promise<Fixture> {
  await deployments.fixture(["local"]);
  const [payer, payee, gaslessPayer] = await ethers.getSigners();
  const usdc = (await ethers.getContractAt(
    "MockUSDC",
    (await deployments.get("MockUSDC")).address,
  )) as unknown as MockUSDC;
  const channels = (await ethers.getContractAt(
    "PaymentChannels",
    (await deployments.get("PaymentChannels")).address,
  )) as unknown as PaymentChannels;
  const { chainId } = await ethers.provider.getNetwork();
  await (await usdc.mint(await payer.getAddress(), 10n ** 15n)).wait();
  await (await usdc.mint(await gaslessPayer.getAddress(), 10n ** 15n)).wait();
  await (await usdc.connect(payer).approve(await channels.getAddress(), ethers.MaxUint256)).wait();
  return { usdc, channels, chainId: Number(chainId), payee, payer, gaslessPayer };
}

async function gasOf(tx: Promise<{ wait(): Promise<{ gasUsed: bigint } | null> }>): Promise<number> {
  const receipt = await (await tx).wait();
  if (!receipt) throw new Error("no receipt");
  return Number(receipt.gasUsed);
}

async function signVoucher(f: Fixture, key: Signer, channelId: bigint, cumulativeAmount: bigint): Promise<string> {
  const domain = voucherDomain(f.chainId, (await f.channels.getAddress()) as `0x${string}`);
  return key.signTypedData(domain, { Voucher: [...VOUCHER_TYPES.Voucher] }, { channelId, cumulativeAmount });
}

let sessionCount = 0;

/**
 * A fresh session key. Keys (and so channel ids and the RFC 6979 signatures) are derived from a
 * fixed seed so every run sends byte-identical calldata: each zero byte in an id or a signature
 * costs 12 gas less than a non-zero one, so random keys would make the figures jitter.
 */
function nextSessionKey() {
  return new ethers.Wallet(ethers.id(`paychan bench-gas session ${sessionCount++}`));
}

/** Opens a channel from the main payer to the payee with a fresh session key. */
async function openChannel(f: Fixture) {
  const session = nextSessionKey();
  const channelId = await f.channels.nextChannelId(session.address);
  await (
    await f.channels
      .connect(f.payer)
      .open(await f.payee.getAddress(), await f.usdc.getAddress(), session.address, DELAY, DEPOSIT)
  ).wait();
  return { session, channelId };
}

/** Opens `count` channels, each with its own session key, and returns a signed batch item for each. */
async function openChannels(f: Fixture, count: number, amount: bigint): Promise<string[]> {
  const items: string[] = [];
  for (let i = 0; i < count; i++) {
    const { session, channelId } = await openChannel(f);
    const signature = await signVoucher(f, session, channelId, amount);
    items.push(encodeClaimItem({ channelId, cumulativeAmount: amount }, signature as `0x${string}`));
  }
  return items;
}

/** openWithAuthorization by a relayer (the payee's account) for a payer who signed an EIP-3009 authorization. */
async function measureOpenWithAuthorization(f: Fixture): Promise<number> {
  const payer = (await f.gaslessPayer.getAddress()) as `0x${string}`;
  const payee = (await f.payee.getAddress()) as `0x${string}`;
  const channelsAddress = (await f.channels.getAddress()) as `0x${string}`;
  const usdcAddress = (await f.usdc.getAddress()) as `0x${string}`;
  const salt = ethers.id("paychan bench-gas salt") as `0x${string}`;
  const signer = ethers.ZeroAddress as `0x${string}`; // the payer signs its own vouchers, as in `open`
  const nonce = openAuthorizationNonce({ payee, signer, withdrawDelay: DELAY, salt });
  const validBefore = 4_102_444_800n; // 2100-01-01: fixed, so the calldata does not depend on the clock
  const typed = receiveWithAuthorizationTypedData(
    { name: "USD Coin", version: "2", chainId: f.chainId, verifyingContract: usdcAddress },
    { from: payer, to: channelsAddress, value: DEPOSIT, validAfter: 0n, validBefore, nonce },
  );
  const signature = ethers.Signature.from(
    await f.gaslessPayer.signTypedData(
      typed.domain,
      { ReceiveWithAuthorization: [...typed.types.ReceiveWithAuthorization] },
      typed.message,
    ),
  );
  return gasOf(
    f.channels.connect(f.payee).openWithAuthorization(payer, payee, usdcAddress, signer, DELAY, DEPOSIT, {
      validAfter: 0n,
      validBefore,
      salt,
      v: signature.v,
      r: signature.r,
      s: signature.s,
    }),
  );
}

function readSnapshot(file: string): Partial<GasFigures> | undefined {
  try {
    return JSON.parse(fs.readFileSync(file, "utf8")) as Partial<GasFigures>;
  } catch {
    return undefined;
  }
}

async function main(): Promise<void> {
  await run("compile", { quiet: true }); // no-op under `hardhat run`; needed when run by plain node
  const f = await setup();
  const payeeAddress = await f.payee.getAddress();
  const usdcAddress = await f.usdc.getAddress();
  const perChannel = { "1": 0, "10": 0, "100": 0 };
  let calldataPerChannel = 0;
  const calldataBySize: Record<string, number> = {};

  // Warm the payee's token balance once so every batch pays the same steady-state transfer cost.
  const warm = await openChannels(f, 1, VOUCHER_AMOUNT);
  await (await f.channels.claimBatch(warm[0])).wait();

  for (const size of [1, 10, 100] as const) {
    const items = await openChannels(f, size, VOUCHER_AMOUNT);
    const tx = await f.channels.connect(f.payee).claimBatch(ethers.concat(items));
    const gas = await gasOf(Promise.resolve(tx));
    const last = await f.channels.getChannel(BigInt(items[size - 1].slice(0, 2 + 46)));
    if (last.claimed !== VOUCHER_AMOUNT) throw new Error(`batch of ${size} did not claim its last item`);
    perChannel[String(size) as "1" | "10" | "100"] = Math.round(gas / size);
    const bytesPerChannel = Math.round((ethers.getBytes(tx.data).length / size) * 100) / 100;
    calldataBySize[String(size)] = bytesPerChannel;
    if (size === 100) calldataPerChannel = bytesPerChannel;
  }

  const openGas = await gasOf(
    f.channels.connect(f.payer).open(payeeAddress, usdcAddress, ethers.ZeroAddress, DELAY, DEPOSIT),
  );
  const openWithAuthorizationGas = await measureOpenWithAuthorization(f);

  const topped = await openChannel(f);
  const topUpGas = await gasOf(f.channels.connect(f.payer).topUp(topped.channelId, DEPOSIT));

  const claimed = await openChannel(f);
  const claimGas = await gasOf(
    f.channels
      .connect(f.payee)
      .claim(
        claimed.channelId,
        VOUCHER_AMOUNT,
        await signVoucher(f, claimed.session, claimed.channelId, VOUCHER_AMOUNT),
      ),
  );
  const finalAmount = 2n * VOUCHER_AMOUNT;
  const cooperativeCloseGas = await gasOf(
    f.channels
      .connect(f.payee)
      .close(claimed.channelId, finalAmount, await signVoucher(f, claimed.session, claimed.channelId, finalAmount)),
  );

  // Payer exit: the payee claimed part of the deposit, the payer requests, waits and finalizes.
  const exiting = await openChannel(f);
  await (
    await f.channels
      .connect(f.payee)
      .claim(
        exiting.channelId,
        VOUCHER_AMOUNT,
        await signVoucher(f, exiting.session, exiting.channelId, VOUCHER_AMOUNT),
      )
  ).wait();
  await (await f.channels.connect(f.payer).requestWithdrawal(exiting.channelId)).wait();
  await time.increase(DELAY);
  const finalizeWithdrawGas = await gasOf(f.channels.connect(f.payer).finalizeWithdrawal(exiting.channelId));

  const figures: GasFigures = {
    openGas,
    openWithAuthorizationGas,
    topUpGas,
    claimGas,
    claimBatchGasPerChannel: perChannel,
    claimBatchCalldataBytesPerChannel: calldataPerChannel,
    cooperativeCloseGas,
    finalizeWithdrawGas,
  };

  const snapshotPath = path.join(config.paths.root, SNAPSHOT_FILE);
  const previous = readSnapshot(snapshotPath);
  const row = (gas: number, before: number | undefined) => ({
    gas,
    [SNAPSHOT_FILE]: before ?? "-",
    delta: before === undefined ? "-" : gas - before,
  });
  console.log(`Whole-transaction gasUsed; cumulative voucher amount ${VOUCHER_AMOUNT} atomic units.`);
  console.table({
    "open (approve already given)": row(openGas, previous?.openGas),
    "openWithAuthorization (EIP-3009, relayed)": row(openWithAuthorizationGas, previous?.openWithAuthorizationGas),
    topUp: row(topUpGas, previous?.topUpGas),
    "claim (one voucher)": row(claimGas, previous?.claimGas),
    "close (payee, final voucher + refund)": row(cooperativeCloseGas, previous?.cooperativeCloseGas),
    "finalizeWithdrawal (after the delay)": row(finalizeWithdrawGas, previous?.finalizeWithdrawGas),
    ...Object.fromEntries(
      (["1", "10", "100"] as const).flatMap((size) => [
        [`claimBatch of ${size} (per channel)`, row(perChannel[size], previous?.claimBatchGasPerChannel?.[size])],
        [
          `claimBatch of ${size} calldata bytes per channel`,
          row(calldataBySize[size], size === "100" ? previous?.claimBatchCalldataBytesPerChannel : undefined),
        ],
      ]),
    ),
  });

  const snapshot = process.argv.includes("--snapshot") || process.env.GAS_SNAPSHOT === "1";
  if (snapshot) {
    fs.writeFileSync(snapshotPath, `${JSON.stringify(figures, null, 2)}\n`);
    console.log(`wrote ${path.relative(process.cwd(), snapshotPath) || SNAPSHOT_FILE}`);
  }
  console.log(JSON.stringify(figures));
}

main().catch((error: unknown) => {
  console.error(error);
  process.exitCode = 1;
});
