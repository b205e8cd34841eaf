import type { DeployFunction } from "hardhat-deploy/types";

/**
 * Deploys the PaymentChannels singleton through the deterministic CREATE2 deployer, so it has the
 * same address on every chain (its constructor takes no arguments).
 */
const deployPaymentChannels: DeployFunction = async ({ deployments, getNamedAccounts }) => {
  const { deployer } = await getNamedAccounts();
  await deployments.deploy("PaymentChannels", {
    from: deployer,
    log: true,
    deterministicDeployment: true,
  });
};

deployPaymentChannels.tags = ["PaymentChannels", "local"];

export default deployPaymentChannels;
