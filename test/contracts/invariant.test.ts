import { expect } from "chai";
import hre, { ethers, network } from "hardhat";
import { Interface, Signature, Wallet, getAddress, id as hashString, toBeHex } from "ethers";
import type { Address, Hex } from "viem";
import {
  openAuthorizationNonce,
  receiveWithAuthorizationTypedData,
  type TokenDomain,
} from "../../src/protocol/authorization";
import {
  MAX_AMOUNT,
  channelIdFor,
  decodeClaimRecords,
  encodeClaimItem,
  voucherDigest,
  voucherDomain,
  type VoucherDomain,
} from "../../src/protocol/voucher";
import type { MockUSDC, PaymentChannels } from "../../typechain-types";
import { createRandom } from "../helpers/random";

/*
 * Seeded random walk over the channel contract with a TypeScript model of every channel and
 * balance. After every operation one eth_call reads every channel, every balance and every owed()
 * entry, and the test asserts:
 *   - solvency: token.balanceOf(contract) == Σ open channels (deposit - claimed) + Σ owed, per token;
 *   - owed() stays 0 (the tokens are well behaved);
 *   - getChannel(id) equals the model for every channel ever opened (and unknown ids read as zero);
 *   - no channel has paid out more than the highest voucher its signer signed;
 *   - every account's token balance equals the model, and no tokens leave the known accounts.
 * Expected refusals are checked with eth_call (no state change): they must revert with the error named.
 *
 * To reproduce a failure, keep SEED; the run is deterministic (keys, amounts and block times all
 * derive from it).
 */

const SEED = 0x2f6a_91c3;
/** Under `hardhat coverage` every opcode is traced; a shorter walk still reaches every line. */
const UNDER_COVERAGE = (hre as { __SOLIDITY_COVERAGE_RUNNING?: boolean }).__SOLIDITY_COVERAGE_RUNNING === true;
const OPERATIONS = UNDER_COVERAGE ? 300 : 2_000;
const MIN_DELAY = 15 * 60;
const MAX_DELAY = 30 * 24 * 3600;
const TX_GAS = "0x2dc6c0"; // 3,000,000
const MINTED = 10n ** 15n; // per payer and token
const SKIP = { UnknownChannel: 0, ChannelClosed: 1, StaleAmount: 2, AmountExceedsDeposit: 3, InvalidSignature: 4 };

/**
 * Runtime code of a read batcher, installed with hardhat_setCode. Calldata is a tight list of
 * target (20 bytes) | length (2 bytes) | call data; it staticcalls each and returns the
 * concatenated return data (reverting if a call fails). solc 0.8.30 --strict-assembly --optimize of:
 *
 *   object "BatchReader" { code {
 *     let out := 0x100
 *     for { let p := 0 } lt(p, calldatasize()) { } {
 *       let len := shr(240, calldataload(add(p, 20)))
 *       calldatacopy(0, add(p, 22), len)
 *       if iszero(staticcall(gas(), shr(96, calldataload(p)), 0, len, 0, 0)) { revert(0, 0) }
 *       returndatacopy(out, 0, returndatasize())
 *       out := add(out, returndatasize())
 *       p := add(add(p, 22), len)
 *     }
 *     return(0x100, sub(out, 0x100))
 *   } }
 *
 * The test checks the reader against direct calls before relying on it.
 */
const READER_CODE =
  "0x6101005f5b3681106014575060ff1901610100f35b90601482013560f01c80601684015f375f808281863560601c5afa156043576016913d5f823e3d019201016004565b5f80fd";
const READER_ADDRESS = "0x00000000000000000000000000000000CA11AB1E";

interface Actor {
  readonly name: string;
  readonly address: string;
  readonly wallet: Wallet;
  /** Session keys this actor created (payers only). */
  readonly sessions: Wallet[];
  /** Whether it approves the exact amount before every pull instead of an unlimited allowance once. */
  readonly exactApprove: boolean;
}

interface Token {
  readonly index: number;
  readonly contract: MockUSDC;
  readonly address: string;
  readonly domain: TokenDomain;
}

interface ModelChannel {
  readonly id: bigint;
  readonly payer: Actor;
  readonly payee: Actor;
  readonly token: Token;
  readonly signer: Wallet;
  readonly withdrawDelay: number;
  deposit: bigint;
  claimed: bigint;
  withdrawReadyAt: number;
  status: 1 | 2;
  /** Highest cumulative amount the channel's signer has signed (0 if none). */
  maxSigned: bigint;
  /** getChannel words 0-3 (payer, payee, token, signer) as hex, for the per-step comparison. */
  readonly staticWords: string;
}

interface JsonReceipt {
  status: string;
  logs: { address: string; topics: string[]; data: string }[];
}

type Expected =
  { kind: "claimed"; id: bigint; amount: bigint } | { kind: "skipped"; id: bigint; amount: bigint; reason: number };

