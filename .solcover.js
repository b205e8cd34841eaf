module.exports = {
  istanbulReporter: ["json-summary", "text", "lcov"],
  skipFiles: ["mocks/"],
  // Instrumentation adds locals; without the Yul stack allocator the assembly batch loop of
  // claimBatch hits "stack too deep" when the optimizer is off.
  configureYulOptimizer: true,
};
