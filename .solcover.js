const path = require("node:path");

module.exports = {
  istanbulReporter: ["json-summary", "text", "lcov"],
  skipFiles: ["mocks/"],
  // Instrumentation adds locals; without the Yul stack allocator the assembly batch loop of
  // claimBatch hits "stack too deep" when the optimizer is off.
  configureYulOptimizer: true,
  // Coverage measures the contracts, so a plain `npx hardhat coverage` runs the in-process contract
  // suites in test/contracts only (`--testfiles` still overrides this). The other suites add no
  // Solidity coverage, and some of them spawn `npx hardhat node`, which recompiles the plain sources
  // over the instrumented artifacts in artifacts/: every later fixture would then deploy
  // uninstrumented code and PaymentChannels.sol would report 0 %.
  onCompileComplete: async (config) => {
    config.paths.tests = path.join(config.paths.root, "test", "contracts");
  },
};
