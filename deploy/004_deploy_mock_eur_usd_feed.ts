import type { DeployFunction } from "hardhat-deploy/types";
import { networkByHardhatName } from "../src/chain/networks";

/** 1 EUR = 1.08 USD, in the 8 decimals of Chainlink's USD feeds. */
export const MOCK_EUR_USD_ANSWER = 108_000_000n;
export const MOCK_EUR_USD_DECIMALS = 8;

/**
 * Deploys a mock EUR / USD price feed on local networks only, as "MockEurUsdFeed"; real networks
 * read Chainlink's feed.
 */
const deployMockEurUsdFeed: DeployFunction = async ({ deployments, getNamedAccounts }) => {
  const { deployer } = await getNamedAccounts();
  await deployments.deploy("MockEurUsdFeed", {
    contract: "MockPriceFeed",
    from: deployer,
    args: [MOCK_EUR_USD_DECIMALS, "EUR / USD", MOCK_EUR_USD_ANSWER],
    log: true,
    deterministicDeployment: true,
  });
};

deployMockEurUsdFeed.tags = ["MockEurUsdFeed", "local"];
deployMockEurUsdFeed.skip = async ({ network }) => !(networkByHardhatName(network.name)?.local ?? false);

export default deployMockEurUsdFeed;
