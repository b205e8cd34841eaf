import type { DeployFunction } from "hardhat-deploy/types";
import { networkByHardhatName } from "../src/chain/networks";

/** Deploys the mock EURC on local networks only; real networks use Circle's EURC. */
const deployMockEurc: DeployFunction = async ({ deployments, getNamedAccounts }) => {
  const { deployer } = await getNamedAccounts();
  await deployments.deploy("MockEURC", {
    from: deployer,
    log: true,
    deterministicDeployment: true,
  });
};

deployMockEurc.tags = ["MockEURC", "local"];
deployMockEurc.skip = async ({ network }) => !(networkByHardhatName(network.name)?.local ?? false);

export default deployMockEurc;
