import { expect } from "chai";
import { createLogger, levelFromEnv, LOG_LEVEL_ENV, type LoggerOptions } from "../../src/shared/log";
import { HARDHAT_KEYS } from "../helpers/hardhatKeys";

/** A logger writing into an array, and its lines parsed. */
function capture(options: Omit<LoggerOptions, "sink"> = {}) {
  const lines: string[] = [];
  const logger = createLogger({ level: "debug", ...options, sink: { write: (line) => lines.push(line) } });
  const parsed = () => lines.map((line) => JSON.parse(line) as Record<string, unknown>);
  return { logger, lines, parsed };
}

describe("logger", () => {
  it("writes one JSON object per line: level, ISO timestamp, fields and message", () => {
    const { logger, lines, parsed } = capture({ fields: { component: "proxy" } });
    logger.info("listening", { port: 8402 });
    logger.child({ channelId: "0x01" }).warn("slow");
    expect(lines).to.have.length(2);
    for (const line of lines) expect(line.endsWith("}\n") && line.indexOf("\n") === line.length - 1).to.equal(true);
    const [first, second] = parsed();
    expect(first).to.deep.include({ level: "info", component: "proxy", port: 8402, msg: "listening" });
    expect(new Date(first.ts as string).toISOString()).to.equal(first.ts);
    expect(second).to.deep.include({ level: "warn", component: "proxy", channelId: "0x01", msg: "slow" });
  });

  it("keeps level, ts and msg its own: fields cannot override them", () => {
    const { logger, lines, parsed } = capture();
    logger.error("real", { level: "debug", msg: "fake", ts: "then", other: 1 });
    expect(lines[0].match(/"level"/g)).to.have.length(1);
    expect(lines[0].match(/"msg"/g)).to.have.length(1);
    expect(parsed()[0]).to.deep.include({ level: "error", msg: "real", other: 1 });
    expect(parsed()[0].ts).to.not.equal("then");
  });

  it("writes bigints as decimal strings and errors as type, message and stack, wherever they are", () => {
    const { logger, parsed } = capture();
    const failure = Object.assign(new TypeError("boom"), { code: "E_BOOM" });
    logger.warn("problem", {
      amount: 2n ** 80n,
      nested: { list: [1n, { fee: 3n }] },
      err: failure,
      inner: { failure },
    });
    const [line] = parsed();
    expect(line.amount).to.equal("1208925819614629174706176");
    expect(line.nested).to.deep.equal({ list: ["1", { fee: "3" }] });
    expect(line.err).to.deep.include({ type: "TypeError", message: "boom", code: "E_BOOM" });
    expect((line.err as { stack: string }).stack).to.match(/^TypeError: boom\n/);
    expect((line.inner as { failure: unknown }).failure).to.deep.include({ type: "TypeError", message: "boom" });
  });

  it("redacts private keys, passwords and authorization headers and cookies", () => {
    const { logger, lines, parsed } = capture();
    const key = HARDHAT_KEYS[1];
    logger.info("request", {
      privateKey: key,
      PAYCHAN_KEYSTORE_PASSWORD: "correct horse",
      address: "0xabc",
      headers: {
        authorization: "Bearer secret-token",
        "proxy-authorization": "Basic c2VjcmV0",
        cookie: "session=s3cr3t",
        accept: "*/*",
      },
    });
    logger.child({ password: "hunter2" }).info("child");
    const text = lines.join("");
    for (const secret of [key.slice(2), "correct horse", "secret-token", "c2VjcmV0", "s3cr3t", "hunter2"]) {
      expect(text).to.not.include(secret);
    }
    const [line, child] = parsed();
    expect(line).to.deep.include({
      privateKey: "[redacted]",
      PAYCHAN_KEYSTORE_PASSWORD: "[redacted]",
      address: "0xabc",
    });
    expect(line.headers).to.deep.equal({
      authorization: "[redacted]",
      "proxy-authorization": "[redacted]",
      cookie: "[redacted]",
      accept: "*/*",
    });
    expect(child.password).to.equal("[redacted]");
  });

  it("writes only lines at or above its level, and says which levels are enabled", () => {
    const { logger, parsed } = capture({ level: "warn" });
    expect(logger.level).to.equal("warn");
    expect(logger.enabled("debug")).to.equal(false);
    expect(logger.enabled("info")).to.equal(false);
    expect(logger.enabled("warn")).to.equal(true);
    logger.debug("no");
    logger.info("no");
    logger.warn("yes");
    logger.child({ a: 1 }).error("yes too");
    expect(parsed().map((line) => line.msg)).to.deep.equal(["yes", "yes too"]);
    const silent = capture({ level: "silent" });
    silent.logger.error("nothing");
    expect(silent.lines).to.deep.equal([]);
    expect(silent.logger.enabled("error")).to.equal(false);
  });

  it("reads PAYCHAN_LOG_LEVEL, and falls back to info, saying so, on an unknown level", () => {
    expect(levelFromEnv({})).to.deep.equal({ level: "info" });
    expect(levelFromEnv({ [LOG_LEVEL_ENV]: " DEBUG " })).to.deep.equal({ level: "debug" });
    expect(levelFromEnv({ [LOG_LEVEL_ENV]: "loud" })).to.deep.equal({ level: "info", invalid: "loud" });
    const before = process.env[LOG_LEVEL_ENV];
    process.env[LOG_LEVEL_ENV] = "loud";
    try {
      const lines: string[] = [];
      const logger = createLogger({ sink: { write: (line) => lines.push(line) } });
      expect(logger.level).to.equal("info");
      expect(JSON.parse(lines[0])).to.deep.include({
        level: "warn",
        msg: "unknown log level, using info",
        [LOG_LEVEL_ENV]: "loud",
      });
    } finally {
      if (before === undefined) delete process.env[LOG_LEVEL_ENV];
      else process.env[LOG_LEVEL_ENV] = before;
    }
  });
});
