import { expect } from "chai";
import type { SettlerPolicy } from "../../src/shared/config";
import { selectClaims, toBatches, type ClaimCandidate } from "../../src/settler/policy";

/** Pure unit tests of the settler's claim policy: what is claimed now, in which order, and in what batches. */

const NOW = 1_700_000_000;
const GWEI = 1_000_000_000n;

const POLICY: SettlerPolicy = {
  minUnclaimed: 1_000_000n, // $1 at 6 decimals
  maxAgeSec: 3_600,
  maxBatchSize: 50,
  maxGasPriceWei: 10n * GWEI,
};

let nextId = 1n;
function candidate(overrides: Partial<ClaimCandidate> = {}): ClaimCandidate {
  const amount = overrides.amount ?? 5_000_000n;
  return {
    channelId: nextId++,
    amount,
    signature: "0x",
    chargedTotal: amount,
    claimed: 0n,
    withdrawReadyAt: 0,
    unclaimedSince: NOW - 60,
    ...overrides,
  };
}

const ids = (list: readonly ClaimCandidate[]) => list.map((c) => c.channelId);

describe("settler policy: selectClaims", () => {
  it("claims a routine channel once its unclaimed amount reaches minUnclaimed, not below", () => {
    const atMin = candidate({ amount: 1_500_000n, claimed: 500_000n }); // exactly 1,000,000 unclaimed
    const below = candidate({ amount: 1_499_999n, claimed: 500_000n });
    const selection = selectClaims([atMin, below], POLICY, NOW, GWEI);
    expect(ids(selection.routine)).to.deep.equal([atMin.channelId]);
    expect(selection.urgent).to.deep.equal([]);
    expect(selection.deferredForGas).to.equal(0);
  });

  it("counts as unclaimed what was charged, not the voucher above it", () => {
    // The voucher runs 2,000,000 ahead of the charge: only 999,999 is owed beyond the claim.
    const ahead = candidate({ amount: 3_499_999n, chargedTotal: 1_499_999n, claimed: 500_000n });
    const owed = candidate({ amount: 3_500_000n, chargedTotal: 1_500_000n, claimed: 500_000n });
    const nothingOwed = candidate({
      amount: 3_000_000n,
      chargedTotal: 500_000n,
      claimed: 500_000n,
      withdrawReadyAt: NOW,
    });
    const selection = selectClaims([ahead, owed, nothingOwed], POLICY, NOW, GWEI);
    expect(ids(selection.routine)).to.deep.equal([owed.channelId]);
    expect(selection.urgent).to.deep.equal([]);
  });

  it("never selects a channel whose voucher is not above what was claimed", () => {
    const settled = candidate({ amount: 7n, claimed: 7n, withdrawReadyAt: NOW + 10 });
    const behind = candidate({ amount: 5n, claimed: 9n, unclaimedSince: NOW - 10 * 3_600 });
    const selection = selectClaims([settled, behind], POLICY, NOW, GWEI);
    expect(selection.urgent).to.deep.equal([]);
    expect(selection.routine).to.deep.equal([]);
  });

  it("age rule: a small voucher is claimed once it has waited maxAgeSec (boundary included)", () => {
    const young = candidate({ amount: 10n, unclaimedSince: NOW - POLICY.maxAgeSec + 1 });
    const due = candidate({ amount: 10n, unclaimedSince: NOW - POLICY.maxAgeSec });
    const old = candidate({ amount: 10n, unclaimedSince: NOW - 10 * POLICY.maxAgeSec });
    const selection = selectClaims([young, due, old], POLICY, NOW, GWEI);
    expect(ids(selection.routine)).to.deep.equal([old.channelId, due.channelId]);
  });

  it("urgency overrides minUnclaimed and the age rule: a 1-unit voucher is claimed at once", () => {
    const exiting = candidate({ amount: 1n, unclaimedSince: NOW, withdrawReadyAt: NOW + 900 });
    const selection = selectClaims([exiting], POLICY, NOW, GWEI);
    expect(ids(selection.urgent)).to.deep.equal([exiting.channelId]);
    expect(selection.routine).to.deep.equal([]);
  });

  it("urgency overrides the gas price ceiling, which defers only routine claims", () => {
    const exiting = candidate({ amount: 1n, withdrawReadyAt: NOW + 900 });
    const big = candidate({ amount: 50_000_000n });
    const old = candidate({ amount: 10n, unclaimedSince: NOW - 2 * POLICY.maxAgeSec });
    const small = candidate({ amount: 10n }); // not selected at all: not counted as deferred
    const selection = selectClaims([exiting, big, old, small], POLICY, NOW, 11n * GWEI);
    expect(ids(selection.urgent)).to.deep.equal([exiting.channelId]);
    expect(selection.routine).to.deep.equal([]);
    expect(selection.deferredForGas).to.equal(2);
  });

  it("the ceiling is inclusive, and without a ceiling any gas price goes", () => {
    const big = candidate({ amount: 50_000_000n });
    expect(ids(selectClaims([big], POLICY, NOW, 10n * GWEI).routine)).to.deep.equal([big.channelId]);
    const unlimited: SettlerPolicy = { ...POLICY, maxGasPriceWei: undefined };
    const selection = selectClaims([big], unlimited, NOW, 10_000n * GWEI);
    expect(ids(selection.routine)).to.deep.equal([big.channelId]);
    expect(selection.deferredForGas).to.equal(0);
  });

  it("orders urgent claims by the nearest withdrawal and routine claims oldest first", () => {
    const later = candidate({ withdrawReadyAt: NOW + 3_000 });
    const soonest = candidate({ withdrawReadyAt: NOW + 100 });
    const middle = candidate({ withdrawReadyAt: NOW + 1_000 });
    const newest = candidate({ unclaimedSince: NOW - 5 });
    const oldest = candidate({ unclaimedSince: NOW - 500 });
    const between = candidate({ unclaimedSince: NOW - 50 });
    const selection = selectClaims([later, newest, soonest, oldest, middle, between], POLICY, NOW, GWEI);
    expect(ids(selection.urgent)).to.deep.equal([soonest, middle, later].map((c) => c.channelId));
    expect(ids(selection.routine)).to.deep.equal([oldest, between, newest].map((c) => c.channelId));
  });

  it("an overdue withdrawal (ready in the past) is still urgent and goes first", () => {
    const overdue = candidate({ withdrawReadyAt: NOW - 10 });
    const pending = candidate({ withdrawReadyAt: NOW + 10 });
    expect(ids(selectClaims([pending, overdue], POLICY, NOW, GWEI).urgent)).to.deep.equal([
      overdue.channelId,
      pending.channelId,
    ]);
  });

  it("does not reorder or modify its input", () => {
    const list = [candidate({ unclaimedSince: NOW - 1 }), candidate({ unclaimedSince: NOW - 100 })];
    const before = [...list];
    selectClaims(list, POLICY, NOW, GWEI);
    expect(list).to.deep.equal(before);
  });
});

