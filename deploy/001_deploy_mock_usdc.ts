import type { DeployFunction } from "hardhat-deploy/types";
import { networkByHardhatName } from "../src/chain/networks";

/** Deploys the mock USDC on local networks only; real networks use Circle's USDC. */
const deployMockUsdc: DeployFunction = async ({ deployments, getNamedAccounts }) => {
  const { deployer } = await getNamedAccounts();
  await deployments.deploy("MockUSDC", {
    from: deployer,
    log: true,
    deterministicDeployment: true,
  });
};

deployMockUsdc.tags = ["MockUSDC", "local"];
deployMockUsdc.skip = async ({ network }) => !(networkByHardhatName(network.name)?.local ?? false);

export default deployMockUsdc;
