module.exports = {
  istanbulReporter: ["json-summary", "text", "lcov"],
  skipFiles: ["mocks/"],
};