/** A 32-byte ABI word as 64 hex digits (no 0x); values are non-negative. */
const word = (value: bigint | number | string): string => BigInt(value).toString(16).padStart(64, "0");

describe("PaymentChannels invariants under a seeded random walk", function () {
  // Generous: the target is well under a minute on two cores.
  this.timeout(300_000);

  const { next: rand, int, chance, pick, below } = createRandom(SEED);
  /** lo + a uniform 96-bit draw mod the range size. */
  const randBig = (lo: bigint, hi: bigint): bigint => lo + (below(96, { shape: "uniform" }) % (hi - lo + 1n));
  let keyCount = 0;
  const newKey = (): Wallet => new Wallet(hashString(`paychan invariant ${SEED} key ${keyCount++}`));

  const provider = network.provider;
  let channels: PaymentChannels;
  let channelsAddress: string;
  let usdcInterface: Interface;
  let domain: VoucherDomain;
  let snapshotId: string;
  const tokens: Token[] = [];
  const payers: Actor[] = [];
  const payees: Actor[] = [];
  let relayer: Actor;
  let everyone: Actor[];
  const model: ModelChannel[] = [];
  const nonces = new Map<string, bigint>();
  const balances = new Map<string, bigint>(); // `${token}:${account}`
  let now = 0; // timestamp of the last mined block, set by the test

  const opCounts: Record<string, number> = {};
  const batchItemCounts: Record<string, number> = {};
  const refusalCounts: Record<string, number> = {};
  const bump = (counts: Record<string, number>, key: string): void => {
    counts[key] = (counts[key] ?? 0) + 1;
  };

  // ------------------------------------------------------------------ chain access

  /** Mines one transaction at a chosen timestamp and returns that timestamp; any revert fails the test. */
  async function send(
    from: Actor,
    to: string,
    data: string,
    atLeast = 0,
  ): Promise<{ receipt: JsonReceipt; ts: number }> {
    const ts = Math.max(now + 1 + int(12), atLeast);
    await provider.request({ method: "evm_setNextBlockTimestamp", params: [ts] });
    const hash = await provider.request({
      method: "eth_sendTransaction",
      params: [{ from: from.address, to, data, gas: TX_GAS }],
    });
    const receipt = (await provider.request({ method: "eth_getTransactionReceipt", params: [hash] })) as JsonReceipt;
    expect(receipt.status, "transaction status").to.equal("0x1");
    now = ts;
    return { receipt, ts };
  }

  function revertData(error: unknown): string | undefined {
    let e: unknown = error;
    for (let depth = 0; depth < 4 && e && typeof e === "object"; depth++) {
      const data = (e as { data?: unknown }).data;
      if (typeof data === "string" && data.startsWith("0x")) return data;
      if (data && typeof data === "object" && typeof (data as { data?: unknown }).data === "string") {
        return (data as { data: string }).data;
      }
      e = (e as { error?: unknown; cause?: unknown }).error ?? (e as { cause?: unknown }).cause;
    }
    return undefined;
  }

  /** Asserts that `data` sent by `from` reverts with the custom error `errorName` (checked with eth_call). */
  async function expectRefused(from: Actor, to: string, data: string, errorName: string): Promise<void> {
    let outcome = "it succeeded";
    try {
      await provider.request({ method: "eth_call", params: [{ from: from.address, to, data, gas: TX_GAS }, "latest"] });
    } catch (error) {
      const raw = revertData(error);
      const parsed = raw ? (channels.interface.parseError(raw) ?? usdcInterface.parseError(raw)) : null;
      outcome = parsed ? parsed.name : `it reverted with ${raw ?? String(error)}`;
    }
    expect(outcome, `expected ${errorName}`).to.equal(errorName);
    bump(refusalCounts, errorName);
  }

  const balanceKey = (token: Token, account: string): string => `${token.index}:${account.toLowerCase()}`;
  const credit = (token: Token, account: Actor, amount: bigint): void => {
    const key = balanceKey(token, account.address);
    balances.set(key, (balances.get(key) ?? 0n) + amount);
  };

  // ------------------------------------------------------------------ invariant check

  const callItem = (target: string, data: string): string =>
    target.toLowerCase().slice(2) + toBeHex((data.length - 2) / 2, 2).slice(2) + data.slice(2);
  let readerHeader = ""; // token and account reads
  let readerChannels = ""; // one getChannel per model channel, in model order
  let headerWords = 0;
  const UNKNOWN_IDS = [channelIdFor(READER_ADDRESS as Address, 0xffffffn), (1n << 184n) | 1n];

  function buildHeader(): void {
    const parts: string[] = [];
    for (const token of tokens)
      parts.push(callItem(token.address, encode(usdcInterface, "balanceOf", [channelsAddress])));
    for (const token of tokens) {
      for (const actor of everyone) {
        parts.push(callItem(token.address, encode(usdcInterface, "balanceOf", [actor.address])));
        parts.push(
          callItem(channelsAddress, channels.interface.encodeFunctionData("owed", [actor.address, token.address])),
        );
      }
    }
    for (const id of UNKNOWN_IDS) {
      parts.push(callItem(channelsAddress, channels.interface.encodeFunctionData("getChannel", [id])));
    }
    readerHeader = parts.join("");
    headerWords = tokens.length * (1 + 2 * everyone.length) + 9 * UNKNOWN_IDS.length;
  }

  function encode(iface: Interface, fn: string, args: unknown[]): string {
    return iface.encodeFunctionData(fn, args);
  }

  async function readAll(): Promise<string> {
    return (await provider.request({
      method: "eth_call",
      params: [{ to: READER_ADDRESS, data: "0x" + readerHeader + readerChannels }, "latest"],
    })) as string;
  }

  const dynamicWords = (c: ModelChannel): string =>
    word(c.deposit) + word(c.claimed) + word(c.withdrawDelay) + word(c.withdrawReadyAt) + word(c.status);

  function decodeChannel(hex: string) {
    const w = (i: number): bigint => BigInt("0x" + hex.slice(i * 64, (i + 1) * 64));
    return {
      payer: getAddress(toBeHex(w(0), 20)),
      payee: getAddress(toBeHex(w(1), 20)),
      token: getAddress(toBeHex(w(2), 20)),
      signer: getAddress(toBeHex(w(3), 20)),
      deposit: w(4),
      claimed: w(5),
      withdrawDelay: w(6),
      withdrawReadyAt: w(7),
      status: w(8),
    };
  }

  async function checkInvariants(context: string): Promise<void> {
    const result = (await readAll()).slice(2);
    const at = (wordIndex: number): bigint => BigInt("0x" + result.slice(wordIndex * 64, (wordIndex + 1) * 64));
    expect(result.length, `${context}: reader output size`).to.equal((headerWords + 9 * model.length) * 64);

    // Channels: every one ever opened matches the model; unknown ids read as all zero.
    let offset = headerWords * 64;
    for (const c of model) {
      const actual = result.slice(offset, offset + 9 * 64);
      const expected = c.staticWords + dynamicWords(c);
      // Plain comparisons first: chai is only invoked to report a failure (this loop runs ~10^5 times).
      if (actual !== expected) {
        expect(decodeChannel(actual), `${context}: channel ${c.id}`).to.deep.equal(decodeChannel(expected));
      }
      if (c.claimed > c.maxSigned) {
        expect.fail(`${context}: channel ${c.id} paid ${c.claimed}, beyond its highest voucher ${c.maxSigned}`);
      }
      offset += 9 * 64;
    }
    const unknownStart = (headerWords - 9 * UNKNOWN_IDS.length) * 64;
    expect(result.slice(unknownStart, headerWords * 64), `${context}: unknown ids`).to.equal(
      "0".repeat(9 * 64 * UNKNOWN_IDS.length),
    );

    // Balances, owed and solvency, per token.
    let i = 0;
    const contractBalances = tokens.map(() => at(i++));
    for (const token of tokens) {
      let owedTotal = 0n;
      let held = 0n;
      for (const actor of everyone) {
        const balance = at(i++);
        const owed = at(i++);
        if (owed !== 0n) expect(owed, `${context}: owed(${actor.name}, token ${token.index})`).to.equal(0n);
        owedTotal += owed;
        held += balance;
        const expected = balances.get(balanceKey(token, actor.address)) ?? 0n;
        if (balance !== expected) {
          expect(balance, `${context}: balance of ${actor.name} in token ${token.index}`).to.equal(expected);
        }
      }
      let locked = 0n;
      for (const c of model) if (c.token === token && c.status === 1) locked += c.deposit - c.claimed;
      const balance = contractBalances[token.index];
      if (balance !== locked + owedTotal) {
        expect(balance, `${context}: solvency of token ${token.index}`).to.equal(locked + owedTotal);
      }
      if (held + balance !== MINTED * BigInt(payers.length)) {
        expect(held + balance, `${context}: token ${token.index} supply left the known accounts`).to.equal(
          MINTED * BigInt(payers.length),
        );
      }
    }
  }

  // ------------------------------------------------------------------ model helpers

  const openChannels = (): ModelChannel[] => model.filter((c) => c.status === 1);
  const signerAddressArg = (payer: Actor, signer: Wallet): string =>
    signer === payer.wallet ? (chance(0.5) ? ethers.ZeroAddress : payer.address) : signer.address;

  function chooseSigner(payer: Actor): Wallet {
    const r = rand();
    if (r < 0.2) return payer.wallet;
    if (r < 0.45 && payer.sessions.length > 0) return pick(payer.sessions);
    const key = newKey();
    payer.sessions.push(key);
    return key;
  }

  const randomAmount = (): bigint => (chance(0.5) ? randBig(1n, 1_000_000n) : randBig(1n, 1_000_000_000n));
  const randomDelay = (): number =>
    chance(0.3) ? pick([MIN_DELAY, MAX_DELAY, MIN_DELAY + 1]) : MIN_DELAY + int(MAX_DELAY - MIN_DELAY + 1);

  /** Signs a voucher with `key`; a signature by the channel's own signer raises its maxSigned. */
  function sign(c: ModelChannel | undefined, id: bigint, amount: bigint, key: Wallet): Signature {
    if (c && key === c.signer && amount > c.maxSigned) c.maxSigned = amount;
    return key.signingKey.sign(voucherDigest(domain, { channelId: id, cumulativeAmount: amount }));
  }

  /** A fresh amount for a claimable voucher: above what was claimed, within the deposit. */
  function nextAmount(c: ModelChannel): bigint {
    const room = c.deposit - c.claimed;
    if (chance(0.1)) return c.deposit;
    return c.claimed + randBig(1n, chance(0.7) && room > 500_000n ? 500_000n : room);
  }

  function recordOpen(payer: Actor, payee: Actor, token: Token, signer: Wallet, delay: number, amount: bigint) {
    const nonce = nonces.get(signer.address) ?? 0n;
    nonces.set(signer.address, nonce + 1n);
    const id = channelIdFor(signer.address as Address, nonce);
    const c: ModelChannel = {
      id,
      payer,
      payee,
      token,
      signer,
      withdrawDelay: delay,
      deposit: amount,
      claimed: 0n,
      withdrawReadyAt: 0,
      status: 1,
      maxSigned: 0n,
      staticWords: word(payer.address) + word(payee.address) + word(token.address) + word(signer.address),
    };
    model.push(c);
    readerChannels += callItem(channelsAddress, channels.interface.encodeFunctionData("getChannel", [id]));
    credit(token, payer, -amount);
    return c;
  }

  /** The payee receives the increase; the channel records the new cumulative amount. */
  function recordClaim(c: ModelChannel, amount: bigint): void {
    credit(c.token, c.payee, amount - c.claimed);
    c.claimed = amount;
  }

  function recordClose(c: ModelChannel): void {
    credit(c.token, c.payer, c.deposit - c.claimed);
    c.status = 2;
  }

  async function approveIfNeeded(payer: Actor, token: Token, amount: bigint): Promise<void> {
    if (!payer.exactApprove) return;
    await send(payer, token.address, encode(usdcInterface, "approve", [channelsAddress, amount]));
    bump(opCounts, "approve (exact, extra tx)");
  }

  // ------------------------------------------------------------------ operations

  async function opOpen(): Promise<void> {
    const payer = pick(payers);
    const payee = pick(payees);
    const token = pick(tokens);
    const signer = chooseSigner(payer);
    const delay = randomDelay();
    const amount = randomAmount();
    const signerArg = signerAddressArg(payer, signer);
    await approveIfNeeded(payer, token, amount);
    const openData = (d: number, a: bigint) =>
      channels.interface.encodeFunctionData("open", [payee.address, token.address, signerArg, d, a]);
    if (chance(0.1)) {
      const bad = chance(0.5) ? MIN_DELAY - 1 : MAX_DELAY + 1;
      await expectRefused(payer, channelsAddress, openData(bad, amount), "PaymentChannelsInvalidWithdrawDelay");
    }
    if (chance(0.05)) await expectRefused(payer, channelsAddress, openData(delay, 0n), "PaymentChannelsInvalidAmount");
    await send(payer, channelsAddress, openData(delay, amount));
    recordOpen(payer, payee, token, signer, delay, amount);
  }

  async function opOpenWithAuthorization(): Promise<void> {
    const payer = pick(payers);
    const payee = pick(payees);
    const token = pick(tokens);
    const signer = chooseSigner(payer);
    const signerArg = signerAddressArg(payer, signer);
    const delay = randomDelay();
    const amount = randomAmount();
    const salt = toBeHex(randBig(0n, (1n << 256n) - 1n), 32) as Hex;
    const validBefore = BigInt(now + 3600);
    const nonce = openAuthorizationNonce({
      payee: payee.address as Address,
      signer: signerArg as Address,
      withdrawDelay: delay,
      salt,
    });
    const typed = receiveWithAuthorizationTypedData(token.domain, {
      from: payer.address as Address,
      to: channelsAddress as Address,
      value: amount,
      validAfter: 0n,
      validBefore,
      nonce,
    });
    const sig = Signature.from(
      await payer.wallet.signTypedData(
        typed.domain,
        { ReceiveWithAuthorization: [...typed.types.ReceiveWithAuthorization] },
        typed.message,
      ),
    );
    const auth = { validAfter: 0n, validBefore, salt, v: sig.v, r: sig.r, s: sig.s };
    const submitter = pick([relayer, payee, ...payers]);
    const call = (to: Actor, d: number) =>
      channels.interface.encodeFunctionData("openWithAuthorization", [
        payer.address,
        to.address,
        token.address,
        signerArg,
        d,
        amount,
        auth,
      ]);
    if (chance(0.15)) {
      // A relayer cannot redirect the channel or change its delay: the nonce would not match the signature.
      const other = payees.find((p) => p !== payee) ?? payee;
      const tampered = chance(0.5) ? call(other, delay) : call(payee, delay === MAX_DELAY ? delay - 1 : delay + 1);
      await expectRefused(submitter, channelsAddress, tampered, "MockUSDCInvalidSigner");
    }
    await send(submitter, channelsAddress, call(payee, delay));
    recordOpen(payer, payee, token, signer, delay, amount);
    if (chance(0.1)) await expectRefused(relayer, channelsAddress, call(payee, delay), "MockUSDCAuthorizationUsed");
  }

  async function opTopUp(candidates: ModelChannel[]): Promise<void> {
    const c = pick(candidates);
    const amount = randomAmount();
    const data = channels.interface.encodeFunctionData("topUp", [c.id, amount]);
    if (c.withdrawReadyAt !== 0) {
      // Rule: a pending withdrawal freezes the deposit. The payer cancels first, then tops up.
      await expectRefused(c.payer, channelsAddress, data, "PaymentChannelsWithdrawalPending");
      await send(c.payer, channelsAddress, channels.interface.encodeFunctionData("cancelWithdrawal", [c.id]));
      c.withdrawReadyAt = 0;
      bump(opCounts, "cancelWithdrawal (before topUp)");
    }
    if (chance(0.05)) await expectRefused(c.payee, channelsAddress, data, "PaymentChannelsUnauthorized");
    await approveIfNeeded(c.payer, c.token, amount);
    await send(c.payer, channelsAddress, data);
    credit(c.token, c.payer, -amount);
    c.deposit += amount;
  }

  async function opClaim(candidates: ModelChannel[]): Promise<void> {
    const c = pick(candidates);
    const amount = nextAmount(c);
    const sig = sign(c, c.id, amount, c.signer);
    const claimData = (a: bigint, s: string) => channels.interface.encodeFunctionData("claim", [c.id, a, s]);
    if (chance(0.2)) {
      const r = rand();
      if (r < 0.25 && c.claimed > 0n) {
        const stale = randBig(1n, c.claimed);
        await expectRefused(
          relayer,
          channelsAddress,
          claimData(stale, sign(c, c.id, stale, c.signer).serialized),
          "PaymentChannelsStaleAmount",
        );
      } else if (r < 0.5 && c.deposit < MAX_AMOUNT) {
        const over = c.deposit + randBig(1n, 1_000_000n);
        await expectRefused(
          relayer,
          channelsAddress,
          claimData(over, sign(c, c.id, over, c.signer).serialized),
          "PaymentChannelsAmountExceedsDeposit",
        );
      } else if (r < 0.75) {
        // The malleable twin (r, n - s, flipped v) of a valid signature is refused.
        const n = 0xfffffffffffffffffffffffffffffffebaaedce6af48a03bbfd25e8cd0364141n;
        const raw = sig.r + toBeHex(n - BigInt(sig.s), 32).slice(2) + (sig.v === 27 ? "1c" : "1b");
        await expectRefused(relayer, channelsAddress, claimData(amount, raw), "PaymentChannelsInvalidSignature");
      } else {
        const forged = newKey().signingKey.sign(voucherDigest(domain, { channelId: c.id, cumulativeAmount: amount }));
        await expectRefused(
          relayer,
          channelsAddress,
          claimData(amount, forged.serialized),
          "PaymentChannelsInvalidSignature",
        );
      }
    }
    const signature = chance(0.5) ? sig.serialized : sig.compactSerialized;
    await send(pick([c.payee, relayer, c.payer]), channelsAddress, claimData(amount, signature));
    recordClaim(c, amount);
  }

  async function opClaimBatch(): Promise<void> {
    const items: string[] = [];
    const expected: Expected[] = [];
    const size = 1 + int(8);
    for (let k = 0; k < size; k++) {
      const open = openChannels();
      const claimable = open.filter((c) => c.claimed < c.deposit);
      const closed = model.filter((c) => c.status === 2);
      const r = rand();
      let kind: string;
      let id: bigint;
      let amount: bigint;
      let sig: Signature;
      let reason = -1;
      if (r < 0.45 && claimable.length > 0) {
        kind = "valid";
        const c = pick(claimable);
        id = c.id;
        amount = nextAmount(c);
        sig = sign(c, id, amount, c.signer);
        recordClaim(c, amount);
      } else if (r < 0.55 && open.length > 0) {
        kind = "stale";
        const c = pick(open);
        id = c.id;
        amount = randBig(0n, c.claimed);
        sig = sign(c, id, amount, c.signer);
        reason = SKIP.StaleAmount;
      } else if (r < 0.65 && open.length > 0) {
        kind = "over deposit";
        const c = pick(open);
        id = c.id;
        amount = c.deposit + randBig(1n, chance(0.5) ? 1n : 1_000_000_000n);
        sig = sign(c, id, amount, c.signer);
        reason = SKIP.AmountExceedsDeposit;
      } else if (r < 0.75 && claimable.length > 0) {
        kind = "wrong signer";
        const c = pick(claimable);
        id = c.id;
        amount = nextAmount(c);
        // Another key of the same payer, a stranger, or the payer when a session key is the signer.
        const other = pick([...c.payer.sessions, c.payer.wallet, newKey()].filter((key) => key !== c.signer));
        sig = sign(c, id, amount, other);
        reason = SKIP.InvalidSignature;
      } else if (r < 0.82 && claimable.length > 0) {
        kind = "corrupt signature";
        const c = pick(claimable);
        id = c.id;
        amount = nextAmount(c);
        const good = sign(c, id, amount, c.signer);
        sig = Signature.from({ r: toBeHex(randBig(1n, (1n << 255n) - 1n), 32), s: good.s, v: good.v });
        reason = SKIP.InvalidSignature;
      } else if (r < 0.9 && closed.length > 0) {
        kind = "closed channel";
        const c = pick(closed);
        id = c.id;
        amount = c.claimed + 1n;
        sig = sign(c, id, amount, c.signer);
        reason = SKIP.ChannelClosed;
      } else {
        kind = "unknown id";
        // The next id a known signer will get, or an id of a key that never opened a channel.
        const key = chance(0.5) && open.length > 0 ? pick(open).signer : newKey();
        id = channelIdFor(key.address as Address, (nonces.get(key.address) ?? 0n) + BigInt(int(3)));
        amount = randBig(1n, 1_000_000n);
        sig = sign(undefined, id, amount, key);
        reason = SKIP.UnknownChannel;
      }
      bump(batchItemCounts, kind);
      items.push(encodeClaimItem({ channelId: id, cumulativeAmount: amount }, sig.serialized as Hex).slice(2));
      expected.push(reason < 0 ? { kind: "claimed", id, amount } : { kind: "skipped", id, amount, reason });
    }
    const { receipt } = await send(
      pick(everyone),
      channelsAddress,
      channels.interface.encodeFunctionData("claimBatch", ["0x" + items.join("")]),
    );
    const events: Expected[] = [];
    for (const log of receipt.logs) {
      if (log.address.toLowerCase() !== channelsAddress.toLowerCase()) continue;
      const parsed = channels.interface.parseLog(log);
      if (parsed?.name === "ChannelsClaimed") {
        for (const { channelId, claimed } of decodeClaimRecords(parsed.args[0] as Hex)) {
          events.push({ kind: "claimed", id: channelId, amount: claimed });
        }
      } else if (parsed?.name === "ClaimSkipped") {
        const [id, amount, reason] = parsed.args as unknown as [bigint, bigint, bigint];
        events.push({ kind: "skipped", id, amount, reason: Number(reason) });
      }
    }
    // Skipped items are logged as they come; the claimed ones together in one ChannelsClaimed after.
    const byKind = (list: Expected[]) => [
      ...list.filter((e) => e.kind === "skipped"),
      ...list.filter((e) => e.kind === "claimed"),
    ];
    expect(events, "claimBatch events, one per item in order").to.deep.equal(byKind(expected));
  }

  async function opRequestWithdrawal(candidates: ModelChannel[]): Promise<void> {
    const c = pick(candidates);
    const data = channels.interface.encodeFunctionData("requestWithdrawal", [c.id]);
    if (chance(0.05)) await expectRefused(c.payee, channelsAddress, data, "PaymentChannelsUnauthorized");
    const { ts } = await send(c.payer, channelsAddress, data);
    c.withdrawReadyAt = ts + c.withdrawDelay;
    if (chance(0.1)) await expectRefused(c.payer, channelsAddress, data, "PaymentChannelsWithdrawalPending");
  }

  async function opCancelWithdrawal(candidates: ModelChannel[]): Promise<void> {
    const c = pick(candidates);
    const data = channels.interface.encodeFunctionData("cancelWithdrawal", [c.id]);
    if (chance(0.05)) await expectRefused(relayer, channelsAddress, data, "PaymentChannelsUnauthorized");
    await send(c.payer, channelsAddress, data);
    c.withdrawReadyAt = 0;
    if (chance(0.1)) await expectRefused(c.payer, channelsAddress, data, "PaymentChannelsNoWithdrawalRequested");
  }

  async function opFinalizeWithdrawal(candidates: ModelChannel[]): Promise<void> {
    const c = pick(candidates);
    const data = channels.interface.encodeFunctionData("finalizeWithdrawal", [c.id]);
    // eth_call runs at about the latest block's time; the margin covers the wall clock running on.
    if (c.withdrawReadyAt > now + 3600 && chance(0.3)) {
      await expectRefused(relayer, channelsAddress, data, "PaymentChannelsWithdrawalNotReady");
    }
    // Exactly at readyAt (the earliest allowed second) or some time after it.
    const at = chance(0.5) ? c.withdrawReadyAt : c.withdrawReadyAt + int(3 * 24 * 3600);
    await send(pick([c.payer, relayer, c.payee]), channelsAddress, data, at);
    recordClose(c);
  }

  async function opClose(candidates: ModelChannel[]): Promise<void> {
    const c = pick(candidates);
    let amount = 0n;
    let signature = "0x";
    const r = rand();
    if (r < 0.45 && c.claimed < c.deposit) {
      amount = nextAmount(c);
      signature = chance(0.5)
        ? sign(c, c.id, amount, c.signer).serialized
        : sign(c, c.id, amount, c.signer).compactSerialized;
    } else if (r < 0.7 && c.claimed > 0n) {
      amount = randBig(1n, c.claimed); // not above what was claimed: no voucher needed, the bytes are ignored
      signature = "0xdeadbeef";
    }
    const data = channels.interface.encodeFunctionData("close", [c.id, amount, signature]);
    if (chance(0.1)) await expectRefused(c.payer, channelsAddress, data, "PaymentChannelsUnauthorized");
    await send(c.payee, channelsAddress, data);
    if (amount > c.claimed) recordClaim(c, amount);
    recordClose(c);
  }

  /** Anything a closed channel is asked to do is refused. */
  async function checkClosedChannelRefusals(): Promise<void> {
    const closed = model.filter((cc) => cc.status === 2);
    if (closed.length === 0) return;
    const c = pick(closed);
    const amount = c.claimed + 1n;
    const calls: [Actor, string][] = [
      [c.payer, channels.interface.encodeFunctionData("topUp", [c.id, 1n])],
      [
        c.payee,
        channels.interface.encodeFunctionData("claim", [c.id, amount, sign(c, c.id, amount, c.signer).serialized]),
      ],
      [c.payer, channels.interface.encodeFunctionData("requestWithdrawal", [c.id])],
      [c.payer, channels.interface.encodeFunctionData("cancelWithdrawal", [c.id])],
      [relayer, channels.interface.encodeFunctionData("finalizeWithdrawal", [c.id])],
      [c.payee, channels.interface.encodeFunctionData("close", [c.id, 0n, "0x"])],
    ];
    const [from, data] = pick(calls);
    await expectRefused(from, channelsAddress, data, "PaymentChannelsChannelClosed");
  }

  // ------------------------------------------------------------------ setup and run

  before(async () => {
    snapshotId = (await provider.request({ method: "evm_snapshot", params: [] })) as string;
    const [deployer] = await ethers.getSigners();
    channels = await (await ethers.getContractFactory("PaymentChannels", deployer)).deploy();
    channelsAddress = await channels.getAddress();
    const { chainId } = await ethers.provider.getNetwork();
    domain = voucherDomain(Number(chainId), channelsAddress as Address);
    const usdcFactory = await ethers.getContractFactory("MockUSDC", deployer);
    for (let index = 0; index < 2; index++) {
      const contract = await usdcFactory.deploy();
      const address = await contract.getAddress();
      tokens.push({
        index,
        contract,
        address,
        domain: { name: "USD Coin", version: "2", chainId: Number(chainId), verifyingContract: address as Address },
      });
    }
    usdcInterface = tokens[0].contract.interface as unknown as Interface;

    const actor = (name: string, exactApprove = false): Actor => {
      const wallet = newKey();
      return { name, address: wallet.address, wallet, sessions: [], exactApprove };
    };
    payers.push(actor("payer0"), actor("payer1"), actor("payer2 (exact approvals)", true));
    payees.push(actor("payee0"), actor("payee1"), actor("payee2"));
    relayer = actor("relayer");
    everyone = [...payers, ...payees, relayer];
    for (const a of everyone) {
      await provider.request({ method: "hardhat_impersonateAccount", params: [a.address] });
      await provider.request({ method: "hardhat_setBalance", params: [a.address, "0x56bc75e2d63100000"] }); // 100 ETH
    }
    await provider.request({ method: "hardhat_setCode", params: [READER_ADDRESS, READER_CODE] });

    const latest = await ethers.provider.getBlock("latest");
    now = latest!.timestamp;
    for (const token of tokens) {
      for (const payer of payers) {
        await send(payer, token.address, encode(usdcInterface, "mint", [payer.address, MINTED]));
        credit(token, payer, MINTED);
        if (!payer.exactApprove) {
          await send(payer, token.address, encode(usdcInterface, "approve", [channelsAddress, ethers.MaxUint256]));
        }
      }
    }
    buildHeader();
  });

  after(async () => {
    if (snapshotId) await provider.request({ method: "evm_revert", params: [snapshotId] });
  });

  it("the read batcher returns exactly what direct calls return", async () => {
    const direct = [
      await tokens[0].contract.balanceOf(payers[0].address),
      await tokens[1].contract.balanceOf(payers[1].address),
    ];
    const data =
      "0x" +
      callItem(tokens[0].address, encode(usdcInterface, "balanceOf", [payers[0].address])) +
      callItem(tokens[1].address, encode(usdcInterface, "balanceOf", [payers[1].address])) +
      callItem(channelsAddress, channels.interface.encodeFunctionData("domainSeparator"));
    const out = (await provider.request({
      method: "eth_call",
      params: [{ to: READER_ADDRESS, data }, "latest"],
    })) as string;
    expect(out).to.equal("0x" + word(direct[0]) + word(direct[1]) + (await channels.domainSeparator()).slice(2));
    expect(direct[0]).to.equal(MINTED);
  });

  it(`keeps every invariant through ${OPERATIONS} random operations`, async () => {
    const started = Date.now();
    const cpuStart = process.cpuUsage();
    await checkInvariants("after setup");
    for (let step = 0; step < OPERATIONS; step++) {
      const open = openChannels();
      const claimable = open.filter((c) => c.claimed < c.deposit);
      const pending = open.filter((c) => c.withdrawReadyAt !== 0);
      const idle = open.filter((c) => c.withdrawReadyAt === 0);
      // [name, weight, runnable]
      const table: [string, number, (() => Promise<void>) | undefined][] = [
        // Few opens and closes keep the channel count, and so the cost of the per-step read, down.
        ["open", open.length < 8 ? 40 : 4, opOpen],
        ["openWithAuthorization", open.length < 8 ? 20 : 2, opOpenWithAuthorization],
        ["topUp", 8, open.length ? () => opTopUp(open) : undefined],
        ["claim", 20, claimable.length ? () => opClaim(claimable) : undefined],
        ["claimBatch", 18, opClaimBatch],
        ["requestWithdrawal", 9, idle.length ? () => opRequestWithdrawal(idle) : undefined],
        ["cancelWithdrawal", 3, pending.length ? () => opCancelWithdrawal(pending) : undefined],
        ["finalizeWithdrawal", 3, pending.length ? () => opFinalizeWithdrawal(pending) : undefined],
        ["close", 3, open.length ? () => opClose(open) : undefined],
      ];
      const runnable = table.filter(([, , run]) => run !== undefined);
      let roll = rand() * runnable.reduce((sum, [, weight]) => sum + weight, 0);
      let chosen = runnable[0];
      for (const entry of runnable) {
        roll -= entry[1];
        if (roll < 0) {
          chosen = entry;
          break;
        }
      }
      const [name, , run] = chosen;
      await run!();
      bump(opCounts, name);
      if (chance(0.03)) await checkClosedChannelRefusals();
      await checkInvariants(`step ${step} (${name}, seed ${SEED})`);
    }

    const seconds = ((Date.now() - started) / 1000).toFixed(1);
    const cpu = process.cpuUsage(cpuStart);
    const cpuSeconds = ((cpu.user + cpu.system) / 1e6).toFixed(1);
    console.log(
      `      ${OPERATIONS} operations in ${seconds} s (${cpuSeconds} s CPU); ` +
        `${model.length} channels, ${openChannels().length} still open`,
    );
    console.table(opCounts);
    console.table(batchItemCounts);
    console.table(refusalCounts);

    // The walk must actually have exercised everything it claims to cover.
    for (const name of [
      "open",
      "openWithAuthorization",
      "topUp",
      "claim",
      "claimBatch",
      "requestWithdrawal",
      "cancelWithdrawal",
      "finalizeWithdrawal",
      "close",
    ]) {
      expect(opCounts[name] ?? 0, name).to.be.greaterThan(OPERATIONS / 100);
    }
    for (const kind of [
      "valid",
      "stale",
      "over deposit",
      "wrong signer",
      "corrupt signature",
      "closed channel",
      "unknown id",
    ]) {
      expect(batchItemCounts[kind] ?? 0, kind).to.be.greaterThan(OPERATIONS / 100);
    }
    expect(Object.keys(refusalCounts).length).to.be.greaterThanOrEqual(10);
    expect(new Set(model.map((c) => c.signer.address)).size).to.be.lessThan(model.length); // signer nonces > 0 occur
  });
});