describe("settler policy: toBatches", () => {
  it("splits into batches of at most `size`, in order, the last one shorter", () => {
    const items = Array.from({ length: 7 }, (_, i) => i);
    expect(toBatches(items, 3)).to.deep.equal([[0, 1, 2], [3, 4, 5], [6]]);
    expect(toBatches(items, 7)).to.deep.equal([items]);
    expect(toBatches(items, 100)).to.deep.equal([items]);
    expect(toBatches(items, 1)).to.have.length(7);
  });

  it("gives no batch for no items", () => {
    expect(toBatches([], 10)).to.deep.equal([]);
  });

  it("keeps urgent-first order across batches when fed urgent then routine", () => {
    const exiting = [candidate({ withdrawReadyAt: NOW + 5 }), candidate({ withdrawReadyAt: NOW + 1 })];
    const routine = [candidate({ unclaimedSince: NOW - 9_000 })];
    const selection = selectClaims([...routine, ...exiting], { ...POLICY, maxBatchSize: 2 }, NOW, GWEI);
    const batches = [...toBatches(selection.urgent, 2), ...toBatches(selection.routine, 2)];
    expect(batches.map(ids)).to.deep.equal([[exiting[1].channelId, exiting[0].channelId], [routine[0].channelId]]);
  });
});
