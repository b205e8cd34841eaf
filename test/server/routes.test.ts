import { expect } from "chai";
import { RouteMatcher } from "../../src/server/routes";

describe("RouteMatcher", () => {
  it("resolves a metered route to one block offered as upto, with the unit price and its defaults", () => {
    const routes = new RouteMatcher(
      {
        "GET /llm": { price: "$0.00001", meter: { unit: "token", blockUnits: 200, voucherTimeoutMs: 5_000 } },
        "GET /ws": { price: "3", meter: {} },
      },
      6,
    );
    expect(routes.match("GET", "/llm")).to.deep.equal({
      price: 2_000n,
      pricing: "upto",
      meter: { unit: "token", unitPrice: 10n, blockUnits: 200, voucherTimeoutMs: 5_000 },
    });
    expect(routes.match("GET", "/ws")).to.deep.equal({
      price: 300n,
      pricing: "upto",
      meter: { unit: "chunk", unitPrice: 3n, blockUnits: 100, voucherTimeoutMs: 10_000 },
    });
  });

  it("matches exact paths for any method, and resolves $ and atomic prices", () => {
    const routes = new RouteMatcher({ "/weather": "$0.001", "/raw": "250", "/big": 7n }, 6);
    expect(routes.match("GET", "/weather")).to.deep.equal({ price: 1_000n, pricing: "fixed" });
    expect(routes.match("POST", "/weather")).to.deep.equal({ price: 1_000n, pricing: "fixed" });
    expect(routes.match("GET", "/raw")).to.deep.equal({ price: 250n, pricing: "fixed" });
    expect(routes.match("GET", "/big")).to.deep.equal({ price: 7n, pricing: "fixed" });
    expect(routes.match("GET", "/weather/today")).to.equal(undefined);
    expect(routes.match("GET", "/weathe")).to.equal(undefined);
    expect(routes.match("GET", "/")).to.equal(undefined);
  });

  it("matches method-specific routes only for that method", () => {
    const routes = new RouteMatcher({ "GET /weather": "$0.001", "POST /forecast": "$0.01" }, 6);
    expect(routes.match("GET", "/weather")?.price).to.equal(1_000n);
    expect(routes.match("POST", "/weather")).to.equal(undefined);
    expect(routes.match("POST", "/forecast")?.price).to.equal(10_000n);
    expect(routes.match("GET", "/forecast")).to.equal(undefined);
  });

  it('matches a "/*" prefix at the prefix itself and below it, not beside it', () => {
    const routes = new RouteMatcher({ "/api/*": "$0.002" }, 6);
    for (const path of ["/api", "/api/", "/api/x", "/api/x/y"])
      expect(routes.match("GET", path)?.price).to.equal(2_000n);
    for (const path of ["/apix", "/ap", "/", "/other/api/x"]) expect(routes.match("GET", path)).to.equal(undefined);
    const all = new RouteMatcher({ "/*": "$1" }, 6);
    expect(all.match("GET", "/")?.price).to.equal(1_000_000n);
    expect(all.match("DELETE", "/anything/at/all")?.price).to.equal(1_000_000n);
  });

  it("prefers exact paths over prefixes and longer prefixes over shorter ones, whatever the order", () => {
    const table = {
      "/*": "1",
      "/api/*": "2",
      "/api/v1/*": "3",
      "/api/v1/free": null,
      "/api": "5",
    };
    const forward = new RouteMatcher(table, 6);
    const backward = new RouteMatcher(Object.fromEntries(Object.entries(table).reverse()), 6);
    for (const routes of [forward, backward]) {
      expect(routes.match("GET", "/api/v1/free")).to.equal(null);
      expect(routes.match("GET", "/api/v1/paid")?.price).to.equal(3n);
      expect(routes.match("GET", "/api/v1")?.price).to.equal(3n);
      expect(routes.match("GET", "/api/v2")?.price).to.equal(2n);
      expect(routes.match("GET", "/api")?.price).to.equal(5n);
      expect(routes.match("GET", "/elsewhere")?.price).to.equal(1n);
    }
  });

  it("falls through a method-specific route to an any-method route of the same kind", () => {
    const routes = new RouteMatcher({ "POST /api/*": "9", "/api/*": "2" }, 6);
    expect(routes.match("POST", "/api/x")?.price).to.equal(9n);
    expect(routes.match("GET", "/api/x")?.price).to.equal(2n);
  });

  it("returns null for free routes and undefined when nothing matches", () => {
    const routes = new RouteMatcher({ "/health": null, "/paid": "1" }, 6);
    expect(routes.match("GET", "/health")).to.equal(null);
    expect(routes.match("GET", "/nothing")).to.equal(undefined);
  });

  it("takes an object with pricing and description", () => {
    const routes = new RouteMatcher(
      {
        "POST /llm": { price: "$0.05", pricing: "upto", description: "Completion, billed by tokens" },
        "/plain": { price: "10" },
      },
      6,
    );
    expect(routes.match("POST", "/llm")).to.deep.equal({
      price: 50_000n,
      pricing: "upto",
      description: "Completion, billed by tokens",
    });
    expect(routes.match("GET", "/plain")).to.deep.equal({ price: 10n, pricing: "fixed" });
  });

  it("refuses malformed route keys and prices when compiled", () => {
    for (const key of ["weather", "get /weather", "GET", "GET weather", "/a b", ""]) {
      expect(() => new RouteMatcher({ [key]: "1" }, 6), key).to.throw(/route/);
    }
    expect(() => new RouteMatcher({ "/x": "$0.0000001" }, 6)).to.throw(RangeError);
    expect(() => new RouteMatcher({ "/x": "cheap" }, 6)).to.throw(RangeError);
    expect(() => new RouteMatcher({ "/x": { price: -1n } }, 6)).to.throw(RangeError);
  });

  it("prices every spelling a router would serve: case, trailing slash, HEAD for GET", () => {
    const routes = new RouteMatcher({ "GET /weather": "$0.001", "/Docs/*": "$0.002" }, 6);
    for (const [method, path] of [
      ["GET", "/weather"],
      ["HEAD", "/weather"],
      ["GET", "/WEATHER"],
      ["GET", "/weather/"],
      ["head", "/Weather//"],
    ])
      expect(routes.match(method, path)?.price, `${method} ${path}`).to.equal(1_000n);
    expect(routes.match("GET", "/docs/a")?.price).to.equal(2_000n);
    expect(routes.match("POST", "/weather")).to.equal(undefined);
  });

  it("prefers a method-specific route over an any-method one for the same path, in either order", () => {
    for (const table of [
      { "/x": "1", "GET /x": "2" },
      { "GET /x": "2", "/x": "1" },
    ]) {
      const routes = new RouteMatcher(table, 6);
      expect(routes.match("GET", "/x")?.price).to.equal(2n);
      expect(routes.match("POST", "/x")?.price).to.equal(1n);
    }
  });
});
