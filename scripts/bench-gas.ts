import { ethers, deployments } from "hardhat";
import type { Signer } from "ethers";
import { encodeClaimItem, VOUCHER_TYPES, voucherDomain } from "../src/protocol/voucher";
import type { MockUSDC, PaymentChannels } from "../typechain-types";

/**
 * Gas figures of the channel contract on the in-process Hardhat chain: whole-transaction gas
 * used (21k base, calldata and payouts included). Prints a table, then one JSON line.
 */
const DEPOSIT = 1_000_000_000n; // 1,000 USDC
const DELAY = 3600;

interface Fixture {
  usdc: MockUSDC;
  channels: PaymentChannels;
  chainId: number;
  payee: Signer;
  payer: Signer;
}

async function setup(): Promise<Fixture> {
  await deployments.fixture(["local"]);
  const [payer, payee] = await ethers.getSigners();
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
  await (await usdc.connect(payer).approve(await channels.getAddress(), ethers.MaxUint256)).wait();
  return { usdc, channels, chainId: Number(chainId), payee, payer };
}

async function gasOf(tx: Promise<{ wait(): Promise<{ gasUsed: bigint } | null> }>): Promise<number> {
  const receipt = await (await tx).wait();
  if (!receipt) throw new Error("no receipt");
  return Number(receipt.gasUsed);
}

/** Opens `count` channels, each with its own session key, and returns signed vouchers for them. */
async function openChannels(f: Fixture, count: number, amount: bigint) {
  const domain = voucherDomain(f.chainId, (await f.channels.getAddress()) as `0x${string}`);
  const items: string[] = [];
  for (let i = 0; i < count; i++) {
    const session = ethers.Wallet.createRandom();
    const channelId = await f.channels.nextChannelId(session.address);
    await (
      await f.channels
        .connect(f.payer)
        .open(await f.payee.getAddress(), await f.usdc.getAddress(), session.address, DELAY, DEPOSIT)
    ).wait();
    const voucher = { channelId, cumulativeAmount: amount };
    const signature = await session.signTypedData(domain, { Voucher: [...VOUCHER_TYPES.Voucher] }, voucher);
    items.push(encodeClaimItem(voucher, signature as `0x${string}`));
  }
  return items;
}

async function main(): Promise<void> {
  const f = await setup();
  const payeeAddress = await f.payee.getAddress();
  const usdcAddress = await f.usdc.getAddress();
  const rows: [string, number][] = [];
  const perChannel: Record<string, number> = {};
  let calldataPerChannel = 0;

  // Warm the payee's token balance once so every batch pays the same steady-state transfer cost.
  const warm = await openChannels(f, 1, 1n);
  await (await f.channels.claimBatch(warm[0])).wait();

  for (const size of [1, 10, 100]) {
    const items = await openChannels(f, size, 1_000n);
    const data = ethers.concat(items);
    const tx = await f.channels.connect(f.payee).claimBatch(data);
    const gas = await gasOf(Promise.resolve(tx));
    perChannel[String(size)] = Math.round(gas / size);
    const bytes = ethers.getBytes(tx.data).length;
    if (size === 100) calldataPerChannel = Math.round((bytes / size) * 100) / 100;
    rows.push([`claimBatch of ${size} (per channel)`, perChannel[String(size)]]);
    rows.push([`claimBatch of ${size} calldata bytes per channel`, Math.round((bytes / size) * 100) / 100]);
  }

  const openGas = await gasOf(
    f.channels.connect(f.payer).open(payeeAddress, usdcAddress, ethers.ZeroAddress, DELAY, DEPOSIT),
  );
  const [single] = await openChannels(f, 1, 500n);
  const id = BigInt(single.slice(0, 2 + 46));
  const topUpGas = await gasOf(f.channels.connect(f.payer).topUp(id, DEPOSIT));
  const session = ethers.Wallet.createRandom();
  const claimId = await f.channels.nextChannelId(session.address);
  await (await f.channels.connect(f.payer).open(payeeAddress, usdcAddress, session.address, DELAY, DEPOSIT)).wait();
  const domain = voucherDomain(f.chainId, (await f.channels.getAddress()) as `0x${string}`);
  const sig1 = await session.signTypedData(
    domain,
    { Voucher: [...VOUCHER_TYPES.Voucher] },
    { channelId: claimId, cumulativeAmount: 100n },
  );
  const claimGas = await gasOf(f.channels.connect(f.payee).claim(claimId, 100n, sig1));
  const sig2 = await session.signTypedData(
    domain,
    { Voucher: [...VOUCHER_TYPES.Voucher] },
    { channelId: claimId, cumulativeAmount: 200n },
  );
  const cooperativeCloseGas = await gasOf(f.channels.connect(f.payee).close(claimId, 200n, sig2));

  rows.unshift(
    ["open (approve already given)", openGas],
    ["topUp", topUpGas],
    ["claim (one voucher)", claimGas],
    ["close (payee, final voucher + refund)", cooperativeCloseGas],
  );
  console.table(Object.fromEntries(rows.map(([k, v]) => [k, { gas: v }])));
  console.log(
    JSON.stringify({
      openGas,
      topUpGas,
      claimGas,
      claimBatchGasPerChannel: perChannel,
      claimBatchCalldataBytesPerChannel: calldataPerChannel,
      cooperativeCloseGas,
    }),
  );
}

main().catch((error: unknown) => {
  console.error(error);
  process.exitCode = 1;
});
